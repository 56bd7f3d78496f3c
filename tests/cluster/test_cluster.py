"""The distributed mode with real processes: ``nodeops serve`` in celery mode, ``nodeops worker`` processes, Redis,
PostgreSQL and sshd hosts on loopback. Every decision is a row in PostgreSQL: these tests kill, pause and race
the workers and read the rows and the logs back."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.cluster import LEASE_S, Cluster
from tests.support.jobs import dead_port

INSTALL = "/api/c/compapi/v2/nodeman/api/job/install/"


@pytest.fixture
def run() -> Iterator[str]:
    """A name for this test's install folders; the agents installed there are stopped at the end."""
    name = uuid.uuid4().hex[:8]
    yield name
    for script in Path("/tmp").glob(f"nodeops-host*/agent-{name}/**/nodeops_agent.py"):
        subprocess.run(
            [sys.executable, str(script), "stop", "--home", str(script.parent)],
            check=False,
            capture_output=True,
            timeout=20,
        )


def _hosts(ssh_hosts, count: int, run: str, *, slow: int = 0) -> list[dict[str, object]]:
    """install_job's hosts for ``count`` sshd hosts; the first ``slow`` of them report to ``SLOW_AP``."""
    return [
        {
            "bk_biz_id": 2,
            "inner_ip": host.ip,
            "port": host.port,
            "account": host.username,
            "owned_path": True,  # the test user has no sudo: it installs into its own folder
            "password": host.password,
            "setup_path": f"{host.setup_path}/agent-{run}",
            **({"ap_id": SLOW_AP} if n < slow else {}),
        }
        for n, host in enumerate(ssh_hosts(count))
    ]


def _install(cluster: Cluster, hosts: list[dict[str, object]]) -> int:
    assert cluster.api is not None
    data = cluster.api.ok(INSTALL, {"job_type": "INSTALL_AGENT", "hosts": hosts})
    return int(data["job_id"])


def test_a_job_on_twenty_hosts_runs_on_both_workers(cluster: Cluster, ssh_hosts, run: str) -> None:
    cluster.start_worker("w1")
    cluster.start_worker("w2")
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


SLOW_AP = 2  # an access point that takes no heartbeat (``silent_ap_url``): 查询Agent状态 waits until it times out


def _slow_access_point(cluster: Cluster, url: str) -> None:
    assert cluster.db is not None
    with cluster.db.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO access_points (id, name, server_url, linux_setup_path, created_at) "
                "VALUES (:id, 'silent', :url, '/usr/local/nodeops-agent', now())"
            ),
            {"id": SLOW_AP, "url": url},
        )


def _running_by_worker(cluster: Cluster, job_id: int) -> Counter[str]:
    return Counter(
        row[0]
        for row in cluster.sql(
            "SELECT worker_id FROM instance_records WHERE job_id = :j AND status = 'RUNNING'", j=job_id
        )
    )


def _slow_on_both(cluster: Cluster, job_id: int, workers: tuple[str, str]) -> None:
    """Until both workers run a host waiting in 查询Agent状态 (its agent installed, its heartbeat never coming)."""

    def both() -> bool:
        rows = cluster.sql(
            "SELECT r.worker_id FROM instance_records r JOIN record_steps s ON s.record_id = r.id "
            "WHERE r.job_id = :j AND r.status = 'RUNNING' AND s.status = 'RUNNING' AND s.name = '查询Agent状态'",
            j=job_id,
        )
        return {cluster.worker_of(w) for w in workers} <= {row[0] for row in rows}

    cluster.wait_for(both, "slow hosts running on both workers", 60, workers[0])


def _logs(cluster: Cluster, job_id: int) -> dict[str, list[dict[str, object]]]:
    assert cluster.api is not None
    return {
        row[0]: cluster.api.log(job_id, row[0])
        for row in cluster.sql("SELECT instance_id FROM instance_records WHERE job_id = :j", j=job_id)
    }


def _revisions(cluster: Cluster, job_id: int) -> dict[int, tuple[int, str]]:
    return {
        row[0]: (row[1], row[2])
        for row in cluster.sql("SELECT id, revision, status FROM instance_records WHERE job_id = :j", j=job_id)
    }


def test_a_killed_worker_s_hosts_fail_and_the_other_finishes_the_job(
    cluster: Cluster, ssh_hosts, run: str, silent_ap_url: str
) -> None:
    _slow_access_point(cluster, silent_ap_url)
    cluster.extra_env["NODEOPS_STEP_TIMEOUT_S"] = "20"
    cluster.start_worker("w1", concurrency=3)
    cluster.start_worker("w2", concurrency=3)
    hosts = _hosts(ssh_hosts, 10, run, slow=4)
    job_id = _install(cluster, hosts)
    _slow_on_both(cluster, job_id, ("w1", "w2"))
    before = _logs(cluster, job_id)
    lost = cluster.worker_of("w1")
    lost_records = {
        row[0]
        for row in cluster.sql(
            "SELECT id FROM instance_records WHERE job_id = :j AND worker_id = :w AND status = 'RUNNING'",
            j=job_id,
            w=lost,
        )
    }
    assert lost_records
    cluster.signal("w1", signal.SIGKILL)
    killed_at = time.monotonic()
    cluster.wait_for(lambda: not _running_by_worker(cluster, job_id)[lost], "the lost worker's records to end", 15)
    assert time.monotonic() - killed_at < LEASE_S + 5
    for record_id, in_status in cluster.sql(
        "SELECT id, status FROM instance_records WHERE id = ANY(:ids)", ids=sorted(lost_records)
    ):
        assert in_status == "FAILED", record_id
    assert cluster.api is not None
    done = cluster.api.wait(job_id, timeout_s=90)
    assert done["status"] in {"FAILED", "PART_FAILED"}, done
    after = _logs(cluster, job_id)
    for instance_id, steps in before.items():
        for old, new in zip(steps, after[instance_id], strict=True):
            assert str(new["log"]).startswith(str(old["log"])), (instance_id, old["step"])
    lost_lines = [
        step["log"]
        for row in cluster.sql(
            "SELECT instance_id FROM instance_records WHERE id = ANY(:ids)", ids=sorted(lost_records)
        )
        for step in after[row[0]]
        if step["status"] == "FAILED"
    ]
    assert len(lost_lines) == len(lost_records)
    assert all(f"工作进程 {lost} 失联" in str(text) for text in lost_lines), lost_lines
    survivors = Counter(
        row[0]
        for row in cluster.sql(
            "SELECT worker_id FROM instance_records WHERE job_id = :j AND status = 'SUCCESS'", j=job_id
        )
    )
    assert survivors[cluster.worker_of("w2")] > 0, survivors
    # a message delivered again (the broker redelivers what the killed worker never acknowledged) runs nothing
    revisions = _revisions(cluster, job_id)
    from nodeops.engine.dispatch.celery import celery_app, publisher

    app = celery_app(cluster.broker_url)
    try:
        task_id = cluster.sql("SELECT task_id FROM instance_records WHERE job_id = :j LIMIT 1", j=job_id)[0][0]
        for (record_id,) in cluster.sql("SELECT id FROM instance_records WHERE job_id = :j", j=job_id):
            publisher(app)(task_id, [record_id], "0.1.0")
    finally:
        app.close()
    time.sleep(2)
    assert _revisions(cluster, job_id) == revisions


def test_a_paused_worker_past_its_lease_writes_nothing_more_and_exits(
    cluster: Cluster, ssh_hosts, run: str, silent_ap_url: str
) -> None:
    _slow_access_point(cluster, silent_ap_url)
    cluster.extra_env["NODEOPS_STEP_TIMEOUT_S"] = "20"
    cluster.start_worker("w1", concurrency=2)
    cluster.start_worker("w2", concurrency=2)
    hosts = _hosts(ssh_hosts, 4, run, slow=4)
    job_id = _install(cluster, hosts)
    _slow_on_both(cluster, job_id, ("w1", "w2"))
    paused = cluster.worker_of("w1")
    cluster.signal("w1", signal.SIGSTOP)
    cluster.wait_for(lambda: not _running_by_worker(cluster, job_id)[paused], "the paused worker to be reaped", 15)
    reaped = {k: v for k, v in _revisions(cluster, job_id).items()}
    mine = {row[0] for row in cluster.sql("SELECT id FROM instance_records WHERE worker_id = :w", w=paused)}
    lines = cluster.sql(
        "SELECT count(*), coalesce(sum(length(text)), 0) FROM step_logs WHERE record_id = ANY(:ids)", ids=sorted(mine)
    )
    cluster.signal("w1", signal.SIGCONT)
    assert cluster.processes["w1"].wait(timeout=LEASE_S + 10) == 75
    assert (
        cluster.sql(
            "SELECT count(*), coalesce(sum(length(text)), 0) FROM step_logs WHERE record_id = ANY(:ids)",
            ids=sorted(mine),
        )
        == lines
    )
    now = _revisions(cluster, job_id)
    assert {k: now[k] for k in mine} == {k: reaped[k] for k in mine}
    assert "lost its lease" in cluster.log("w1")


def test_revoke_ends_the_hosts_of_every_worker_at_once(
    cluster: Cluster, ssh_hosts, run: str, silent_ap_url: str
) -> None:
    _slow_access_point(cluster, silent_ap_url)
    cluster.start_worker("w1", concurrency=2)
    cluster.start_worker("w2", concurrency=2)
    hosts = _hosts(ssh_hosts, 6, run, slow=6)
    job_id = _install(cluster, hosts)
    _slow_on_both(cluster, job_id, ("w1", "w2"))
    running = {
        row[0]
        for row in cluster.sql(
            "SELECT instance_id FROM instance_records WHERE job_id = :j AND status = 'RUNNING'", j=job_id
        )
    }
    assert cluster.api is not None
    cluster.api.ok(f"/api/job/{job_id}/revoke/", {})
    revoked_at = time.monotonic()
    cluster.wait_for(
        lambda: (
            not cluster.sql(
                "SELECT 1 FROM instance_records WHERE job_id = :j AND status IN ('PENDING', 'RUNNING')", j=job_id
            )
        ),
        "every record to end",
        10,
    )
    assert time.monotonic() - revoked_at <= 2.0
    logs = _logs(cluster, job_id)
    for instance_id, steps in logs.items():
        ended = [step for step in steps if "已终止" in str(step["log"])]
        if instance_id in running:
            assert len(ended) == 1 and str(ended[0]["log"]).count("已终止") == 1, steps
            assert ended[0]["status"] == "FAILED"
    data = cluster.api.details(job_id, pagesize=-1)
    assert data["status"] == "TERMINATED"
    revisions = _revisions(cluster, job_id)
    time.sleep(2)
    assert _revisions(cluster, job_id) == revisions
    assert cluster.api.details(job_id, pagesize=-1)["status"] == "TERMINATED"


def test_a_job_its_api_could_not_publish_is_published_by_a_worker_s_reaper(cluster: Cluster, ssh_hosts, run) -> None:
    # the API's broker is unreachable: its publish fails after the job is committed, as if it died in between
    cluster.start_api(NODEOPS_BROKER_URL=f"redis://127.0.0.1:{dead_port()}/0")
    cluster.start_worker("w1")
    job_id = _install(cluster, _hosts(ssh_hosts, 2, run))
    assert cluster.api is not None
    done = cluster.api.wait(job_id, timeout_s=90)
    assert done["status"] == "SUCCESS", done
    assert "publishing task" in cluster.log("api", tail=0)
    assert cluster.log("api", tail=0).count("reaping failed; trying again") <= 1  # said once, not every pass
    (published,) = cluster.sql("SELECT published_at FROM subscription_tasks WHERE job_id = :j", j=job_id)
    assert published[0] is not None


def test_a_worker_told_to_stop_finishes_its_hosts_and_gives_up_its_lease(cluster: Cluster, ssh_hosts, run) -> None:
    cluster.start_worker("w1", concurrency=4)
    job_id = _install(cluster, _hosts(ssh_hosts, 4, run))
    cluster.wait_for(lambda: bool(_running_by_worker(cluster, job_id)), "a host to start", 30, "w1")
    worker_id = cluster.worker_of("w1")
    cluster.signal("w1", signal.SIGTERM)
    assert cluster.processes["w1"].wait(timeout=90) == 0
    statuses = Counter(row[0] for row in cluster.sql("SELECT status FROM instance_records WHERE job_id = :j", j=job_id))
    assert statuses["RUNNING"] == 0, statuses
    ((ended_at, reason),) = cluster.sql("SELECT ended_at, end_reason FROM workers WHERE id = :w", w=worker_id)
    assert ended_at is not None and reason == "stopped"


def _wake_delays(cluster: Cluster, job_id: int) -> dict[str, float]:
    """Per record's worker: seconds from the agent's first heartbeat (committed by the API) to the end of the
    record's 查询Agent状态."""
    rows = cluster.sql(
        "SELECT r.worker_id, EXTRACT(EPOCH FROM s.finish_at - h.last_heartbeat_at) FROM instance_records r "
        "JOIN record_steps s ON s.record_id = r.id AND s.name = '查询Agent状态' "
        "JOIN hosts h ON h.bk_host_id = r.bk_host_id WHERE r.job_id = :j",
        j=job_id,
    )
    return {f"{worker} #{n}": float(delay) for n, (worker, delay) in enumerate(rows)}


def test_a_heartbeat_wakes_the_waiting_step_on_either_worker_even_after_its_listener_was_cut(
    cluster: Cluster, ssh_hosts, run
) -> None:
    cluster.extra_env["NODEOPS_HEARTBEAT_POLL_S"] = "30"  # the store is read again only after 30 s
    cluster.start_worker("w1", concurrency=2)
    cluster.start_worker("w2", concurrency=2)
    assert cluster.api is not None
    job_id = _install(cluster, _hosts(ssh_hosts, 4, run))
    assert cluster.api.wait(job_id, timeout_s=60)["status"] == "SUCCESS"
    delays = _wake_delays(cluster, job_id)
    assert {key.split(" ")[0] for key in delays} == {cluster.worker_of("w1"), cluster.worker_of("w2")}, delays
    assert all(0 <= delay < 1.0 for delay in delays.values()), delays

    cut = cluster.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'nodeops-listen %'"
    )
    assert len(cut) == 2, cut  # one listening connection per worker
    host_ids = [row[0] for row in cluster.sql("SELECT bk_host_id FROM instance_records WHERE job_id = :j", j=job_id)]
    restart = cluster.api.ok(
        "/api/c/compapi/v2/nodeman/api/job/operate/", {"job_type": "RESTART_AGENT", "bk_host_id": host_ids}
    )
    assert cluster.api.wait(restart["job_id"], timeout_s=60)["status"] == "SUCCESS"
    delays = _wake_delays(cluster, restart["job_id"])
    assert all(0 <= delay < 1.0 for delay in delays.values()), delays
    assert "nodeops-listen" in " ".join(
        row[0] for row in cluster.sql("SELECT application_name FROM pg_stat_activity")
    )  # listening again


def test_an_api_process_starting_fails_nothing_another_process_runs(
    cluster: Cluster, ssh_hosts, run, silent_ap_url: str
) -> None:
    _slow_access_point(cluster, silent_ap_url)
    cluster.start_worker("w1", concurrency=2)
    cluster.start_worker("w2", concurrency=2)
    hosts = _hosts(ssh_hosts, 2, run, slow=2)
    job_id = _install(cluster, hosts)
    cluster.wait_for(lambda: sum(_running_by_worker(cluster, job_id).values()) == 2, "both hosts to run", 60, "w1")
    before = _revisions(cluster, job_id)
    cluster.start_api()  # a new API process (as a second one, or a restart) recovers nothing in celery mode
    time.sleep(1.5)
    assert {k: v[1] for k, v in _revisions(cluster, job_id).items()} == {k: v[1] for k, v in before.items()}
    assert set(v[1] for v in before.values()) == {"RUNNING"}
    assert cluster.api is not None
    cluster.api.ok(f"/api/job/{job_id}/revoke/", {})
    assert cluster.api.wait(job_id, timeout_s=10)["status"] == "TERMINATED"


def test_a_worker_drops_hostile_messages_and_keeps_working(cluster: Cluster, ssh_hosts, run) -> None:
    from nodeops.engine.dispatch.celery import QUEUE, TASK_NAME, celery_app

    cluster.start_worker("w1", concurrency=2)
    app = celery_app(cluster.broker_url)
    hostile: list[tuple[tuple[object, ...], dict[str, object]]] = [
        (("x", "y", "z"), {}),
        ((1, ["1"], "0.1.0"), {}),
        ((1, list(range(1, 20_002)), "0.1.0"), {}),
        ((-1, [1], "0.1.0"), {}),
        ((1, [1], "v" * 65), {}),
        ((1, [True], "0.1.0"), {}),
        ((), {"task_id": 1}),
        ((1, [1]), {}),
        (("工作\x00", ["\u202e"], None), {}),
    ]
    try:
        for args, kwargs in hostile:
            app.send_task(TASK_NAME, args=args, kwargs=kwargs, queue=QUEUE)
    finally:
        app.close()
    cluster.wait_for(
        lambda: cluster.log("w1", tail=0).count("dropped a malformed message") == len(hostile),
        "every hostile message to be dropped",
        30,
        "w1",
    )
    assert cluster.processes["w1"].poll() is None
    job_id = _install(cluster, _hosts(ssh_hosts, 2, run))
    assert cluster.api is not None
    assert cluster.api.wait(job_id, timeout_s=60)["status"] == "SUCCESS"


def test_a_record_a_worker_claimed_but_cannot_run_ends_failed_saying_why(cluster: Cluster, ssh_hosts, run) -> None:
    from nodeops.engine.dispatch.celery import celery_app, publisher

    # nothing is published by the API (its broker is away): this test sends the message, naming no real package
    cluster.start_api(NODEOPS_BROKER_URL=f"redis://127.0.0.1:{dead_port()}/0")
    cluster.start_worker("w1")
    job_id = _install(cluster, _hosts(ssh_hosts, 1, run))
    ((record_id, task_id),) = cluster.sql("SELECT id, task_id FROM instance_records WHERE job_id = :j", j=job_id)
    app = celery_app(cluster.broker_url)
    try:
        publisher(app)(task_id, [record_id], "9.9.9")
    finally:
        app.close()
    assert cluster.api is not None
    done = cluster.api.wait(job_id, timeout_s=30)
    assert done["status"] == "FAILED", done
    steps = cluster.api.log(job_id, done["list"][0]["instance_id"])
    failed = [step for step in steps if step["status"] == "FAILED"]
    assert len(failed) == 1, steps
    assert f"worker {cluster.worker_of('w1')} could not run this host" in str(failed[0]["log"])
    assert "agent version '9.9.9' is not registered" in str(failed[0]["log"])


def test_two_instances_of_one_host_sent_to_two_workers_never_overlap(cluster: Cluster, ssh_hosts, run) -> None:
    from nodeops.engine.dispatch.celery import celery_app, publisher

    # the API publishes nothing (its broker is away): the test sends each instance of the host in its own message
    cluster.start_api(NODEOPS_BROKER_URL=f"redis://127.0.0.1:{dead_port()}/0")
    cluster.start_worker("w1", concurrency=1)
    cluster.start_worker("w2", concurrency=1)
    job_id = _install(cluster, _hosts(ssh_hosts, 1, run))
    ((first, task_id),) = cluster.sql("SELECT id, task_id FROM instance_records WHERE job_id = :j", j=job_id)
    assert cluster.db is not None
    with cluster.db.begin() as conn:  # a second instance of the same host in the same task (a service instance)
        second = conn.execute(
            sa.text(
                "INSERT INTO instance_records (task_id, subscription_id, job_id, instance_id, bk_host_id, host_key, "
                "attempt, instance_info, status, is_latest, revision, created_at, updated_at, revoke_requested) "
                "SELECT task_id, subscription_id, job_id, 'service|instance|service|9001', bk_host_id, NULL, 1, "
                "instance_info, 'PENDING', true, 0, created_at, updated_at, false FROM instance_records "
                "WHERE id = :r RETURNING id"
            ),
            {"r": first},
        ).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO record_steps (record_id, step_index, code, name, status) "
                "SELECT :s, step_index, code, name, 'PENDING' FROM record_steps WHERE record_id = :r"
            ),
            {"s": second, "r": first},
        )
    app = celery_app(cluster.broker_url)
    try:
        for record_id in (first, second):
            publisher(app)(task_id, [record_id], "0.1.0")
    finally:
        app.close()
    assert cluster.api is not None
    assert cluster.api.wait(job_id, timeout_s=90)["status"] == "SUCCESS"
    rows = cluster.sql(
        "SELECT worker_id, start_at, finish_at FROM instance_records WHERE id = ANY(:ids) ORDER BY start_at",
        ids=[first, second],
    )
    (_, _, first_end), (_, second_start, _) = rows
    assert first_end <= second_start, rows  # one after the other, never both at once
    assert {row[0] for row in rows} == {cluster.worker_of("w1"), cluster.worker_of("w2")}, rows
