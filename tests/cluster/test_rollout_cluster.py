"""Rolling batches and the failure threshold in the distributed mode: two workers, real sshd hosts, PostgreSQL
holding the guarantees (a claim refuses a record whose batch is not open; the threshold is decided once, under
the claim lock). A host fails for a real reason: a wrong password."""

from __future__ import annotations

import time

from nodeops.engine.cluster import WAIT_HOLD_S
from tests.cluster import test_cluster
from tests.cluster.test_cluster import INSTALL
from tests.support.cluster import Cluster

WRONG_PASSWORD = "not-the-password-4"


run = test_cluster.run  # the fixture naming this test's install folders (its agents stopped at the end)


def _hosts(ssh_hosts, count: int, run: str, failing: set[int]) -> list[dict[str, object]]:
    return [
        {
            "bk_biz_id": 2,
            "inner_ip": host.ip,
            "port": host.port,
            "account": host.username,
            "password": WRONG_PASSWORD if n in failing else host.password,
            "setup_path": f"{host.setup_path}/agent-{run}",
            "owned_path": True,  # the test user has no sudo: it installs into its own folder
        }
        for n, host in enumerate(ssh_hosts(count))
    ]


def test_twelve_hosts_on_two_workers_stop_at_the_threshold(cluster: Cluster, ssh_hosts, run: str) -> None:
    cluster.start_worker("w1", concurrency=3)
    cluster.start_worker("w2", concurrency=3)
    hosts = _hosts(ssh_hosts, 12, run, failing={4, 5, 9})
    assert cluster.api is not None
    body = {"job_type": "INSTALL_AGENT", "hosts": hosts, "batch_size": 4, "max_fail_percentage": 20}
    job_id = int(cluster.api.ok(INSTALL, body)["job_id"])
    done = cluster.api.wait(job_id, timeout_s=180)
    rows = {row["inner_ip"]: row for row in done["list"]}
    ips = [str(h["inner_ip"]) for h in hosts]
    assert [rows[ip]["batch"] for ip in ips] == [1] * 4 + [2] * 4 + [3] * 4
    assert [rows[ip]["status"] for ip in ips] == ["SUCCESS"] * 4 + ["FAILED"] * 2 + ["SUCCESS"] * 2 + ["IGNORED"] * 4
    assert done["status"] == "PART_FAILED", done
    for ip in ips[8:]:
        assert "2 of the 8 hosts started so far failed" in rows[ip]["status_display"], rows[ip]
        steps = cluster.api.log(job_id, rows[ip]["instance_id"])
        assert steps[0]["status"] == "IGNORED", steps[0]
        assert str(steps[0]["log"]).count("max_fail_percentage 20%") == 1, steps[0]  # decided once
    records = cluster.sql(
        "SELECT batch, start_at, finish_at, worker_id FROM instance_records WHERE job_id = :j ORDER BY id", j=job_id
    )
    assert all(start is None and worker is None for batch, start, _end, worker in records if batch == 3), records
    first_end = max(end for batch, _start, end, _worker in records if batch == 1)
    assert all(start >= first_end for batch, start, _end, _worker in records if batch == 2), records
    owners = {worker for batch, _start, _end, worker in records if batch in (1, 2)}
    assert owners == {cluster.worker_of("w1"), cluster.worker_of("w2")}, owners


def test_a_revoke_during_the_batch_interval_ends_the_job_at_once(cluster: Cluster, ssh_hosts, run: str) -> None:
    cluster.start_worker("w1", concurrency=2)
    cluster.start_worker("w2", concurrency=2)
    assert cluster.api is not None
    body = {
        "job_type": "INSTALL_AGENT",
        "hosts": _hosts(ssh_hosts, 3, run, failing=set()),
        "batch_size": 1,
        "batch_interval_s": 600,
    }
    job_id = int(cluster.api.ok(INSTALL, body)["job_id"])
    cluster.api.wait(job_id, until=lambda data: data["list"][0]["status"] == "SUCCESS", timeout_s=90)
    time.sleep(WAIT_HOLD_S + 1.5)  # the second batch waits for its interval: its claims answer "wait"
    received = sum(cluster.log(name, tail=0).count("nodeops.run_host[") for name in ("w1", "w2"))
    assert received > 2 * 3, "a message held past WAIT_HOLD_S goes back to the queue"  # each: received, succeeded
    assert [row["status"] for row in cluster.api.details(job_id, pagesize=-1)["list"]] == [
        "SUCCESS",
        "PENDING",
        "PENDING",
    ]
    cluster.api.ok(f"/api/job/{job_id}/revoke/", {})
    done = cluster.api.wait(job_id, timeout_s=10)
    assert done["status"] == "TERMINATED"
    assert [row["status"] for row in done["list"]] == ["SUCCESS", "FAILED", "FAILED"]
    assert all(row["start_time"] is None for row in done["list"][1:])
