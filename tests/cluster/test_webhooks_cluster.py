"""Notifications with real processes: in celery mode a job's end is decided in a worker, which records and sends
its notification itself (the API stopped meanwhile); a process killed while it sends one leaves it due again, and
the next process sends it once the claim has lapsed."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

from tests.support.cluster import Cluster, seed_callers
from tests.support.jobs import JobApi, dead_port, local_host, stop_agents
from tests.support.webhook_receiver import STALL, Receiver, verify

INSTALL = "/api/c/compapi/v2/nodeman/api/job/install/"
SECRET = "whsec-cluster-0a1b2c3d"
WEBHOOK_ENV = {
    "NODEOPS_WEBHOOK_SECRET": SECRET,
    "NODEOPS_WEBHOOK_TIMEOUT_S": "0.5",  # a claim lasts 2 x 0.5 + 5 s
    "NODEOPS_WEBHOOK_BACKOFF_S": "0.3",
    "NODEOPS_WEBHOOK_POLL_S": "0.1",
}


def _delivery(cluster: Cluster, job_id: int) -> tuple[str, int, list, str | None]:
    rows = cluster.sql(
        "SELECT status, attempts, attempt_log, claim_token FROM webhook_deliveries WHERE job_id = :job", job=job_id
    )
    assert len(rows) <= 1, rows
    if not rows:
        return ("", 0, [], None)
    status, attempts, log, token = rows[0]
    return status, attempts, log if isinstance(log, list) else json.loads(log), token


def test_a_job_ended_in_a_worker_is_notified_by_the_worker_while_the_api_is_down(cluster: Cluster, ssh_hosts) -> None:
    receiver = Receiver([500])
    try:
        cluster.extra_env.update(WEBHOOK_ENV)
        cluster.start_api()
        cluster.start_worker("w1")
        (host,) = ssh_hosts(1)
        assert cluster.api is not None
        job_id = cluster.api.ok(
            INSTALL,
            {
                "job_type": "INSTALL_AGENT",
                "hosts": [
                    {
                        "bk_biz_id": 2,
                        "inner_ip": host.ip,
                        "port": host.port,
                        "account": host.username,
                        "password": "not-the-password",  # the host fails at once, in the worker
                        "owned_path": True,
                        "setup_path": f"{host.setup_path}/agent-{uuid.uuid4().hex[:8]}",
                    }
                ],
                "webhook_url": receiver.url,
            },
        )["job_id"]
        cluster.signal("api", signal.SIGTERM)
        cluster.processes["api"].wait(timeout=15)

        first, second = receiver.wait(2, timeout_s=60)
        payload = verify(second, SECRET.encode())
        assert verify(first, SECRET.encode()) == payload
        assert payload["job_id"] == job_id and payload["status"] == "FAILED"
        assert payload["statistics"]["failed_count"] == 1
        cluster.wait_for(lambda: _delivery(cluster, job_id)[0] == "DELIVERED", "the delivery to be recorded", log="w1")

        cluster.start_api()
        data = cluster.api.details(job_id)
        (notification,) = data["notifications"]
        assert notification["status"] == "DELIVERED"
        assert [a["http_status"] for a in notification["attempts"]] == [500, 200]
        assert SECRET not in cluster.log("w1", 0) and SECRET not in cluster.log("api", 0)
        assert len(receiver.requests) == 2  # one POST per attempt: the two processes never sent one twice
    finally:
        receiver.close()


def test_a_process_killed_mid_delivery_sends_it_after_restart(tmp_path: Path, sqlite_template: Path) -> None:
    database = tmp_path / "nodeops.sqlite3"
    database.write_bytes(sqlite_template.read_bytes())
    url = f"sqlite:///{database}"
    app = seed_callers(tmp_path, url)
    cluster = Cluster(
        root=tmp_path, database_url=url, broker_url="", port=dead_port(), executor="embedded", extra_env=WEBHOOK_ENV
    )
    cluster.db = sa.create_engine(url)
    receiver = Receiver([STALL])
    try:
        cluster.start_api()
        with httpx.Client(base_url=cluster.url, timeout=30) as client:
            api = JobApi(client, app)
            job_id = api.ok(
                INSTALL,
                {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1)], "webhook_url": receiver.url},
            )["job_id"]
            receiver.wait(1, timeout_s=60)  # the first attempt is being sent: the receiver holds it
            cluster.signal("api", signal.SIGKILL)
            cluster.processes["api"].wait(timeout=15)
            killed_at = time.monotonic()
            status, attempts, log, token = _delivery(cluster, job_id)
            assert (status, attempts, log) == ("PENDING", 0, []) and token is not None  # claimed, never recorded

            cluster.start_api()
            (_stalled, sent) = receiver.wait(2, timeout_s=60)
            assert sent.at - killed_at >= 2  # not before the dead process's claim lapsed
            payload = verify(sent, SECRET.encode())
            assert payload["job_id"] == job_id and payload["status"] == "SUCCESS"
            assert sent.headers["x-nodeops-delivery"] == _stalled.headers["x-nodeops-delivery"]
            cluster.wait_for(lambda: _delivery(cluster, job_id)[0] == "DELIVERED", "the delivery after restart")
            (notification,) = api.details(job_id)["notifications"]
            assert notification["attempt_count"] == 1
            assert [a["http_status"] for a in notification["attempts"]] == [200]
    finally:
        receiver.close()
        cluster.stop()
        stop_agents(tmp_path)
        cluster.db.dispose()
