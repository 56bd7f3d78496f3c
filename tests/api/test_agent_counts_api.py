"""The agent status counts over real HTTP, on SQLite and PostgreSQL (network spec §17): ``/api/v2/host/agent_status/``
and ``/api/v2/host/node_statistic/`` per business, set and module; the host search's ``status`` filter, its
``status``/``status_display`` and its counter; their validation, and that a caller never gets counts of a business
they are not granted, nor learns whether it exists."""

from __future__ import annotations

import httpx
import pytest

from nodeops.store.models import Host
from tests.support.factories import make_app, make_user
from tests.support.jobs import JobApi
from tests.support.subscriptions import INVENTORY, topology

AGENT_STATUS = "/api/v2/host/agent_status/"
NODE_STATISTIC = "/api/v2/host/node_statistic/"
COMBINATION = "查询节点属性组合必须为(bk_biz_id, bk_inst_id, bk_obj_id)"

# ip -> (business, modules, agent status); business 2: set 10 = modules 100, 101; set 11 = module 110;
# business 3: set 110 = modules 1100, 1101
HOSTS = {
    "127.10.2.1": (2, [100], "RUNNING"),
    "127.10.2.2": (2, [100], "TERMINATED"),
    "127.10.2.3": (2, [101], "NOT_INSTALLED"),
    "127.10.2.4": (2, [101, 110], "INSTALLING"),  # in two sets: counted once in each
    "127.10.2.5": (2, [], "RUNNING"),  # in no module: only its business counts it
    "127.10.3.1": (3, [1100], "RUNNING"),
}


@pytest.fixture
def api(services, live_server):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    make_user(services, "viewer", biz=[2])
    make_user(services, "outsider", biz=[4])
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        api = JobApi(client, app)
        hosts = [
            {"bk_biz_id": biz, "inner_ip": ip, "os_type": "linux", "modules": modules}
            for ip, (biz, modules, _status) in HOSTS.items()
        ]
        api.ok(f"{INVENTORY}/import/", {"inventory": {"topology": topology(2) + topology(3), "hosts": hosts}})
        with services.db.session() as session:
            for host in session.query(Host):
                host.agent_status = HOSTS[str(host.inner_ip)][2]
        yield api


def counter(total: int, running: int, not_installed: int, terminated: int) -> dict[str, int]:
    return {"total": total, "RUNNING": running, "NOT_INSTALLED": not_installed, "TERMINATED": terminated}


NODES = [
    {"bk_biz_id": 2, "bk_obj_id": "biz"},
    {"bk_biz_id": 2, "bk_inst_id": 10, "bk_obj_id": "set"},
    {"bk_biz_id": 2, "bk_inst_id": 11, "bk_obj_id": "set"},
    {"bk_biz_id": 2, "bk_inst_id": 100, "bk_obj_id": "module"},
    {"bk_biz_id": 3, "bk_inst_id": 3, "bk_obj_id": "biz"},
]


def test_each_node_answers_its_hosts_counted_by_agent_status(api):
    answered = api.ok(AGENT_STATUS, {"nodes": NODES})
    assert answered == [
        {"bk_biz_id": 2, "bk_inst_id": 2, "bk_obj_id": "biz", "agent_status_count": counter(5, 2, 1, 2)},
        {"bk_biz_id": 2, "bk_inst_id": 10, "bk_obj_id": "set", "agent_status_count": counter(4, 1, 1, 2)},
        {"bk_biz_id": 2, "bk_inst_id": 11, "bk_obj_id": "set", "agent_status_count": counter(1, 0, 0, 1)},
        {"bk_biz_id": 2, "bk_inst_id": 100, "bk_obj_id": "module", "agent_status_count": counter(2, 1, 0, 1)},
        {"bk_biz_id": 3, "bk_inst_id": 3, "bk_obj_id": "biz", "agent_status_count": counter(1, 1, 0, 0)},
    ]
    statistic = api.ok(NODE_STATISTIC, {"nodes": NODES})
    assert [node["host_count"] for node in statistic] == [5, 4, 1, 2, 1]
    assert [{k: v for k, v in node.items() if k != "host_count"} for node in statistic] == [
        {k: v for k, v in node.items() if k != "agent_status_count"} for node in answered
    ]


def test_a_user_gets_the_counts_of_their_businesses_only(api):
    viewer = api.as_user("viewer")
    assert viewer.ok(AGENT_STATUS, {"nodes": NODES[:1]})[0]["agent_status_count"] == counter(5, 2, 1, 2)
    for path in (AGENT_STATUS, NODE_STATISTIC):
        refused = viewer.error(path, {"nodes": NODES}, 9900403)
        assert "[agent_view]" in refused["message"] and "business 3" in refused["message"]
        assert "nodes[4]" in refused["message"] and "nodes[0]" not in refused["message"]
        assert refused["data"]["permission"] == {"action": "agent_view", "bk_biz_ids": [3]}
    # a business nobody imported is refused the same way: a stranger learns nothing of what exists
    outsider = api.as_user("outsider")
    unknown = outsider.error(AGENT_STATUS, {"nodes": [{"bk_biz_id": 99, "bk_obj_id": "biz"}]}, 9900403)
    known = outsider.error(AGENT_STATUS, {"nodes": [{"bk_biz_id": 3, "bk_obj_id": "biz"}]}, 9900403)
    assert unknown["message"] == known["message"].replace("business 3", "business 99")
    assert unknown["data"]["permission"]["bk_biz_ids"] == [99]


def test_nodes_the_inventory_does_not_hold_are_named(api):
    nodes = [
        {"bk_biz_id": 2, "bk_inst_id": 999, "bk_obj_id": "set"},
        {"bk_biz_id": 2, "bk_inst_id": 1100, "bk_obj_id": "module"},  # a module of business 3, not 2
        {"bk_biz_id": 2, "bk_obj_id": "biz"},
    ]
    answer = api.as_user("viewer").error(AGENT_STATUS, {"nodes": nodes}, 3800001)
    assert "nodes[0]: the inventory has no set 999 in business 2" in answer["message"]
    assert "nodes[1]: the inventory has no module 1100 in business 2" in answer["message"]
    assert "nodes[2]" not in answer["message"]
    empty = api.error(NODE_STATISTIC, {"nodes": [{"bk_biz_id": 77, "bk_obj_id": "biz"}]}, 3800001)
    assert "the inventory has no biz 77" in empty["message"]


@pytest.mark.parametrize(
    ("nodes", "says"),
    [
        (None, "nodes: this field is required"),
        ([], "nodes: this field is required"),
        ("biz", "nodes: must be a list"),
        ([{"bk_biz_id": 2, "bk_obj_id": "set"}], f"nodes[0]: {COMBINATION}"),
        ([{"bk_biz_id": 2, "bk_inst_id": 10}], f"nodes[0]: {COMBINATION}"),
        ([{"bk_inst_id": 10, "bk_obj_id": "set"}], "nodes[0].bk_biz_id: this field is required"),
        ([{"bk_biz_id": 2, "bk_inst_id": 10, "bk_obj_id": "集群"}], "nodes[0].bk_obj_id"),
        ([{"bk_biz_id": 2, "bk_inst_id": 3, "bk_obj_id": "biz"}], "a business node's bk_inst_id is its bk_biz_id"),
        ([{"bk_biz_id": "二", "bk_obj_id": "biz"}], "nodes[0].bk_biz_id"),
        ([{"bk_biz_id": 2**40, "bk_obj_id": "biz"}], "nodes[0].bk_biz_id"),
        ([{"bk_biz_id": 2, "bk_inst_id": 2**70, "bk_obj_id": "set"}], "nodes[0].bk_inst_id"),
        (["biz"], "nodes[0]: must be an object"),
        ([{"bk_biz_id": 2, "bk_obj_id": "biz"}] * 501, "nodes: must be a list of at most 500"),
    ],
)
def test_malformed_nodes_are_3800001_naming_the_field(api, nodes, says):
    for path in (AGENT_STATUS, NODE_STATISTIC):
        answer = api.error(path, {"nodes": nodes}, 3800001)
        assert says in answer["message"], answer


HOST_SEARCH = f"{INVENTORY}/hosts/"


def test_the_host_search_shows_filters_and_counts_agent_statuses(api):
    found = api.ok(HOST_SEARCH, {"pagesize": -1, "bk_biz_id": 2})
    shown = {row["inner_ip"]: (row["status"], row["status_display"]) for row in found["list"]}
    assert shown == {
        "127.10.2.1": ("RUNNING", "正常"),
        "127.10.2.2": ("TERMINATED", "异常"),
        "127.10.2.3": ("NOT_INSTALLED", "未安装"),
        "127.10.2.4": ("INSTALLING", "安装中"),
        "127.10.2.5": ("RUNNING", "正常"),
    }
    assert "agent_status_count" not in found
    abnormal = api.ok(HOST_SEARCH, {"status": ["TERMINATED", "INSTALLING"], "agent_status_count": True})
    assert [row["inner_ip"] for row in abnormal["list"]] == ["127.10.2.2", "127.10.2.4"]
    assert abnormal["agent_status_count"] == counter(2, 0, 0, 2)
    every = api.ok(HOST_SEARCH, {"pagesize": 1, "agent_status_count": True})
    assert len(every["list"]) == 1 and every["agent_status_count"] == counter(6, 3, 1, 2)
    # the viewer's counter is of business 2 only, whatever it asks
    viewer = api.as_user("viewer").ok(HOST_SEARCH, {"agent_status_count": "true", "status": "RUNNING"})
    assert viewer["agent_status_count"] == counter(2, 2, 0, 0)
    assert api.as_user("viewer").ok(HOST_SEARCH, {"bk_biz_id": 3, "agent_status_count": True}) == {
        "total": 0,
        "list": [],
        "agent_status_count": counter(0, 0, 0, 0),
    }


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (["BOGUS"], "status[0]: 'BOGUS' is not an agent status"),
        (["RUNNING", "正常"], "status[1]: '正常' is not an agent status"),
        ([{"key": "status"}], "status[0]"),
        (["RUNNING"] * 50, "status: must be a list of at most"),
    ],
)
def test_a_bad_status_filter_is_3800001(api, status, says):
    answer = api.error(HOST_SEARCH, {"status": status}, 3800001)
    assert says in answer["message"], answer
