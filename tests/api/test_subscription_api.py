"""The subscription API over real HTTP on a server running the engine, with hosts of the local transport: every
scope kind resolves to its hosts or service instances, task_result's filters and pages, retry and revoke, and
each API's validation, lookup and permission errors with their codes and messages."""

from __future__ import annotations

import re

import pytest

from nodeops.settings import Settings
from nodeops.store import subscriptions
from nodeops.store.models import AccessPoint
from tests.support.logs import append
from tests.support.subscriptions import BACKEND, ESB_BACKEND, INVENTORY, topology, wait_result


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings, with a bound on each step."""
    return settings.model_copy(update={"step_timeout_s": 60})


RESTART = [{"id": "agent", "type": "AGENT", "config": {"job_type": "RESTART_AGENT"}, "params": {}}]


def local(tmp_path, n: int, modules: list[int], biz: int = 2) -> dict:
    return {
        "bk_biz_id": biz,
        "inner_ip": f"127.0.20.{n}",
        "transport": "local",
        "setup_path": str(tmp_path / f"host{n}" / "nodeops-agent"),
        "modules": modules,
    }


@pytest.fixture
def inventory(api, tmp_path):
    """Business 2: hosts 1, 2 in module 100 (service template 7, set 10 of set template 5), host 3 in module 101,
    host 4 in module 110 (set 11); service instances 501 (host 1, module 100) and 502 (host 3, module 101).
    Business 3: host 5 in module 1100. Returns ``ip -> bk_host_id``."""
    api.ok(
        f"{INVENTORY}/import/",
        {
            "inventory": {
                "topology": topology(2) + topology(3),
                "hosts": [
                    local(tmp_path, 1, [100]),
                    local(tmp_path, 2, [100]),
                    local(tmp_path, 3, [101]),
                    local(tmp_path, 4, [110]),
                    local(tmp_path, 5, [1100], biz=3),
                ],
                "service_instances": [
                    {"id": 501, "name": "nginx-1", "bk_module_id": 100, "ip": "127.0.20.1", "bk_cloud_id": 0},
                    {
                        "id": 502,
                        "name": "mysql-3",
                        "bk_module_id": 101,
                        "ip": "127.0.20.3",
                        "processes": [{"bk_process_name": "mysqld", "port": 3306}],
                    },
                ],
            }
        },
    )
    hosts = api.ok(f"{INVENTORY}/hosts/", {"pagesize": -1})["list"]
    return {h["inner_ip"]: h["bk_host_id"] for h in hosts}


def subscribe(api, object_type: str, node_type: str, nodes: list, **scope) -> int:
    body = {"scope": {"object_type": object_type, "node_type": node_type, "nodes": nodes, **scope}, "steps": RESTART}
    return int(api.ok(f"{BACKEND}/create/", body)["subscription_id"])


def instance_ids(api, subscription_id: int) -> list[str]:
    api.ok(f"{BACKEND}/run/", {"subscription_id": subscription_id})
    return sorted(row["instance_id"] for row in wait_result(api, subscription_id)["list"])


def host(*ids: int) -> list[str]:
    return sorted(f"host|instance|host|{i}" for i in ids)


def test_each_kind_of_scope_resolves_to_its_hosts_or_service_instances(api, inventory):
    h = {n: inventory[f"127.0.20.{n}"] for n in range(1, 6)}
    cases = [
        (("HOST", "INSTANCE", [{"bk_host_id": h[1]}, {"ip": "127.0.20.3", "bk_cloud_id": 0}]), host(h[1], h[3])),
        (("HOST", "TOPO", [{"bk_obj_id": "biz", "bk_inst_id": 2}]), host(h[1], h[2], h[3], h[4])),
        (("HOST", "TOPO", [{"bk_obj_id": "set", "bk_inst_id": 10}]), host(h[1], h[2], h[3])),
        (
            ("HOST", "TOPO", [{"bk_obj_id": "module", "bk_inst_id": 110}, {"bk_obj_id": "module", "bk_inst_id": 1100}]),
            host(h[4], h[5]),
        ),
        (("HOST", "SERVICE_TEMPLATE", [{"bk_obj_id": "service_template", "bk_inst_id": 7}]), host(h[1], h[2], h[5])),
        (("HOST", "SET_TEMPLATE", [{"bk_obj_id": "set_template", "bk_inst_id": 5}]), host(h[1], h[2], h[3], h[5])),
        (("SERVICE", "INSTANCE", [{"id": 502}]), ["service|instance|service|502"]),
        (
            ("SERVICE", "TOPO", [{"bk_obj_id": "set", "bk_inst_id": 10}]),
            ["service|instance|service|501", "service|instance|service|502"],
        ),
    ]
    for (object_type, node_type, nodes), expected in cases:
        assert instance_ids(api, subscribe(api, object_type, node_type, nodes)) == expected, (node_type, nodes)
    # a template is per business: bk_biz_id narrows it
    narrowed = subscribe(api, "HOST", "SET_TEMPLATE", [{"bk_obj_id": "set_template", "bk_inst_id": 5}], bk_biz_id=3)
    assert instance_ids(api, narrowed) == host(h[5])


def test_a_service_instance_is_read_by_its_own_id_and_never_by_its_hosts_forms(api, inventory):
    subscription_id = subscribe(api, "SERVICE", "INSTANCE", [{"id": 501}])
    job_id = api.ok(f"{BACKEND}/run/", {"subscription_id": subscription_id})["job_id"]
    (row,) = wait_result(api, subscription_id)["list"]
    assert row["instance_info"]["service"]["name"] == "nginx-1"
    assert row["instance_info"]["host"]["bk_host_id"] == inventory["127.0.20.1"]
    steps = api.log(job_id, "service|instance|service|501")
    assert [s["step"] for s in steps][:2] == ["更新任务状态", "重启"] and steps[1]["status"] == "FAILED"
    for form in (inventory["127.0.20.1"], "host|instance|host|127.0.20.1-0-0"):
        answer = api.client.get(
            f"/api/job/{job_id}/log/",
            params={
                "instance_id": form,
                "bk_app_code": api.app.code,
                "bk_app_secret": api.app.secret,
                "bk_username": "admin",
            },
        ).json()
        assert answer["code"] == 3800007, answer
    detail = api.ok(
        f"{BACKEND}/task_result_detail/", {"subscription_id": subscription_id, "instance_id": row["instance_id"]}
    )
    assert detail["steps"][0]["target_hosts"][0]["sub_steps"][1]["log"] == steps[1]["log"]


def test_task_result_detail_serves_logs_without_any_terminal_control(api, inventory, services):
    subscription_id = subscribe(api, "SERVICE", "INSTANCE", [{"id": 501}])
    api.ok(f"{BACKEND}/run/", {"subscription_id": subscription_id})
    (row,) = wait_result(api, subscription_id)["list"]
    query = {"subscription_id": subscription_id, "instance_id": row["instance_id"]}
    record_id = api.ok(f"{BACKEND}/task_result_detail/", query)["record_id"]
    host_output = "\x1b]0;owned\x07\x1b[31mred\x1b[0m \x1b[2J\x1b[Hcleared\x1bc bell\x07 hidden\rshown"
    append(services, record_id, 1, [host_output])
    sub_steps = api.ok(f"{BACKEND}/task_result_detail/", query)["steps"][0]["target_hosts"][0]["sub_steps"]
    assert sub_steps[1]["log"].endswith("\nred cleared bell hiddenshown")
    for sub_step in sub_steps:
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", sub_step["log"]), sub_step


def test_sub_step_logs_are_capped_as_the_log_api_caps_them(api, inventory, services):
    """A huge step log is not read whole into task_result_detail or a need_detail page: each sub-step's log is cut
    at NODEOPS_LOG_STEP_MAX_BYTES with the log API's marker line, the same text the log API answers."""
    subscription_id = subscribe(api, "SERVICE", "INSTANCE", [{"id": 501}])
    job_id = api.ok(f"{BACKEND}/run/", {"subscription_id": subscription_id})["job_id"]
    (row,) = wait_result(api, subscription_id)["list"]
    query = {"subscription_id": subscription_id, "instance_id": row["instance_id"]}
    record_id = api.ok(f"{BACKEND}/task_result_detail/", query)["record_id"]
    line = "日志 " + "x" * 120  # not ASCII: the cap counts bytes
    for chunk in range(3):  # about 3 MiB, over the default cap of 1 MiB
        append(services, record_id, 1, [f"{chunk}.{n:05d} {line}" for n in range(8000)])
    detail = api.ok(f"{BACKEND}/task_result_detail/", query)["steps"][0]["target_hosts"][0]["sub_steps"][1]["log"]
    page = api.ok(
        f"{BACKEND}/task_result/",
        {**query, "need_detail": True, "instance_id_list": [row["instance_id"]], "page": 1, "pagesize": 10},
    )
    in_page = page["list"][0]["steps"][0]["target_hosts"][0]["sub_steps"][1]["log"]
    *shown, marker = detail.split("\n")
    assert len("\n".join(shown).encode()) <= services.settings.log_step_max_bytes
    assert marker.startswith("[nodeops] … ") and "more bytes of this step not shown" in marker
    assert f"/api/job/{job_id}/log/tail/?instance_id=" in marker
    assert in_page == detail == api.log(job_id, row["instance_id"])[1]["log"]


def test_task_result_pages_filters_retry_and_revoke(api, inventory):
    subscription_id = subscribe(api, "HOST", "TOPO", [{"bk_obj_id": "biz", "bk_inst_id": 2}])
    first = api.ok(f"{BACKEND}/run/", {"subscription_id": subscription_id})
    assert wait_result(api, subscription_id)["status_counter"] == {"FAILED": 4, "total": 4}
    page = api.ok(f"{BACKEND}/task_result/", {"subscription_id": subscription_id, "page": 2, "pagesize": 3})
    assert page["total"] == 4 and len(page["list"]) == 1
    start = api.ok(f"{BACKEND}/task_result/", {"subscription_id": subscription_id, "start": 2, "pagesize": 2})
    assert [r["instance_id"] for r in start["list"]] == host(*sorted(inventory[f"127.0.20.{n}"] for n in (1, 2, 3, 4)))[
        1:3
    ]
    named = api.ok(
        f"{BACKEND}/task_result/",
        {
            "subscription_id": subscription_id,
            "page": 1,
            "pagesize": 10,
            "instance_id_list": [inventory["127.0.20.1"], "host|instance|host|127.0.20.2-0-0"],
            "exclude_instance_ids": [f"host|instance|host|{inventory['127.0.20.2']}"],
        },
    )
    assert [r["instance_id"] for r in named["list"]] == host(inventory["127.0.20.1"])
    assert named["total"] == 1 and named["status_counter"]["total"] == 4
    everything = api.ok(f"{BACKEND}/task_result/", {"subscription_id": subscription_id, "return_all": True})
    assert everything["total"] == 4 and len(everything["list"]) == 4

    retried = api.ok(
        f"{BACKEND}/retry/", {"subscription_id": subscription_id, "instance_id_list": [inventory["127.0.20.1"]]}
    )
    assert retried["task_id"] > first["task_id"]
    latest = wait_result(api, subscription_id)
    assert [r["instance_id"] for r in latest["list"]] == host(inventory["127.0.20.1"])
    aggregated = wait_result(api, subscription_id, need_aggregate_all_tasks=True)
    assert sorted(r["task_id"] for r in aggregated["list"]) == [first["task_id"]] * 3 + [retried["task_id"]]
    answer = api.error(f"{BACKEND}/revoke/", {"subscription_id": subscription_id}, 3800016)
    assert f"订阅[id:{subscription_id}]" in answer["message"]


def test_a_task_result_shows_its_own_task_only_and_reads_no_scope_nodes(api, inventory, services):
    """A page is read by task alone (its index answers it): another subscription's task of the same hosts never
    shows; and the result APIs read the subscription without its nodes (a scope of many hosts holds them all)."""
    first = subscribe(api, "HOST", "TOPO", [{"bk_obj_id": "biz", "bk_inst_id": 2}])
    second = subscribe(api, "HOST", "INSTANCE", [{"bk_host_id": inventory["127.0.20.2"]}])
    for subscription_id in (first, second):
        api.ok(f"{BACKEND}/run/", {"subscription_id": subscription_id})
    assert wait_result(api, first)["total"] == 4
    only = wait_result(api, second)
    assert only["total"] == 1 and only["status_counter"]["total"] == 1
    assert [r["instance_id"] for r in only["list"]] == host(inventory["127.0.20.2"])
    page = api.ok(f"{BACKEND}/task_result/", {"subscription_id": first, "page": 1, "pagesize": 2})
    assert page["total"] == 4 and len(page["list"]) == 2

    with services.db.session() as session:
        lean = subscriptions.find_subscriptions(session, [first], with_nodes=False)[first]
        full = subscriptions.find_subscriptions(session, [first])[first]
    assert lean.nodes is None and full.nodes == [{"bk_obj_id": "biz", "bk_inst_id": 2}]
    with pytest.raises(ValueError, match="without its nodes"):
        _ = lean.scope


def test_run_refuses_a_disabled_subscription_and_a_second_run_while_the_first_runs(
    api, services, inventory, tmp_path, silent_ap_url
):
    subscription_id = subscribe(api, "HOST", "INSTANCE", [{"bk_host_id": inventory["127.0.20.1"]}])
    api.ok(f"{BACKEND}/switch/", {"subscription_id": subscription_id, "action": "disable"})
    answer = api.error(f"{BACKEND}/run/", {"subscription_id": subscription_id}, 3800003)
    assert "disabled" in answer["message"] and "enable" in answer["message"]
    api.ok(f"{BACKEND}/switch/", {"subscription_id": subscription_id, "action": "enable"})
    # an agent reporting where no heartbeat is taken keeps the install's 查询Agent状态 waiting
    with services.db.session() as session:
        session.add(AccessPoint(id=2, name="silent", server_url=silent_ap_url))
    api.ok(f"{INVENTORY}/import/", {"inventory": {"hosts": [{**local(tmp_path, 2, [100]), "ap_id": 2}]}})
    install = api.ok(
        f"{BACKEND}/create/",
        {
            "scope": {
                "object_type": "HOST",
                "node_type": "INSTANCE",
                "nodes": [{"bk_host_id": inventory["127.0.20.2"]}],
            },
            "steps": [{"id": "agent", "type": "AGENT", "config": {"job_type": "INSTALL_AGENT"}, "params": {}}],
            "run_immediately": True,
        },
    )
    assert install["task_id"]
    answer = api.error(f"{BACKEND}/run/", {"subscription_id": install["subscription_id"]}, 3800003)
    assert "实例存在运行中任务" in answer["message"] and str(install["task_id"]) in answer["message"]
    api.ok(f"{BACKEND}/revoke/", {"subscription_id": install["subscription_id"]})
    result = wait_result(api, install["subscription_id"])
    assert result["list"][0]["status"] == "FAILED"


def test_update_info_delete(api, inventory):
    subscription_id = subscribe(api, "HOST", "TOPO", [{"bk_obj_id": "module", "bk_inst_id": 100}])
    updated = api.ok(
        f"{ESB_BACKEND}/update/",
        {
            "subscription_id": subscription_id,
            "scope": {"node_type": "TOPO", "nodes": [{"bk_obj_id": "module", "bk_inst_id": 101}]},
            "steps": [{"id": "agent", "params": {"agent_version": "0.1.0"}}],
            "run_immediately": True,
        },
    )
    assert updated["task_id"]
    assert [r["instance_id"] for r in wait_result(api, subscription_id)["list"]] == host(inventory["127.0.20.3"])
    (info,) = api.ok(f"{BACKEND}/info/", {"subscription_id_list": [subscription_id]})
    assert info["scope"] == {
        "bk_biz_id": None,
        "object_type": "HOST",
        "node_type": "TOPO",
        "nodes": [{"bk_obj_id": "module", "bk_inst_id": 101}],
    }
    assert info["steps"] == [
        {"id": "agent", "type": "AGENT", "config": {"job_type": "RESTART_AGENT"}, "params": {"agent_version": "0.1.0"}}
    ]
    assert info["enable"] is True and info["bk_biz_scope"] == [2]
    assert api.ok(f"{BACKEND}/delete/", {"subscription_id": subscription_id}) is None
    api.error(f"{BACKEND}/info/", {"subscription_id_list": [subscription_id]}, 3800001)
    (deleted,) = api.ok(f"{BACKEND}/info/", {"subscription_id_list": [subscription_id], "show_deleted": True})
    assert deleted["is_deleted"] is True
    # its results stay readable, as its job's logs
    assert wait_result(api, subscription_id)["total"] == 1


def test_update_with_null_steps_keeps_the_steps(api, inventory):
    """``"steps": null`` is "left out" (as every optional field's null), not a bad list."""
    subscription_id = subscribe(api, "HOST", "TOPO", [{"bk_obj_id": "module", "bk_inst_id": 100}])
    (before,) = api.ok(f"{BACKEND}/info/", {"subscription_id_list": [subscription_id]})
    scope = {"node_type": "TOPO", "nodes": [{"bk_obj_id": "module", "bk_inst_id": 101}]}
    api.ok(f"{BACKEND}/update/", {"subscription_id": subscription_id, "scope": scope, "steps": None})
    (after,) = api.ok(f"{BACKEND}/info/", {"subscription_id_list": [subscription_id]})
    assert after["steps"] == before["steps"]
    assert after["scope"]["nodes"] == [{"bk_obj_id": "module", "bk_inst_id": 101}]
    bad = {"subscription_id": subscription_id, "scope": scope, "steps": "x"}
    answer = api.error(f"{BACKEND}/update/", bad, 3800001)
    assert "steps" in answer["message"]


# --- errors -----------------------------------------------------------------------------------------------------

UNKNOWN = 987654


@pytest.mark.parametrize(
    "action, body",
    [
        ("info", {"subscription_id_list": [UNKNOWN]}),
        ("update", {"subscription_id": UNKNOWN, "scope": {"node_type": "TOPO", "nodes": []}}),
        ("delete", {"subscription_id": UNKNOWN}),
        ("switch", {"subscription_id": UNKNOWN, "action": "enable"}),
        ("run", {"subscription_id": UNKNOWN}),
        ("revoke", {"subscription_id": UNKNOWN}),
        ("retry", {"subscription_id": UNKNOWN}),
        ("task_result", {"subscription_id": UNKNOWN}),
        ("task_result_detail", {"subscription_id": UNKNOWN, "instance_id": 1}),
        ("instance_status", {"subscription_id_list": [UNKNOWN]}),
    ],
)
def test_an_unknown_subscription_answers_3800001_subscription_not_exist(api, action, body):
    answer = api.error(f"{BACKEND}/{action}/", body, 3800001)
    assert answer["message"].startswith(f"订阅({UNKNOWN})不存在"), answer


@pytest.mark.parametrize(
    "scope, field, says",
    [
        (None, "scope", "this field is required (an object)"),
        ([], "scope", "must be an object"),
        (
            {"object_type": "HOST", "node_type": "MODULE", "nodes": []},
            "scope.node_type",
            "must be one of INSTANCE, TOPO",
        ),
        (
            {"object_type": "HOTS", "node_type": "TOPO", "nodes": []},
            "scope.object_type",
            "must be one of HOST, SERVICE",
        ),
        ({"object_type": "HOST", "node_type": "TOPO"}, "scope.nodes", "this field is required: a list of nodes"),
        ({"object_type": "HOST", "node_type": "TOPO", "nodes": {}}, "scope.nodes", "must be a list of at most 10000"),
        ({"object_type": "HOST", "node_type": "TOPO", "nodes": ["x"]}, "scope.nodes[0]", "must be an object"),
        (
            {"object_type": "HOST", "node_type": "TOPO", "nodes": [{"bk_obj_id": "rack", "bk_inst_id": 1}]},
            "scope.nodes[0].bk_obj_id",
            "'rack' must be one of biz, set, module",
        ),
        (
            {"object_type": "HOST", "node_type": "TOPO", "nodes": [{"bk_obj_id": "module", "bk_inst_id": "x"}]},
            "scope.nodes[0].bk_inst_id",
            "'x' is not a positive integer",
        ),
        (
            {"object_type": "HOST", "node_type": "TOPO", "nodes": [{"bk_obj_id": "module", "bk_inst_id": 999}]},
            "scope.nodes[0]",
            "no module 999 in the inventory",
        ),
        (
            {"object_type": "HOST", "node_type": "INSTANCE", "nodes": [{"bk_host_id": 424242}]},
            "scope.nodes[0]",
            "no host 424242 in the inventory",
        ),
        (
            {"object_type": "HOST", "node_type": "INSTANCE", "nodes": [{"ip": "127.0.0.300"}]},
            "scope.nodes[0].ip",
            "is not an IPv4 or IPv6 address",
        ),
        (
            {"object_type": "SERVICE", "node_type": "INSTANCE", "nodes": [{"id": 77}]},
            "scope.nodes[0]",
            "no service instance 77",
        ),
        (
            {
                "object_type": "HOST",
                "node_type": "SET_TEMPLATE",
                "nodes": [{"bk_obj_id": "set_template", "bk_inst_id": 9}],
            },
            "scope.nodes[0]",
            "no set_template 9",
        ),
    ],
)
def test_a_bad_scope_answers_3800001_naming_the_field(api, inventory, scope, field, says):
    answer = api.error(f"{BACKEND}/create/", {"scope": scope, "steps": RESTART}, 3800001)
    assert f"{field}: " in answer["message"] and says in answer["message"], answer


@pytest.mark.parametrize(
    "steps, field",
    [
        (None, "steps"),
        ([{"id": "agent", "type": "PLUGIN", "config": {"job_type": "RESTART_AGENT"}}], "steps[0].type"),
        ([{"id": "agent", "type": "AGENT", "config": {"job_type": "MAIN_START_PLUGIN"}}], "steps[0].config.job_type"),
        (RESTART * 2, "steps"),
    ],
)
def test_bad_steps_answer_3800001_naming_the_field(api, inventory, steps, field):
    scope = {"object_type": "HOST", "node_type": "TOPO", "nodes": []}
    answer = api.error(f"{BACKEND}/create/", {"scope": scope, "steps": steps}, 3800001)
    assert f"{field}: " in answer["message"], answer


def test_task_result_validation_and_lookups(api, inventory):
    subscription_id = subscribe(api, "HOST", "TOPO", [{"bk_obj_id": "module", "bk_inst_id": 100}])
    answer = api.error(f"{BACKEND}/task_result/", {"subscription_id": subscription_id}, 3800003)
    assert "has not run yet" in answer["message"]
    task_id = api.ok(f"{BACKEND}/run/", {"subscription_id": subscription_id})["task_id"]
    wait_result(api, subscription_id)
    cases = [
        ({"page": 3, "pagesize": 1}, "page: page 3 is out of range: 2 instances make 2 page(s) of 1"),
        ({"start": 5, "pagesize": 1}, "start: start 5 is out of range"),
        ({"page": 0, "pagesize": 1}, "page: 0 is not a positive integer"),
        ({"pagesize": 0}, "pagesize: must be -1 (every instance) or from 1"),
        ({"statuses": ["DONE"]}, "statuses: 'DONE' is not a status"),
        ({"instance_id_list": ["host|x"]}, "instance_id_list[0]: 'host|x' must be object_type|node_type|type|id"),
        ({"return_all": "maybe"}, "return_all: 'maybe' must be true or false"),
        ({"task_id_list": ["a"]}, "task_id_list[0]: 'a' is not a positive integer"),
        ({"subscription_id": "x"}, "subscription_id: 'x' is not a positive integer"),
    ]
    for extra, message in cases:
        answer = api.error(f"{BACKEND}/task_result/", {"subscription_id": subscription_id, **extra}, 3800001)
        assert message in answer["message"], (extra, answer)
    answer = api.error(
        f"{BACKEND}/task_result/", {"subscription_id": subscription_id, "task_id_list": [task_id + 1000]}, 3800003
    )
    assert f"task {task_id + 1000} is not a task of subscription {subscription_id}" in answer["message"]
    answer = api.error(
        f"{BACKEND}/task_result_detail/", {"subscription_id": subscription_id, "instance_id": 424242}, 3800007
    )
    assert "订阅任务实例不存在" in answer["message"]
    api.error(f"{BACKEND}/switch/", {"subscription_id": subscription_id, "action": "pause"}, 3800001)
    api.error(f"{BACKEND}/retry/", {"subscription_id": subscription_id, "task_id_list": [task_id + 1000]}, 3800003)
    api.error(f"{BACKEND}/run/", {"subscription_id": subscription_id, "actions": {"plugin": "RESTART_AGENT"}}, 3800001)
    api.error(f"{BACKEND}/instance_status/", {}, 3800001)


def test_permissions_follow_the_businesses_of_the_scope(api, inventory):
    viewer, outsider = api.as_user("viewer"), api.as_user("outsider")
    body = {
        "scope": {"object_type": "HOST", "node_type": "TOPO", "nodes": [{"bk_obj_id": "module", "bk_inst_id": 100}]},
        "steps": RESTART,
    }
    answer = outsider.error(f"{BACKEND}/create/", body, 9900403)
    assert answer["data"]["permission"] == {"action": "agent_operate", "bk_biz_ids": [2]}
    subscription_id = viewer.ok(f"{BACKEND}/create/", body)["subscription_id"]
    viewer.ok(f"{BACKEND}/run/", {"subscription_id": subscription_id})
    wait_result(viewer, subscription_id)
    outsider.error(f"{BACKEND}/task_result/", {"subscription_id": subscription_id}, 9900403)
    outsider.error(f"{BACKEND}/run/", {"subscription_id": subscription_id}, 9900403)
    # a business-3 host in the scope needs business 3 too
    both = {
        **body,
        "scope": {
            **body["scope"],
            "nodes": [{"bk_obj_id": "set_template", "bk_inst_id": 5}],
            "node_type": "SET_TEMPLATE",
        },
    }
    viewer.error(f"{BACKEND}/create/", both, 9900403)
    # no credentials at all: ESB's own error
    answer = api.client.post(f"{BACKEND}/info/", json={"subscription_id_list": [subscription_id]}).json()
    assert answer["code"] == 1306406
    # inventory reads show the permitted businesses only
    assert {h["bk_biz_id"] for h in viewer.ok(f"{INVENTORY}/hosts/", {"pagesize": -1})["list"]} == {2}
    assert outsider.ok(f"{INVENTORY}/hosts/", {"bk_biz_id": 2})["total"] == 0
