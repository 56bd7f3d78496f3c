"""The cloud area APIs over real HTTP (network spec §12): the list with its counts, proxies and exception, area 0,
create/update/delete with every refusal (name 直连区域, duplicate, bad fields, unknown id, area in use, unknown
ap_id), who may do what (superuser, creator, another user), the ESB names, and hostile input."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from nodeops.store.models import Host
from tests.support.network_api import ESB, NetApi, add_host, serve_net_api

VALIDATION, FORBIDDEN, NOT_FOUND, IN_USE = 3800001, 3800403, 3801001, 3801003


@pytest.fixture
def net(services, live_server) -> Iterator[NetApi]:
    yield from serve_net_api(services, live_server)


def create(net: NetApi, name: str, **fields: object) -> int:
    area_id: int = net.ok("POST", "/api/cloud/", {"bk_cloud_name": name, **fields})["bk_cloud_id"]
    return area_id


def test_list_counts_hosts_and_proxies_and_says_which_proxy_is_not_running(net, services):
    area = create(net, "idc-a", isp="PrivateCloud")
    other = create(net, "idc-b", isp="AWS", ap_id=1)
    add_host(services, "127.0.40.1", area=area, node_type="PROXY", agent_status="RUNNING", password_enc=b"x")
    add_host(services, "127.0.40.2", area=area, node_type="PROXY", agent_status="TERMINATED", key_enc=b"k")
    for n in range(3):
        add_host(services, f"127.0.40.{10 + n}", area=area)
    add_host(services, "127.0.40.20", area=other, node_type="PROXY", agent_status="RUNNING")  # no credentials
    rows = net.ok("GET", "/api/cloud/")
    assert [row["bk_cloud_id"] for row in rows] == [area, other]
    first, second = rows
    assert first["bk_cloud_name"] == "idc-a" and first["ap_id"] == -1 and first["ap_name"] == "自动选择接入点"
    assert (first["isp_name"], first["isp_icon"], first["is_visible"]) == ("企业私有云", "", True)
    assert (first["node_count"], first["proxy_count"], first["alive_proxy_count"]) == (3, 2, 1)
    assert first["exception"] == "abnormal"
    assert [p["inner_ip"] for p in first["proxies"]] == ["127.0.40.1", "127.0.40.2"]
    assert set(first["proxies"][0]) == {
        "bk_cloud_id",
        "inner_ip",
        "inner_ipv6",
        "outer_ip",
        "outer_ipv6",
        "bk_host_id",
        "bk_agent_id",
    }
    assert first["permissions"] == {"view": True, "edit": True, "delete": True}
    assert second["ap_name"] == "default" and second["isp_name"] == "AWS"  # unknown isp: its key
    assert (second["node_count"], second["proxies"][0]["inner_ip"], second["exception"]) == (
        0,
        "127.0.40.20",
        "overdue",
    )
    empty = create(net, "idc-c")
    assert net.ok("GET", f"/api/cloud/{empty}/")["isp"] == "PrivateCloud"
    listed = {row["bk_cloud_id"]: row for row in net.ok("GET", "/api/cloud/")}
    assert (listed[empty]["proxies"], listed[empty]["exception"], listed[empty]["proxy_count"]) == (None, "", 0)


def test_with_default_area_puts_area_0_first_and_the_esb_names_answer_the_same(net):
    area = create(net, "idc-a")
    plain = net.ok("GET", "/api/cloud/")
    with_default = net.ok("GET", "/api/cloud/", {"with_default_area": "true"})
    assert with_default[0]["bk_cloud_id"] == 0 and with_default[0]["bk_cloud_name"] == "直连区域"
    assert with_default[0]["ap_name"] is None and "ap_id" not in with_default[0]
    assert with_default[1:] == plain and plain[0]["bk_cloud_id"] == area
    assert net.ok("GET", f"{ESB}/cloud/") == plain
    assert net.ok("GET", f"{ESB}/cloud/list_cloud_area/", {"with_default_area": 1}) == with_default
    created = net.ok("POST", f"{ESB}/cloud/create_cloud_area/", {"bk_cloud_name": "by-esb", "isp": "x", "ap_id": -1})
    assert net.ok("GET", f"/api/cloud/{created['bk_cloud_id']}/")["bk_cloud_name"] == "by-esb"
    message = net.error("GET", "/api/cloud/", {"with_default_area": "maybe"}, VALIDATION)
    assert "with_default_area" in message


def test_retrieve_update_and_biz(net, services):
    area = create(net, "idc-a")
    assert net.ok("GET", f"/api/cloud/{area}/") == {
        "bk_cloud_id": area,
        "bk_cloud_name": "idc-a",
        "isp": "PrivateCloud",
        "ap_id": -1,
        "isp_name": "企业私有云",
        "isp_icon": "",
        "ap_name": "自动选择接入点",
    }
    assert net.ok("PUT", f"/api/cloud/{area}/", {"bk_cloud_name": "idc-renamed", "ap_id": 1}) == {}
    changed = net.ok("GET", f"/api/cloud/{area}/")
    assert (changed["bk_cloud_name"], changed["ap_id"], changed["ap_name"]) == ("idc-renamed", 1, "default")
    assert net.ok("PUT", f"/api/cloud/{area}/", {"bk_cloud_name": "idc-renamed"}) == {}  # its own name again
    add_host(services, "127.0.40.1", area=area, bk_biz_id=7)
    add_host(services, "127.0.40.2", area=area, bk_biz_id=3)
    add_host(services, "127.0.40.3", area=area, bk_biz_id=7)
    assert net.ok("GET", f"/api/cloud/{area}/biz/") == [3, 7]
    assert net.ok("GET", "/api/cloud/0/")["bk_cloud_name"] == "直连区域"


def test_name_rules_and_bad_fields_are_3800001_naming_the_field(net):
    create(net, "idc-a")
    assert "管控区域不可名为「直连区域」" in net.error("POST", "/api/cloud/", {"bk_cloud_name": "直连区域"}, VALIDATION)
    assert "管控区域名称不可重复" in net.error("POST", "/api/cloud/", {"bk_cloud_name": "idc-a"}, VALIDATION)
    for bad in (None, "", "   ", "x" * 46, 12, ["idc"], "tab\there"):
        message = net.error("POST", "/api/cloud/", {"bk_cloud_name": bad}, VALIDATION)
        assert message.startswith("bk_cloud_name: "), message
    assert len(net.error("POST", "/api/cloud/", {"bk_cloud_name": "x" * 100_000}, VALIDATION)) < 300
    assert "isp:" in net.error("POST", "/api/cloud/", {"bk_cloud_name": "ok", "isp": "i" * 46}, VALIDATION)
    for ap_id in (-2, "one", 2**40):
        assert "ap_id:" in net.error("POST", "/api/cloud/", {"bk_cloud_name": "ok", "ap_id": ap_id}, VALIDATION)
    message = net.error("POST", "/api/cloud/", {"bk_cloud_name": "ok", "ap_id": 99}, VALIDATION)
    assert message.startswith("ap_id: 接入点(id:99)不存在")
    assert create(net, "区域-東京-👍" + "ä" * 35) > 0  # 45 characters, none of them ASCII: fine
    other = create(net, "idc-b")
    assert "管控区域名称不可重复" in net.error("PUT", f"/api/cloud/{other}/", {"bk_cloud_name": "idc-a"}, VALIDATION)
    assert "bk_cloud_name:" in net.error("PUT", f"/api/cloud/{other}/", {"bk_cloud_name": "直连区域"}, VALIDATION)
    assert "bk_cloud_name:" in net.error("PUT", f"/api/cloud/{other}/", {"bk_cloud_name": " "}, VALIDATION)


def test_unknown_ids_are_3801001_and_bad_ids_3800001(net):
    for method in ("GET", "PUT", "DELETE"):
        message = net.error(method, "/api/cloud/424242/", {}, NOT_FOUND)
        assert message.startswith("不存在ID为: 424242 的管控区域")
    assert net.error("GET", "/api/cloud/424242/biz/", {}, NOT_FOUND)
    for bad in ("abc", "-1", "9" * 30, "%F0%9F%91%8D"):
        assert net.error("GET", f"/api/cloud/{bad}/", {}, VALIDATION).startswith("bk_cloud_id:")
    assert "direct area" in net.error("DELETE", "/api/cloud/0/", {}, VALIDATION)
    assert "direct area" in net.error("PUT", "/api/cloud/0/", {"bk_cloud_name": "x"}, VALIDATION)


def test_an_area_with_hosts_cannot_be_deleted(net, services):
    area = create(net, "idc-a")
    host = add_host(services, "127.0.40.1", area=area, node_type="PROXY")
    assert "该区域已存在主机" in net.error("DELETE", f"/api/cloud/{area}/", {}, IN_USE)
    with services.db.session() as session:
        session.delete(session.get(Host, host))
    assert net.ok("DELETE", f"/api/cloud/{area}/") == {}
    assert net.error("GET", f"/api/cloud/{area}/", {}, NOT_FOUND)


def test_creator_or_superuser_may_change_an_area_and_others_only_see_their_own(net):
    alices = create(net.as_user("alice"), "alice-area")
    admins = create(net, "admin-area")
    alice, bob = net.as_user("alice"), net.as_user("bob")
    assert [row["bk_cloud_id"] for row in alice.ok("GET", "/api/cloud/")] == [alices]
    assert bob.ok("GET", "/api/cloud/") == []
    assert [row["bk_cloud_id"] for row in net.ok("GET", "/api/cloud/")] == [alices, admins]
    assert alice.ok("PUT", f"/api/cloud/{alices}/", {"isp": "AWS"}) == {}
    assert alice.ok("GET", f"/api/cloud/{alices}/biz/") == []
    for method, path, action in (
        ("GET", f"/api/cloud/{alices}/", "查看"),
        ("PUT", f"/api/cloud/{alices}/", "编辑"),
        ("DELETE", f"/api/cloud/{alices}/", "删除"),
        ("GET", f"/api/cloud/{alices}/biz/", "查看"),
    ):
        assert bob.error(method, path, {"isp": "x"}, FORBIDDEN).startswith(f"您没有{action}该「管控区域」的权限")
    assert alice.error("DELETE", f"/api/cloud/{admins}/", {}, FORBIDDEN)
    assert bob.error("GET", "/api/cloud/0/biz/", {}, FORBIDDEN)
    assert net.ok("PUT", f"/api/cloud/{alices}/", {"isp": "Tencent"}) == {}  # a superuser may
    assert alice.ok("DELETE", f"/api/cloud/{alices}/") == {}


def test_areas_created_at_once_with_one_name_make_one_area(net):
    """Writers are serialized around the name check: the others get the clear 3800001, never a 500 from the unique
    index."""
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _n: net.call("POST", "/api/cloud/", {"bk_cloud_name": "same"}), range(6)))
    assert sorted(answer["code"] for answer in answers) == [0] + [VALIDATION] * 5, answers
    assert all("管控区域名称不可重复" in answer["message"] for answer in answers if answer["code"])
