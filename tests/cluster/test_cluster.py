"""The distributed mode with real processes: ``nodeops serve`` in celery mode, ``nodeops worker`` processes, Redis,
PostgreSQL and sshd hosts on loopback. Every decision is a row in PostgreSQL: these tests kill, pause and race
the workers and read the rows and the logs back."""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter

import pytest

from tests.support.cluster import LEASE_S, Cluster

INSTALL = "/api/c/compapi/v2/nodeman/api/job/install/"


def _hosts(ssh_hosts, count: int, run: str) -> list[dict[str, object]]:
    return [
        {
            "bk_biz_id": 2,
            "inner_ip": host.ip,
            "port": host.port,
            "account": host.username,
            "password": host.password,
            "setup_path": f"{host.setup_path}/agent-{run}",
        }
        for host in ssh_hosts(count)
    ]


def _install(cluster: Cluster, hosts: list[dict[str, object]]) -> int:
    assert cluster.api is not None
    data = cluster.api.ok(INSTALL, {"job_type": "INSTALL_AGENT", "hosts": hosts})
    return int(data["job_id"])


def test_a_job_on_twenty_hosts_runs_on_both_workers(cluster: Cluster, ssh_hosts) -> None:
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    run = uuid.uuid4().hex[:8]
    job_id = _install(cluster, _hosts(ssh_hosts, 20, run))
    assert cluster.api is not None
    done = cluster.api.wait(job_id, timeout_s=120)
    assert done["status"] == "SUCCESS", done
    owners = Counter(
        row[0] for row in cluster.sql("SELECT worker_id FROM instance_records WHERE job_id = :j", j=job_id)
    )
    assert set(owners) == {cluster.worker_of("w1"), cluster.worker_of("w2")}, owners
    assert sum(owners.values()) == 20
    instance = done["list"][0]["instance_id"]
    steps = cluster.api.log(job_id, instance)
    owner = cluster.sql(
        "SELECT worker_id FROM instance_records WHERE job_id = :j AND instance_id = :i", j=job_id, i=instance
    )[0][0]
    assert f"run by worker {owner}" in steps[0]["log"] or any(f"run by worker {owner}" in s["log"] for s in steps)
