"""The install channel APIs over real HTTP (network spec §14): the list with its virtual -1 and hidden channels,
create with normalised addresses, update merging upstream_servers within its area, delete refused while hosts use
a channel, every validation error naming its field, and who may change a channel (its area's creator or a
superuser)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.network_api import NetApi, add_host, serve_net_api

VALIDATION, FORBIDDEN, CONFLICT, AREA_NOT_FOUND, NOT_FOUND = 3800001, 3800403, 3800003, 3801001, 3801037
CHANNELS = "/api/install_channel/"
UPSTREAM = {"taskserver": ["127.0.70.1"], "btfileserver": ["127.0.70.2"], "dataserver": ["127.0.70.3"]}
AUTO = {"id": -1, "name": "自动选择", "bk_cloud_id": -1, "jump_servers": [], "upstream_servers": {}, "hidden": False}


@pytest.fixture
def net(services, live_server) -> Iterator[NetApi]:
    yield from serve_net_api(services, live_server)


@pytest.fixture
def area(net) -> int:
    """An area created by ``alice``."""
    area_id: int = net.as_user("alice").ok("POST", "/api/cloud/", {"bk_cloud_name": "idc-a"})["bk_cloud_id"]
    return area_id


def channel(area: int, **fields: Any) -> dict[str, Any]:
    return {
        "name": "via-jump",
        "bk_cloud_id": area,
        "jump_servers": ["127.0.80.1"],
        "upstream_servers": UPSTREAM,
        **fields,
    }


def test_create_list_update_delete(net, area):
    created = net.ok(
        "POST",
        CHANNELS,
        channel(
            area,
            jump_servers=[" 127.0.80.1", "::1", "127.0.80.1"],
            upstream_servers={
                **UPSTREAM,
                "agent_download_proxy": "false",
                "channel_proxy_address": "http://127.0.80.1:17981/",
                "AP_ID_1": {"taskserver": ["127.0.70.9"]},
            },
        ),
    )
    assert created["jump_servers"] == ["127.0.80.1", "0000:0000:0000:0000:0000:0000:0000:0001"]
    assert created["upstream_servers"]["agent_download_proxy"] is False
    assert created["upstream_servers"]["channel_proxy_address"] == "http://127.0.80.1:17981"
    assert created["upstream_servers"]["AP_ID_1"] == {"taskserver": ["127.0.70.9"]}
    hidden = net.ok("POST", CHANNELS, channel(area, name="hidden", hidden=True))
    assert net.ok("GET", CHANNELS) == [AUTO, created]
    assert net.ok("GET", CHANNELS, {"with_hidden": "true"}) == [AUTO, created, hidden]
    path = f"{CHANNELS}{created['id']}/"
    update = {"bk_cloud_id": area, "name": "renamed", "upstream_servers": {"taskserver": ["127.0.70.5"]}}
    assert net.ok("PUT", path, update) == {}
    changed = net.ok("GET", CHANNELS)[1]
    assert changed["name"] == "renamed" and changed["jump_servers"] == created["jump_servers"]
    assert changed["upstream_servers"] == {**created["upstream_servers"], "taskserver": ["127.0.70.5"]}  # merged
    assert net.ok("DELETE", path, {"bk_cloud_id": area}) == {}
    assert net.ok("DELETE", f"{CHANNELS}{hidden['id']}/") == {}
    assert net.ok("GET", CHANNELS, {"with_hidden": True}) == [AUTO]


def test_bad_fields_are_3800001_naming_the_field(net, area):
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": ""}, "name"),
        ({"name": "n" * 46}, "name"),
        ({"jump_servers": []}, "jump_servers"),
        ({"jump_servers": "127.0.0.1"}, "jump_servers"),
        ({"jump_servers": ["jump.example"]}, "jump_servers[0]"),
        ({"jump_servers": ["127.0.0.1"] * 101}, "jump_servers"),
        ({"upstream_servers": None}, "upstream_servers"),
        ({"upstream_servers": ["127.0.0.1"]}, "upstream_servers"),
        ({"upstream_servers": {"taskserver": ["127.0.0.1"]}}, "upstream_servers: must hold the lists"),
        ({"upstream_servers": {**UPSTREAM, "dataserver": "127.0.0.1"}}, "upstream_servers.dataserver"),
        ({"upstream_servers": {**UPSTREAM, "taskserver": ["300.0.0.1"]}}, "upstream_servers.taskserver[0]"),
        ({"upstream_servers": {**UPSTREAM, "channel_proxy_address": "127.0.0.1:17981"}}, "channel_proxy_address"),
        ({"upstream_servers": {**UPSTREAM, "agent_download_proxy": "sometimes"}}, "agent_download_proxy"),
        ({"upstream_servers": {**UPSTREAM, "AP_ID_x": {}}}, "upstream_servers.AP_ID_x"),
        ({"upstream_servers": {**UPSTREAM, "AP_ID_1": {"zk": []}}}, "upstream_servers.AP_ID_1"),
        ({"upstream_servers": {**UPSTREAM, "k" * 5000: 1}}, "upstream_servers."),
        ({"upstream_servers": {**UPSTREAM, **{f"key{n}": n for n in range(10_000)}}}, "at most 25 keys"),
        ({"bk_cloud_id": "one"}, "bk_cloud_id"),
        ({"bk_cloud_id": None}, "bk_cloud_id"),
        ({"hidden": "perhaps"}, "hidden"),
    ]
    for fields, named in cases:
        message = net.error("POST", CHANNELS, channel(area, **fields), VALIDATION)
        assert named in message and len(message) < 2000, (fields, message)
    assert net.error("GET", CHANNELS, {"with_hidden": "x"}, VALIDATION).startswith("with_hidden:")
    assert net.ok("POST", CHANNELS, channel(area, name="通道-東-👍"))["name"] == "通道-東-👍"


def test_unknown_area_and_channel_ids(net, area):
    assert net.error("POST", CHANNELS, channel(4242), AREA_NOT_FOUND).startswith("不存在ID为: 4242 的管控区域")
    created = net.ok("POST", CHANNELS, channel(area))
    path = f"{CHANNELS}{created['id']}/"
    other = net.ok("POST", "/api/cloud/", {"bk_cloud_name": "idc-b"})["bk_cloud_id"]
    assert net.error("PUT", path, {"bk_cloud_id": other, "name": "x"}, NOT_FOUND).startswith("安装通道不存在")
    assert net.error("DELETE", path, {"bk_cloud_id": other}, NOT_FOUND)
    assert net.error("PUT", f"{CHANNELS}4242/", {"bk_cloud_id": area}, NOT_FOUND)
    assert net.error("DELETE", f"{CHANNELS}4242/", {}, NOT_FOUND)
    assert net.error("PUT", f"{CHANNELS}abc/", {"bk_cloud_id": area}, VALIDATION).startswith("channel_id:")
    assert "bk_cloud_id" in net.error("PUT", path, {"name": "x"}, VALIDATION)
    assert "upstream_servers" in net.error(
        "PUT", path, {"bk_cloud_id": area, "upstream_servers": {"zk": 1}}, VALIDATION
    )


def test_a_channel_hosts_use_cannot_be_deleted(net, services, area):
    created = net.ok("POST", CHANNELS, channel(area))
    add_host(services, "127.0.40.1", area=area, install_channel_id=created["id"])
    message = net.error("DELETE", f"{CHANNELS}{created['id']}/", {}, CONFLICT)
    assert message.startswith("安装通道「via-jump」正在被 1 台主机使用")


def test_only_the_areas_creator_or_a_superuser_changes_its_channels(net, area):
    alice, bob = net.as_user("alice"), net.as_user("bob")
    mine = alice.ok("POST", CHANNELS, channel(area))
    path = f"{CHANNELS}{mine['id']}/"
    assert alice.ok("PUT", path, {"bk_cloud_id": area, "hidden": True}) == {}
    for method, target, body in (
        ("POST", CHANNELS, channel(area)),
        ("PUT", path, {"bk_cloud_id": area, "name": "x"}),
        ("DELETE", path, {}),
        ("POST", CHANNELS, channel(0)),  # area 0: superusers'
    ):
        assert bob.error(method, target, body, FORBIDDEN).startswith("您没有权限执行操作，请申请「管控区域」编辑权限")
    assert bob.ok("GET", CHANNELS, {"with_hidden": 1})[1]["id"] == mine["id"]  # listing is open
    assert net.ok("POST", CHANNELS, channel(0))["bk_cloud_id"] == 0
    assert net.ok("DELETE", path) == {}
