"""The distributed mode's guarantees in PostgreSQL (``store.cluster``): claims, leases, fencing, the reaper and
revoke requests, on a real database; races run on two connections at once."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text

from nodeops.errors import LeaseLost
from nodeops.store import agents as agent_rows
from nodeops.store import cluster, jobs
from nodeops.store.models import InstanceRecord, Job, RecordStep, StepLog, SubscriptionTask, Worker
from nodeops.store.notices import REVOKE_CHANNEL
from tests.support.factories import make_agents, restart_job

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
LINE = "[2026-12-06 10:00:00 ERROR] lost"


def _worker(services, worker_id: str, lease_s: float = 30) -> str:
    with services.db.session() as session:
        cluster.register_worker(session, worker_id=worker_id, hostname="test", pid=1, concurrency=4, lease_s=lease_s)
    return worker_id


def _claim(services, record_id: int, worker_id: str, limit: int = 100) -> cluster.Claim:
    with services.db.session() as session:
        return cluster.claim(
            services.db, session, record_id=record_id, worker_id=worker_id, limit=limit, line_for=lambda r: r + "\n"
        )


def _status(services, record_id: int) -> tuple[str, str | None]:
    with services.db.session() as session:
        row = session.execute(
            select(InstanceRecord.status, InstanceRecord.worker_id).where(InstanceRecord.id == record_id)
        ).one()
        return row.status, row.worker_id


def _needed(services) -> bool:
    with services.db.cursor() as cur:
        return cluster.reaping_needed(cur, services.db.paramstyle, unpublished_after_s=10)


def _expire(services, worker_id: str) -> None:
    with services.db.session() as session:
        session.execute(
            text("UPDATE workers SET lease_until = lease_until - interval '1 hour' WHERE id = :id"), {"id": worker_id}
        )


def test_a_record_is_claimed_once_and_its_job_starts(services):
    job = restart_job(services, [jobs.NewInstance(instance_id="host|instance|host|1", bk_host_id=1)])
    (record_id,) = job.record_ids.values()
    a, b = _worker(services, "a.1"), _worker(services, "b.2")
    assert _claim(services, record_id, a) is cluster.Claim.CLAIMED
    assert _claim(services, record_id, b) is cluster.Claim.GONE
    assert _claim(services, record_id, a) is cluster.Claim.GONE
    assert _status(services, record_id) == ("RUNNING", a)
    with services.db.session() as session:
        assert session.get(Job, job.job_id).status == "RUNNING"
    assert _claim(services, 10**9, a) is cluster.Claim.GONE


def test_a_host_runs_one_record_at_a_time_and_the_limit_counts_the_whole_cluster(services):
    job = restart_job(
        services,
        [
            jobs.NewInstance(instance_id="service|instance|service|501", bk_host_id=1),
            jobs.NewInstance(instance_id="service|instance|service|502", bk_host_id=1),
            jobs.NewInstance(instance_id="host|instance|host|2", bk_host_id=2),
            jobs.NewInstance(instance_id="host|instance|host|3", bk_host_id=3),
        ],
    )
    ids = job.record_ids
    a, b = _worker(services, "a.1"), _worker(services, "b.2")
    assert _claim(services, ids["service|instance|service|501"], a, limit=2) is cluster.Claim.CLAIMED
    assert _claim(services, ids["service|instance|service|502"], b, limit=2) is cluster.Claim.BUSY
    assert _claim(services, ids["host|instance|host|2"], b, limit=2) is cluster.Claim.CLAIMED
    assert _claim(services, ids["host|instance|host|3"], a, limit=2) is cluster.Claim.FULL
    with services.db.session() as session:
        jobs.write_progress(
            services.db,
            session,
            records=[jobs.RecordProgress(ids["service|instance|service|501"], jobs.Status.SUCCESS, None, None)],
        )
    assert _claim(services, ids["service|instance|service|502"], b, limit=2) is cluster.Claim.CLAIMED
    assert _status(services, ids["host|instance|host|3"]) == ("PENDING", None)


def test_two_workers_racing_for_two_records_of_one_host_never_both_run_it(services):
    a, b = _worker(services, "a.1"), _worker(services, "b.2")
    for round_ in range(200):
        job = restart_job(
            services,
            [
                jobs.NewInstance(instance_id=f"service|instance|service|{2 * round_}", bk_host_id=round_ + 1),
                jobs.NewInstance(instance_id=f"service|instance|service|{2 * round_ + 1}", bk_host_id=round_ + 1),
            ],
        )
        first, second = job.record_ids.values()
        barrier = threading.Barrier(2)
        outcomes: dict[str, cluster.Claim] = {}

        def race(
            worker_id: str, record_id: int, barrier: threading.Barrier, outcomes: dict[str, cluster.Claim]
        ) -> None:
            barrier.wait()
            outcomes[worker_id] = _claim(services, record_id, worker_id)

        threads = [
            threading.Thread(target=race, args=(a, first, barrier, outcomes)),
            threading.Thread(target=race, args=(b, second, barrier, outcomes)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes.values()) == [cluster.Claim.BUSY, cluster.Claim.CLAIMED], (round_, outcomes)
        with services.db.session() as session:
            session.execute(text("UPDATE instance_records SET status = 'SUCCESS' WHERE job_id = :j"), {"j": job.job_id})


def test_the_lease_fences_a_worker_by_the_database_clock(services):
    a = _worker(services, "a.1", lease_s=30)
    with services.db.session() as session:
        assert cluster.hold_lease(session, worker_id=a)
        assert cluster.renew_lease(session, worker_id=a, lease_s=30)
        assert cluster.live_workers(session) == [a]
    _expire(services, a)
    with services.db.session() as session:
        assert not cluster.hold_lease(session, worker_id=a)
        assert not cluster.renew_lease(session, worker_id=a, lease_s=30)  # a passed lease is never renewed
        assert cluster.live_workers(session) == []
    job = restart_job(services, [jobs.NewInstance(instance_id="host|instance|host|1", bk_host_id=1)])
    (record_id,) = job.record_ids.values()
    assert _claim(services, record_id, a) is cluster.Claim.FENCED
    assert _status(services, record_id) == ("PENDING", None)


def test_the_reaper_fails_a_lost_worker_s_records_and_returns_its_tasks(services):
    job = restart_job(
        services,
        [
            jobs.NewInstance(instance_id="host|instance|host|1", bk_host_id=1),
            jobs.NewInstance(instance_id="host|instance|host|2", bk_host_id=2),
            jobs.NewInstance(instance_id="host|instance|host|3", bk_host_id=3),
        ],
    )
    one, two, three = job.record_ids.values()
    lost, alive = _worker(services, "lost.1"), _worker(services, "alive.2")
    assert _claim(services, one, lost) is cluster.Claim.CLAIMED
    assert _claim(services, two, alive) is cluster.Claim.CLAIMED
    with services.db.session() as session:
        jobs.write_progress(services.db, session, steps=[jobs.StepProgress(one, 1, jobs.Status.RUNNING, None, None)])
        cluster.mark_published(session, task_id=job.task_id, package_version="0.1.0")
    assert not _needed(services)  # every worker holds its lease, the task is published: nothing to reap
    _expire(services, lost)
    assert _needed(services)
    with services.db.session() as session:
        reaped = cluster.reap(services.db, session, line_for=lambda worker: f"{LINE} {worker}", unpublished_after_s=10)
    assert reaped is not None
    assert reaped.workers == [lost] and reaped.records == 1 and reaped.jobs == [job.job_id]
    assert reaped.republish == [job.task_id]  # record three is still PENDING
    assert _status(services, one) == ("FAILED", lost)
    assert _status(services, two) == ("RUNNING", alive)
    assert _status(services, three) == ("PENDING", None)
    with services.db.session() as session:
        step = session.scalars(select(RecordStep).where(RecordStep.record_id == one, RecordStep.step_index == 1)).one()
        assert step.status == "FAILED" and step.finish_at is not None
        assert session.scalars(select(StepLog.text).where(StepLog.record_id == one)).all() == [f"{LINE} {lost}"]
        assert session.get(Worker, lost).ended_at is not None
        assert session.get(Worker, alive).ended_at is None
        again = cluster.reap(services.db, session, line_for=lambda worker: LINE, unpublished_after_s=10)
    assert again is not None and again.workers == [] and again.records == 0 and again.republish == []
    assert not _needed(services)


def test_a_running_record_of_a_worker_that_ended_is_worth_a_reaper_pass(services):
    job = restart_job(services, [jobs.NewInstance(instance_id="host|instance|host|1", bk_host_id=1)])
    (record_id,) = job.record_ids.values()
    worker = _worker(services, "ended.1")
    assert _claim(services, record_id, worker) is cluster.Claim.CLAIMED
    with services.db.session() as session:
        cluster.mark_published(session, task_id=job.task_id, package_version="0.1.0")
    assert not _needed(services)
    with services.db.session() as session:  # ended while its record still runs (its lease is not even passed)
        cluster.end_worker(session, worker_id=worker, reason="test")
    assert _needed(services)
    with services.db.session() as session:
        reaped = cluster.reap(services.db, session, line_for=lambda w: LINE, unpublished_after_s=10)
    assert reaped is not None and reaped.records == 1
    assert _status(services, record_id) == ("FAILED", worker)
    assert not _needed(services)


def test_one_reaper_at_a_time(services):
    with services.db.session() as first:
        assert cluster.reap(services.db, first, line_for=lambda w: LINE, unpublished_after_s=10) is not None
        with services.db.session() as second:
            assert cluster.reap(services.db, second, line_for=lambda w: LINE, unpublished_after_s=10) is None


def test_a_task_never_published_is_handed_to_the_reaper_after_its_grace(services):
    job = restart_job(services, [jobs.NewInstance(instance_id="host|instance|host|1", bk_host_id=1)])
    with services.db.session() as session:
        fresh = cluster.reap(services.db, session, line_for=lambda w: LINE, unpublished_after_s=10)
    assert fresh is not None and fresh.republish == []
    assert not _needed(services)  # within its grace
    with services.db.session() as session:
        session.execute(
            text("UPDATE subscription_tasks SET created_at = created_at - interval '1 minute' WHERE id = :t"),
            {"t": job.task_id},
        )
    assert _needed(services)
    with services.db.session() as session:
        late = cluster.reap(services.db, session, line_for=lambda w: LINE, unpublished_after_s=10)
        assert late is not None and late.republish == [job.task_id]
        assert cluster.host_groups(session, task_id=job.task_id) == [list(job.record_ids.values())]
        cluster.mark_published(session, task_id=job.task_id, package_version="0.1.0")
    with services.db.session() as session:
        done = cluster.reap(services.db, session, line_for=lambda w: LINE, unpublished_after_s=10)
        assert done is not None and done.republish == []
        assert session.get(SubscriptionTask, job.task_id).package_version == "0.1.0"
    assert not _needed(services)


def test_revoke_fails_pending_records_asks_running_ones_and_notifies(services):
    job = restart_job(
        services,
        [
            jobs.NewInstance(instance_id="host|instance|host|1", bk_host_id=1),
            jobs.NewInstance(instance_id="host|instance|host|2", bk_host_id=2),
        ],
    )
    running, pending = job.record_ids.values()
    owner = _worker(services, "owner.1")
    assert _claim(services, running, owner) is cluster.Claim.CLAIMED
    listener = services.db.engine.raw_connection()
    try:
        listener.driver_connection.autocommit = True
        listener.driver_connection.execute(f"LISTEN {REVOKE_CHANNEL}")
        with services.db.session() as session:
            cluster.request_revoke(services.db, session, job_id=job.job_id, record_ids=[running, pending], line=LINE)
        deadline = time.monotonic() + 5
        notices = []
        while not notices and time.monotonic() < deadline:
            notices = list(listener.driver_connection.notifies(timeout=0.5, stop_after=1))
    finally:
        listener.close()
    assert [(n.channel, n.payload) for n in notices] == [(REVOKE_CHANNEL, str(job.job_id))]
    assert _status(services, pending)[0] == "FAILED"
    assert _status(services, running) == ("RUNNING", owner)
    with services.db.cursor() as cur:
        assert cluster.revoke_requests(cur, services.db.paramstyle, worker_id=owner) == [running]
    with services.db.session() as session:
        assert session.get(Job, job.job_id).status == "TERMINATED"
        assert session.scalars(select(StepLog.text).where(StepLog.record_id == pending)).all() == [LINE]
        assert session.scalars(select(StepLog.text).where(StepLog.record_id == running)).all() == []


def test_a_step_s_host_write_is_fenced_by_the_worker_s_lease(services):
    (agent,) = make_agents(services, 1)
    worker = _worker(services, "w.1")
    agent_rows.set_agent(services.db, bk_host_id=agent.bk_host_id, status="RUNNING", version="2.0", worker_id=worker)
    _expire(services, worker)
    with pytest.raises(LeaseLost, match="no longer holds its lease"):
        agent_rows.set_agent(
            services.db, bk_host_id=agent.bk_host_id, status="NOT_INSTALLED", version="3.0", worker_id=worker
        )
    with services.db.session() as session:
        row = session.execute(
            text("SELECT agent_status, agent_version FROM hosts WHERE bk_host_id = :h"), {"h": agent.bk_host_id}
        ).one()
    assert tuple(row) == ("RUNNING", "2.0")


def test_a_record_lost_between_two_steps_says_why_in_its_next_step(services):
    job = restart_job(services, [jobs.NewInstance(instance_id="host|instance|host|1", bk_host_id=1)])
    (record_id,) = job.record_ids.values()
    lost = _worker(services, "lost.1")
    assert _claim(services, record_id, lost) is cluster.Claim.CLAIMED
    with services.db.session() as session:  # step 0 passed, step 1 not started yet
        jobs.write_progress(
            services.db, session, steps=[jobs.StepProgress(record_id, 0, jobs.Status.SUCCESS, None, None)]
        )
    _expire(services, lost)
    with services.db.session() as session:
        reaped = cluster.reap(services.db, session, line_for=lambda worker: f"{LINE} {worker}", unpublished_after_s=10)
    assert reaped is not None and reaped.records == 1
    with services.db.session() as session:
        steps = {
            s.step_index: s.status for s in session.scalars(select(RecordStep).where(RecordStep.record_id == record_id))
        }
        assert steps[0] == "SUCCESS" and steps[1] == "FAILED"
        assert session.execute(
            select(StepLog.step_index, StepLog.text).where(StepLog.record_id == record_id)
        ).all() == [(1, f"{LINE} {lost}")]
    assert _status(services, record_id) == ("FAILED", lost)
