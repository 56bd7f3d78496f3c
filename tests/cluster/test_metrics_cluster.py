"""Metrics in the distributed mode, with real processes: a real job run by a ``nodeops worker`` on sshd hosts is
counted by the worker's own listener (its steps' durations, its job limit) and by the API (the job and its
instances, the workers alive, the broker's queue depth); the worker's listener takes the same bearer token."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from tests.cluster import test_cluster
from tests.cluster.test_cluster import INSTALL
from tests.support.cluster import Cluster
from tests.support.jobs import dead_port
from tests.support.metrics import TOKEN, parse, scrape, total, value

run = test_cluster.run  # the fixture naming this test's install folders (its agents stopped at the end)


def test_a_job_run_by_a_worker_is_counted_by_the_worker_and_the_api(cluster: Cluster, ssh_hosts, run: str) -> None:
    cluster.start_api(NODEOPS_METRICS_TOKEN=TOKEN)
    port = dead_port()
    argv = ["worker", "--name", "w1", "--concurrency", "7", "--metrics-port", str(port)]
    cluster._spawn("w1", argv, NODEOPS_METRICS_TOKEN=TOKEN, NODEOPS_WORKER_METRICS_PORT="1")  # the option wins
    cluster.wait_for(lambda: "w1" in " ".join(cluster.live_workers()), "worker w1 to take its lease", 60, "w1")
    worker_url = f"http://127.0.0.1:{port}"
    hosts = [host.install_spec(f"agent-{run}") for host in ssh_hosts(2)]
    assert cluster.api is not None
    job_id = int(cluster.api.ok(INSTALL, {"job_type": "INSTALL_AGENT", "hosts": hosts})["job_id"])
    done = cluster.api.wait(job_id, timeout_s=120)
    assert done["status"] == "SUCCESS", done
    ran = Counter(
        row[0]
        for row in cluster.sql(
            "SELECT s.code FROM record_steps s JOIN instance_records r ON r.id = s.record_id "
            "WHERE r.job_id = :j AND s.status <> 'PENDING'",
            j=job_id,
        )
    )
    assert ran

    with httpx.Client(base_url=worker_url, timeout=30) as client:
        worker = scrape(client)
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})
        assert wrong.status_code == 401 and wrong.json()["code"] == 3800401 and TOKEN not in wrong.text
        assert client.get("/other", headers={"Authorization": f"Bearer {TOKEN}"}).json()["code"] == 3800404
    for code, times in ran.items():
        counted = value(worker, "nodeops_step_duration_seconds_count", job_type="INSTALL_AGENT", step=code)
        assert counted == times, (code, counted, times)
    assert value(worker, "nodeops_hosts_running") == 0
    assert value(worker, "nodeops_job_limit_hosts") == 7
    assert value(worker, "nodeops_log_lines_written_total") > 0
    assert value(worker, "nodeops_workers_alive") == 1
    assert value(worker, "nodeops_queue_depth_messages") == 0
    assert value(worker, "nodeops_store_scrape_ok") == 1

    with cluster.http_client(timeout_s=30) as client:
        api = scrape(client)
    assert value(api, "nodeops_jobs", job_type="INSTALL_AGENT", status="SUCCESS") == 1
    assert value(api, "nodeops_instances", job_type="INSTALL_AGENT", status="SUCCESS") == 2
    assert value(api, "nodeops_workers_alive") == 1
    assert value(api, "nodeops_queue_depth_messages") == 0
    assert value(api, "nodeops_store_scrape_ok") == 1
    assert total(api, "nodeops_http_requests_total", route=INSTALL, code="0") == 1
    # the API ran no step: its own step histogram is empty, the worker's has them all
    assert total(api, "nodeops_step_duration_seconds_count") == 0
    assert value(api, "nodeops_heartbeats_received_total") >= 2  # the agents report to the API, not the worker


def test_the_worker_listener_is_off_without_a_token_and_the_queue_depth_counts_waiting_hosts(
    cluster: Cluster, ssh_hosts, run: str
) -> None:
    cluster.start_api(NODEOPS_METRICS_TOKEN=TOKEN)
    port = dead_port()
    cluster.start_worker("quiet", NODEOPS_WORKER_METRICS_PORT=str(port))  # no token: no listener
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    cluster.signal("quiet", 19)  # SIGSTOP: the worker takes nothing, the messages wait in the broker
    try:
        hosts = [host.install_spec(f"agent-{run}") for host in ssh_hosts(3)]
        assert cluster.api is not None
        cluster.api.ok(INSTALL, {"job_type": "INSTALL_AGENT", "hosts": hosts})
        with cluster.http_client(timeout_s=30) as client:
            cluster.wait_for(lambda: value(scrape(client), "nodeops_queue_depth_messages") >= 2, "messages queued")
            samples = parse(client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text)
        assert value(samples, "nodeops_instances", job_type="INSTALL_AGENT", status="PENDING") == 3
    finally:
        cluster.signal("quiet", 18)  # SIGCONT
