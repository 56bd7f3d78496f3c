"""The access point APIs over real HTTP (network spec §15): Node Manager's fields on nodeops' columns, the sealed
zk_password, every refusal (duplicate name, bad URL or field, unknown id, the default one, one used by an area or
by hosts), superusers only for changes, ap_is_using, and ap/test against real local servers: one that answers, a
refused port and one that never answers."""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import text

from nodeops.store.models import AccessPoint
from tests.support.jobs import dead_port
from tests.support.network_api import ESB, SERVICE_URL, NetApi, add_host, serve_net_api

VALIDATION, FORBIDDEN, DUPLICATE, NOT_FOUND, IN_USE = 3800001, 3800403, 3800028, 3801007, 3801019
ZK_SECRET = "zk-secret-31337"
SERVER = {"inner_ip": "127.0.50.1", "outer_ip": "127.0.60.1", "bk_host_id": 5}


@pytest.fixture
def net(services, live_server) -> Iterator[NetApi]:
    yield from serve_net_api(services, live_server)


def new_ap(**fields: Any) -> dict[str, Any]:
    """A create request with Node Manager's fields."""
    return {
        "name": "ap-east",
        "description": "东区接入点",
        "callback_url": "http://127.0.0.1:8001/",
        "outer_callback_url": "http://127.0.0.2:8001",
        "package_inner_url": "http://127.0.0.1:8080/download",
        "package_outer_url": "https://127.0.0.2/download",
        "region_id": "test",
        "city_id": "1",
        "gse_version": "v2",
        "btfileserver": [SERVER],
        "dataserver": [SERVER],
        "taskserver": [{"inner_ipv6": "::1", "outer_ip": "127.0.60.2"}],
        "zk_hosts": [{"zk_ip": "127.0.50.9", "zk_port": "2181"}, {"zk_ip": "zk.example", "zk_port": 2182}],
        "zk_account": "zk",
        "zk_password": ZK_SECRET,
        "agent_config": {"linux": {"setup_path": "/opt/nodeops-agent", "log_path": "/var/log/gse"}, "windows": {}},
        "proxy_package": ["gse_client-linux-x86_64.tgz"],
        "nginx_path": "/data/bkee/public/bknodeman/download",
        "port_config": {"io_port": 28668, "data_port": "28625"},
        **fields,
    }


def test_create_maps_the_fields_and_never_answers_the_zk_password(net, services):
    created = net.ok("POST", "/api/ap/", new_ap())
    ap_id = created["id"]
    assert ap_id == 2  # above the default one, inserted with its explicit id
    shown = net.ok("GET", f"/api/ap/{ap_id}/")
    assert shown == created
    assert shown["callback_url"] == "http://127.0.0.1:8001" and shown["outer_callback_url"] == "http://127.0.0.2:8001"
    assert shown["agent_config"]["linux"] == {"setup_path": "/opt/nodeops-agent", "log_path": "/var/log/gse"}
    assert shown["taskserver"] == [
        {"inner_ip": "", "inner_ipv6": "0000:0000:0000:0000:0000:0000:0000:0001", "outer_ip": "127.0.60.2",
         "outer_ipv6": "", "bk_host_id": None}
    ]  # fmt: skip
    assert shown["zk_hosts"] == [{"zk_ip": "127.0.50.9", "zk_port": 2181}, {"zk_ip": "zk.example", "zk_port": 2182}]
    assert (shown["gse_version"], shown["port_config"], shown["creator"]) == (
        "V2",
        {"io_port": 28668, "data_port": 28625},
        ["admin"],
    )
    assert (shown["is_default"], shown["is_enabled"], shown["ap_type"]) == (False, True, "user")
    assert "zk_password" not in shown and ZK_SECRET not in str(net.ok("GET", "/api/ap/"))
    with services.db.session() as session:
        row = session.get(AccessPoint, ap_id)
        assert (row.server_url, row.outer_server_url, row.linux_setup_path) == (
            "http://127.0.0.1:8001",
            "http://127.0.0.2:8001",
            "/opt/nodeops-agent",
        )
        assert row.zk_password_enc and ZK_SECRET.encode() not in row.zk_password_enc
        assert services.jobs.box.open(row.zk_password_enc) == ZK_SECRET
        dump = str(session.execute(text("SELECT * FROM access_points")).all())
    assert ZK_SECRET not in dump
    listed = net.ok("GET", "/api/ap/")
    assert [ap["id"] for ap in listed] == [1, 2] and listed[0]["is_default"] is True
    assert listed[0]["callback_url"] == SERVICE_URL and listed[0]["permissions"]["edit"] is True
    assert net.ok("GET", f"{ESB}/ap/") == listed
    assert net.as_user("bob").ok("GET", "/api/ap/")[1]["permissions"] == {"view": True, "edit": False, "delete": False}
    minimal = net.ok("POST", "/api/ap/", {"name": "minimal"})
    assert minimal["callback_url"] == services.settings.agent_server_url and minimal["btfileserver"] == []


def test_update_changes_what_is_given_and_keeps_port_config(net, services):
    ap_id = net.ok("POST", "/api/ap/", new_ap())["id"]
    assert (
        net.ok("PUT", f"/api/ap/{ap_id}/", {"name": "ap-west", "port_config": {"io_port": 1}, "is_enabled": False})
        == {}
    )
    shown = net.ok("GET", f"/api/ap/{ap_id}/")
    assert (shown["name"], shown["is_enabled"], shown["port_config"]["io_port"]) == ("ap-west", False, 28668)
    assert shown["description"] == "东区接入点" and shown["taskserver"][0]["outer_ip"] == "127.0.60.2"
    assert net.ok("PUT", f"/api/ap/{ap_id}/", {"outer_callback_url": "", "zk_password": "other"}) == {}
    assert net.ok("GET", f"/api/ap/{ap_id}/")["outer_callback_url"] == ""
    with services.db.session() as session:
        assert services.jobs.box.open(session.get(AccessPoint, ap_id).zk_password_enc) == "other"


def test_bad_fields_are_3800001_naming_the_field_and_never_echo_a_secret(net):
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": ""}, "name"),
        ({"name": "n" * 65}, "name"),
        ({"callback_url": "ftp://127.0.0.1/"}, "callback_url"),
        ({"outer_callback_url": "http://"}, "outer_callback_url"),
        ({"package_inner_url": "127.0.0.1:80"}, "package_inner_url"),
        ({"package_outer_url": "http://127.0.0.1:99999/"}, "package_outer_url"),
        ({"callback_url": "http://a b/"}, "callback_url"),
        ({"callback_url": "http://" + "x" * 300}, "callback_url"),
        ({"gse_version": "V3"}, "gse_version"),
        ({"btfileserver": [{"outer_ip": "127.0.0.1"}]}, "btfileserver[0].inner_ip"),
        ({"dataserver": [{"inner_ip": "127.0.0.1"}]}, "dataserver[0].outer_ip"),
        ({"taskserver": [{"inner_ip": "not-an-ip", "outer_ip": "127.0.0.1"}]}, "taskserver[0].inner_ip"),
        ({"taskserver": "127.0.0.1"}, "taskserver"),
        ({"zk_hosts": [{"zk_ip": "127.0.0.1", "zk_port": 0}]}, "zk_hosts[0].zk_port"),
        ({"zk_hosts": [{"zk_ip": "bad host!", "zk_port": 1}]}, "zk_hosts[0].zk_ip"),
        ({"agent_config": {"linux": {"setup_path": "/usr"}}}, "agent_config.linux.setup_path"),
        ({"agent_config": {"aix": {}}}, "agent_config."),
        ({"agent_config": {"linux": {"nope": "/x"}}}, "agent_config.linux."),
        ({"agent_config": "linux"}, "agent_config"),
        ({"agent_config": {f"os{n}": {} for n in range(10_000)}}, "agent_config: must hold at most"),
        ({"agent_config": {"linux": {f"p{n}": "/x" for n in range(10_000)}}}, "agent_config.linux: must hold"),
        ({"btfileserver": [SERVER] * 101}, "btfileserver"),
        ({"port_config": {"io_port": 70000}}, "port_config.io_port"),
        ({"port_config": {str(n): 1 for n in range(60)}}, "port_config"),
        ({"proxy_package": [""]}, "proxy_package[0]"),
        ({"is_enabled": "perhaps"}, "is_enabled"),
        ({"description": "d" * 1001}, "description"),
    ]
    for fields, named in cases:
        message = net.error("POST", "/api/ap/", new_ap(**fields), VALIDATION)
        assert named in message, (fields, message)
    secret = "s3cret-" + "\u0007" * 3
    for fields in ({"zk_password": secret}, {"zk_password": "p" * 129 + secret}):
        message = net.error("POST", "/api/ap/", new_ap(**fields), VALIDATION)
        assert message.startswith("zk_password:") and "s3cret" not in message
    message = net.error("POST", "/api/ap/", new_ap(callback_url="http://user:hunter2@127.0.0.1/"), VALIDATION)
    assert "callback_url" in message and "hunter2" not in message
    assert net.error("POST", "/api/ap/", {"name": "x" * 100_000}, VALIDATION).startswith("name:")
    assert net.ok("POST", "/api/ap/", new_ap(name="接入点-東-👍"))["name"] == "接入点-東-👍"


def test_duplicate_names_and_unknown_ids(net):
    ap_id = net.ok("POST", "/api/ap/", new_ap())["id"]
    assert "接入点名称重复" in net.error("POST", "/api/ap/", new_ap(), DUPLICATE)
    assert "接入点名称重复" in net.error("PUT", f"/api/ap/{ap_id}/", {"name": "default"}, DUPLICATE)
    assert net.ok("PUT", f"/api/ap/{ap_id}/", {"name": "ap-east"}) == {}  # its own name
    for method in ("GET", "PUT", "DELETE"):
        assert net.error(method, "/api/ap/4242/", {}, NOT_FOUND).startswith("接入点(id:4242)不存在")
    for bad in ("abc", "0", "-1", "9" * 30):
        assert net.error("GET", f"/api/ap/{bad}/", {}, VALIDATION).startswith("ap_id:")


def test_delete_refuses_the_default_and_what_areas_or_hosts_use(net, services):
    assert "默认接入点不允许删除" in net.error("DELETE", "/api/ap/1/", {}, IN_USE)
    used = net.ok("POST", "/api/ap/", new_ap(name="used"))["id"]
    area = net.ok("POST", "/api/cloud/", {"bk_cloud_name": "idc-a", "ap_id": used})["bk_cloud_id"]
    net.ok("POST", "/api/cloud/", {"bk_cloud_name": "idc-b", "ap_id": used})
    message = net.error("DELETE", f"/api/ap/{used}/", {}, IN_USE)
    assert message.startswith("该接入点正在被「管控区域」 ['idc-a', 'idc-b'] 使用")
    assert net.ok("GET", "/api/ap/ap_is_using/") == [used]
    net.ok("POST", "/api/cloud/", {"bk_cloud_name": "idc-c"})
    assert net.ok("GET", "/api/ap/ap_is_using/") == [-1, used]
    by_hosts = net.ok("POST", "/api/ap/", new_ap(name="by-hosts"))["id"]
    add_host(services, "127.0.40.1", area=area, ap_id=by_hosts)
    assert "该接入点正在被 1 台主机使用" in net.error("DELETE", f"/api/ap/{by_hosts}/", {}, IN_USE)
    free = net.ok("POST", "/api/ap/", new_ap(name="free"))["id"]
    assert net.ok("DELETE", f"/api/ap/{free}/") is None
    assert net.error("GET", f"/api/ap/{free}/", {}, NOT_FOUND)


def test_only_superusers_change_access_points(net):
    ap_id = net.ok("POST", "/api/ap/", new_ap())["id"]
    for user in ("alice", "bob"):
        caller = net.as_user(user)
        for method, path, body in (
            ("POST", "/api/ap/", new_ap(name="mine")),
            ("PUT", f"/api/ap/{ap_id}/", {"name": "mine"}),
            ("DELETE", f"/api/ap/{ap_id}/", {}),
            ("POST", "/api/ap/test/", {"callback_url": "http://127.0.0.1:1"}),
        ):
            assert caller.error(method, path, body, FORBIDDEN).startswith("您没有该接入点的权限")
        assert caller.ok("GET", f"/api/ap/{ap_id}/")["name"] == "ap-east"
        assert caller.ok("GET", "/api/ap/ap_is_using/") == []


@pytest.fixture
def stalled_url() -> Iterator[str]:
    """A URL whose server accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_ap_test_gets_each_url_at_once_within_its_timeout(net, live_server, stalled_url):
    started = time.monotonic()
    result = net.ok(
        "POST",
        "/api/ap/test/",
        {
            "callback_url": live_server.url,  # the service itself: its /healthz answers
            "outer_callback_url": stalled_url,
            "package_inner_url": f"{live_server.url}/healthz",
            "package_outer_url": f"http://127.0.0.1:{dead_port()}/download",
        },
    )
    elapsed = time.monotonic() - started
    assert elapsed < 3.5, elapsed  # in parallel: one 2 s timeout, not several
    assert result["test_result"] is False
    logs = result["test_logs"]
    assert logs[0] == {"log_level": "INFO", "log": f"回调地址 -> {live_server.url} 验证可达"}
    assert logs[1]["log_level"] == "ERROR"
    assert logs[1]["log"] == f"回调地址 -> {stalled_url} 不正确：回调地址请求失败，报错信息 -> no answer within 2 s"
    assert logs[2] == {"log_level": "INFO", "log": f"{live_server.url}/healthz 检测下载成功 (HTTP 200)"}
    assert logs[3]["log_level"] == "ERROR" and logs[3]["log"].startswith("http://127.0.0.1:")
    assert "检测下载失败" in logs[3]["log"]
    good = net.ok(
        "POST", "/api/ap/test/", {"callback_url": live_server.url, "package_inner_url": live_server.url + "/docs"}
    )
    assert good["test_result"] is True and [log["log_level"] for log in good["test_logs"]] == ["INFO", "INFO"]
    not_ours = net.ok("POST", "/api/ap/test/", {"callback_url": f"{live_server.url}/docs"})
    assert "回调地址指向站点非节点管理后台" in not_ours["test_logs"][0]["log"] and not_ours["test_result"] is False


@pytest.fixture
def file_server(tmp_path) -> Iterator[str]:
    """A plain HTTP file server on 127.0.0.1 serving ``tmp_path`` (a download folder with one file)."""
    (tmp_path / "download").mkdir()
    (tmp_path / "download" / "nodeops-agent-0.1.0.tar.gz").write_bytes(b"package")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_ap_test_of_package_urls_on_a_plain_file_server(net, file_server):
    result = net.ok(
        "POST",
        "/api/ap/test/",
        {"package_inner_url": f"{file_server}/download", "package_outer_url": f"{file_server}/missing"},
    )
    assert result["test_logs"] == [
        {"log_level": "INFO", "log": f"{file_server}/download 检测下载成功 (HTTP 301)"},
        {"log_level": "ERROR", "log": f"{file_server}/missing 检测下载失败: HTTP 404"},
    ]
    assert result["test_result"] is False
    not_ours = net.ok("POST", "/api/ap/test/", {"callback_url": file_server})
    assert not_ours["test_logs"][0]["log"].endswith("回调地址指向站点非节点管理后台 (GET /healthz: HTTP 404)")


def test_ap_test_logs_a_url_it_cannot_request_and_answers(net):
    url = f"http://127.0.0.1:{dead_port()}/下载/ü"
    result = net.ok("POST", "/api/ap/test/", {"package_inner_url": url})
    assert result["test_result"] is False and result["test_logs"][0]["log"].startswith(f"{url} 检测下载失败: ")


def test_ap_test_validates_its_urls(net):
    assert net.error("POST", "/api/ap/test/", {}, VALIDATION).startswith("callback_url: give at least one")
    message = net.error("POST", "/api/ap/test/", {"callback_url": "file:///etc/passwd"}, VALIDATION)
    assert message.startswith("callback_url:")


def test_access_points_created_at_once_get_their_own_ids(net):
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda n: net.call("POST", "/api/ap/", {"name": f"ap-{n % 3}"}), range(6)))
    created = [answer["data"]["id"] for answer in answers if answer["code"] == 0]
    assert sorted(created) == [2, 3, 4], answers
    assert sorted(answer["code"] for answer in answers if answer["code"]) == [DUPLICATE] * 3
