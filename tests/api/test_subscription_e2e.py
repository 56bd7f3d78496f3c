"""End to end on real sshd hosts (127.0.10.x) through the HTTP API: import an inventory, subscribe a module (TOPO),
run it, find its instances with task_result, read an instance's log with each instance_id form, move a host out
of the module and add another, run again and see the first REMOVED and the second added; then go from an
operate_job answer to its task results."""

from __future__ import annotations

import uuid

import pytest

from nodeops.domain.plans import JobType, plan_steps
from nodeops.settings import Settings
from tests.support.jobs import ESB_JOB
from tests.support.subscriptions import BACKEND, ESB_BACKEND, INVENTORY, topology, wait_result


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings, with a bound on each step."""
    return settings.model_copy(update={"step_timeout_s": 60})


INSTALL_STEPS = [step.name for step in plan_steps(JobType.INSTALL_AGENT)]


def host_entry(host, module: int, run: str) -> dict:
    return {
        "bk_biz_id": 2,
        "bk_cloud_id": 0,
        "inner_ip": host.ip,
        "os_type": "LINUX",
        "bk_host_name": f"sshd-{host.ip}",
        "modules": [module],
        "port": host.port,
        "account": host.username,
        "owned_path": True,  # the test user has no sudo: it installs into its own folder
        "password": host.password,
        "setup_path": f"{host.setup_path}/agent-{run}",
    }


def test_topo_subscription_runs_on_sshd_hosts_and_follows_the_topology(api, services, ssh_hosts):
    one, two, three = ssh_hosts(3)
    run = uuid.uuid4().hex[:8]
    imported = api.ok(
        f"{INVENTORY}/import/",
        {
            "inventory": {
                "topology": topology(),
                "hosts": [host_entry(one, 100, run), host_entry(two, 100, run), host_entry(three, 101, run)],
            }
        },
    )
    assert len(imported["created_host_ids"]) == 3 and imported["topo_nodes"] == 6
    by_ip = {
        h["inner_ip"]: h["bk_host_id"] for h in api.ok(f"{INVENTORY}/hosts/", {"bk_biz_id": 2, "pagesize": -1})["list"]
    }
    in_nginx = api.ok(f"{INVENTORY}/hosts/", {"bk_module_id": 100})
    assert sorted(h["inner_ip"] for h in in_nginx["list"]) == sorted([one.ip, two.ip]) and in_nginx["total"] == 2

    created = api.ok(
        f"{BACKEND}/create/",
        {
            "scope": {
                "bk_biz_id": 2,
                "object_type": "HOST",
                "node_type": "TOPO",
                "nodes": [{"bk_obj_id": "module", "bk_inst_id": 100}],
            },
            "steps": [{"id": "agent", "type": "AGENT", "config": {"job_type": "INSTALL_AGENT"}, "params": {}}],
        },
    )
    subscription_id, job_id = created["subscription_id"], created["job_id"]
    first = api.ok(f"{ESB_BACKEND}/run/", {"subscription_id": subscription_id})
    assert first["job_id"] == job_id

    result = wait_result(api, subscription_id)
    assert result["total"] == 2 and result["status_counter"] == {"SUCCESS": 2, "total": 2}, result
    rows = {row["instance_id"]: row for row in result["list"]}
    assert set(rows) == {f"host|instance|host|{by_ip[one.ip]}", f"host|instance|host|{by_ip[two.ip]}"}
    assert {row["task_id"] for row in rows.values()} == {first["task_id"]}

    # the log of one instance, by the id task_result gave, by its ip form and by the bare bk_host_id
    instance_id = f"host|instance|host|{by_ip[one.ip]}"
    logs = [api.log(job_id, form) for form in (instance_id, f"host|instance|host|{one.ip}-0-0", by_ip[one.ip])]
    assert logs[0] == logs[1] == logs[2]
    assert [s["step"] for s in logs[0]] == INSTALL_STEPS and {s["status"] for s in logs[0]} == {"SUCCESS"}

    # need_detail: the same steps, with the same logs, as sub-steps of the agent step
    detail = api.ok(
        f"{BACKEND}/task_result/",
        {
            "subscription_id": subscription_id,
            "instance_id_list": [f"host|instance|host|{one.ip}-0-0"],
            "need_detail": True,
            "page": 1,
            "pagesize": 10,
        },
    )
    assert detail["total"] == 1
    (step,) = detail["list"][0]["steps"]
    assert step["id"] == "agent" and step["action"] == "INSTALL_AGENT"
    sub_steps = step["target_hosts"][0]["sub_steps"]
    assert [(s["node_name"], s["log"]) for s in sub_steps] == [(s["step"], s["log"]) for s in logs[0]]

    # the topology changes: host two leaves module 100, host three joins it
    api.ok(
        f"{INVENTORY}/import/",
        {"inventory": {"hosts": [{**host_entry(two, 101, run)}, {**host_entry(three, 100, run)}]}},
    )
    second = api.ok(f"{BACKEND}/run/", {"subscription_id": subscription_id})
    result = wait_result(api, subscription_id)
    assert result["status_counter"] == {"REMOVED": 1, "SUCCESS": 2, "total": 3}, result
    status = {row["instance_id"]: (row["status"], row["attempt"], row["task_id"]) for row in result["list"]}
    assert status == {
        f"host|instance|host|{by_ip[one.ip]}": ("SUCCESS", 2, second["task_id"]),
        f"host|instance|host|{by_ip[two.ip]}": ("REMOVED", 2, second["task_id"]),
        f"host|instance|host|{by_ip[three.ip]}": ("SUCCESS", 1, second["task_id"]),
    }
    removed = api.ok(
        f"{BACKEND}/task_result/",
        {"subscription_id": subscription_id, "statuses": ["REMOVED"], "page": 1, "pagesize": 10},
    )
    assert [row["instance_id"] for row in removed["list"]] == [f"host|instance|host|{by_ip[two.ip]}"]
    assert removed["list"][0]["steps"] == []
    # the first run's view is still there, and the removed host's install log with it
    earlier = api.ok(
        f"{BACKEND}/task_result/", {"subscription_id": subscription_id, "task_id_list": [first["task_id"]]}
    )
    assert sorted(row["status"] for row in earlier) == ["SUCCESS", "SUCCESS"]  # pagesize -1: a bare list
    assert api.log(job_id, f"host|instance|host|{two.ip}-0-0") == []  # its newest record: REMOVED, no steps
    assert [s["status"] for s in api.log(job_id, by_ip[two.ip], attempt=1)] == ["SUCCESS"] * 7

    states = api.ok(f"{BACKEND}/instance_status/", {"subscription_id_list": [subscription_id]})
    assert sorted(i["instance_id"] for i in states[0]["instances"]) == sorted(
        [f"host|instance|host|{by_ip[one.ip]}", f"host|instance|host|{by_ip[three.ip]}"]
    )
    assert all(i["host_statuses"][0]["status"] == "RUNNING" for i in states[0]["instances"])

    # from a job's answer to its task results: uninstall every agent
    job = api.ok(f"{ESB_JOB}/operate/", {"job_type": "UNINSTALL_AGENT", "bk_host_id": sorted(by_ip.values())})
    assert set(job) >= {"job_id", "subscription_id", "task_id_list"}
    result = wait_result(api, job["subscription_id"], task_id_list=job["task_id_list"])
    assert result["status_counter"] == {"SUCCESS": 3, "total": 3}, result
    details = api.details(job["job_id"])
    assert details["subscription_id"] == job["subscription_id"] and details["task_id_list"] == job["task_id_list"]
    for row in result["list"]:
        assert [s["status"] for s in api.log(job["job_id"], row["instance_id"])] == ["SUCCESS"] * 5
    assert not any((h.setup_path / f"agent-{run}").exists() for h in (one, two, three))
