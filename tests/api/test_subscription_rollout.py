"""A subscription's runs in rolling batches with a failure threshold, on real sshd hosts: each run's hosts are
batched in scope order, and a run that passes the threshold leaves the rest IGNORED; bad values answer 3800001."""

from __future__ import annotations

import uuid

import pytest

from nodeops.settings import Settings
from tests.support.subscriptions import BACKEND, INVENTORY, topology, wait_result


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings, with a bound on each step."""
    return settings.model_copy(update={"step_timeout_s": 60})


SCOPE = {
    "bk_biz_id": 2,
    "object_type": "HOST",
    "node_type": "TOPO",
    "nodes": [{"bk_obj_id": "module", "bk_inst_id": 100}],
}
STEPS = [{"id": "agent", "type": "AGENT", "config": {"job_type": "INSTALL_AGENT"}, "params": {}}]


def test_a_subscription_run_stops_at_its_threshold(api, ssh_hosts) -> None:
    hosts = ssh_hosts(3)
    run = uuid.uuid4().hex[:8]
    entries = [
        {
            "bk_biz_id": 2,
            "bk_cloud_id": 0,
            "inner_ip": host.ip,
            "os_type": "LINUX",
            "modules": [100],
            "port": host.port,
            "account": host.username,
            "password": "not-the-password-5" if n == 0 else host.password,
            "setup_path": f"{host.setup_path}/agent-{run}",
            "owned_path": True,  # the test user has no sudo: it installs into its own folder
        }
        for n, host in enumerate(hosts)
    ]
    api.ok(f"{INVENTORY}/import/", {"inventory": {"topology": topology(), "hosts": entries}})
    for bad, field in (({"batch_size": 0}, "batch_size"), ({"max_fail_percentage": "half"}, "max_fail_percentage")):
        answer = api.error(f"{BACKEND}/create/", {"scope": SCOPE, "steps": STEPS, **bad}, 3800001)
        assert field in answer["message"]
    created = api.ok(f"{BACKEND}/create/", {"scope": SCOPE, "steps": STEPS, "batch_size": 1, "max_fail_percentage": 0})
    subscription_id, job_id = created["subscription_id"], created["job_id"]
    (info,) = api.ok(f"{BACKEND}/info/", {"subscription_id_list": [subscription_id]})
    assert info["rollout"] == {"batch_size": 1, "max_fail_percentage": 0, "batch_interval_s": 0}
    api.ok(f"{BACKEND}/run/", {"subscription_id": subscription_id})
    wait_result(api, subscription_id)
    rows = {row["inner_ip"]: row for row in api.details(job_id, pagesize=-1)["list"]}
    ips = [host.ip for host in hosts]
    assert [(rows[ip]["status"], rows[ip]["batch"]) for ip in ips] == [("FAILED", 1), ("IGNORED", 2), ("IGNORED", 3)]
    assert "1 of the 1 hosts started so far failed" in rows[ips[1]]["status_display"]

    # a threshold the run does not pass: every host runs, batch after batch
    api.ok(
        f"{BACKEND}/update/",
        {"subscription_id": subscription_id, "scope": SCOPE, "max_fail_percentage": 50, "batch_size": 2},
    )
    api.ok(f"{BACKEND}/run/", {"subscription_id": subscription_id})
    wait_result(api, subscription_id)
    rows = {row["inner_ip"]: row for row in api.details(job_id, pagesize=-1)["list"]}
    assert [(rows[ip]["status"], rows[ip]["batch"]) for ip in ips] == [("FAILED", 1), ("SUCCESS", 1), ("SUCCESS", 2)]
