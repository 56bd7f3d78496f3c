"""Claims of rolling batches in PostgreSQL (``store.cluster``): a record of a batch not yet open waits, the next
batch opens once the earlier ones ended and the interval passed, and the failure threshold is decided once,
under the claim lock, however many workers claim at that moment."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from nodeops.domain.plans import JobType, plan_steps
from nodeops.domain.rollout import Rollout
from nodeops.domain.status import Status
from nodeops.store import cluster, jobs
from nodeops.store.models import InstanceRecord, Job, RecordStep, StepLog, utcnow
from tests.store.test_cluster_claims import _worker

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def _job(services, count: int, rollout: Rollout) -> list[int]:
    with services.db.session() as session:
        created = jobs.create_job(
            session,
            job_type=JobType.RESTART_AGENT,
            created_by="admin",
            from_system="test",
            bk_biz_scope=[2],
            instances=[
                jobs.NewInstance(instance_id=f"host|instance|host|{n}", bk_host_id=n) for n in range(1, count + 1)
            ],
            steps=plan_steps(JobType.RESTART_AGENT),
            rollout=rollout,
        )
    return list(created.record_ids.values())


def _claim(services, record_id: int, worker_id: str) -> cluster.Claim:
    with services.db.session() as session:
        return cluster.claim(
            services.db,
            session,
            record_id=record_id,
            worker_id=worker_id,
            limit=100,
            line_for=lambda reason: f"[2026-12-07 10:00:00 WARNING] {reason}",
        )


def _end(services, record_id: int, status: Status, *, ago_s: float = 0) -> None:
    with services.db.session() as session:
        jobs.write_progress(
            services.db,
            session,
            records=[jobs.RecordProgress(record_id, status, None, utcnow() - timedelta(seconds=ago_s))],
        )


def test_a_batch_opens_once_the_earlier_ones_ended_and_the_threshold_stops_the_rest_once(services) -> None:
    r1, r2, r3, r4, r5, r6 = _job(services, 6, Rollout(batch_size=2, max_fail_percentage=40))
    a, b = _worker(services, "a.1"), _worker(services, "b.2")
    assert _claim(services, r3, a) is cluster.Claim.WAIT  # batch 2 before batch 1 ran
    assert _claim(services, r1, a) is cluster.Claim.CLAIMED
    assert _claim(services, r2, b) is cluster.Claim.CLAIMED
    _end(services, r1, Status.SUCCESS)
    assert _claim(services, r3, a) is cluster.Claim.WAIT  # r2 still runs
    _end(services, r2, Status.FAILED)  # 1 of 2 started failed: 50 % > 40 %
    outcomes: dict[int, cluster.Claim] = {}
    barrier = threading.Barrier(2)

    def race(record_id: int, worker_id: str) -> None:
        barrier.wait()
        outcomes[record_id] = _claim(services, record_id, worker_id)

    threads = [threading.Thread(target=race, args=(r3, a)), threading.Thread(target=race, args=(r4, b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == {r3: cluster.Claim.GONE, r4: cluster.Claim.GONE}
    assert _claim(services, r6, a) is cluster.Claim.GONE
    with services.db.session() as session:
        statuses = {r: status for r, status in session.execute(select(InstanceRecord.id, InstanceRecord.status))}
        assert [statuses[r] for r in (r1, r2, r3, r4, r5, r6)] == ["SUCCESS", "FAILED"] + ["IGNORED"] * 4
        lines = session.scalars(select(StepLog.text).where(StepLog.record_id.in_([r3, r4, r5, r6]))).all()
        assert len(lines) == 4 and all("1 of the 2 hosts started so far failed" in line for line in lines), lines
        first = session.scalars(
            select(RecordStep.status).where(RecordStep.record_id == r5).order_by(RecordStep.step_index)
        ).all()
        assert first[0] == "IGNORED" and set(first[1:]) == {"PENDING"}
        assert session.scalar(select(InstanceRecord.start_at).where(InstanceRecord.id == r5)) is None
        job = session.get(Job, session.scalar(select(InstanceRecord.job_id).where(InstanceRecord.id == r1)))
        assert job is not None and job.status == "PART_FAILED" and job.statistics["ignored_count"] == 4


def test_the_next_batch_waits_for_its_interval(services) -> None:
    r1, r2 = _job(services, 2, Rollout(batch_size=1, batch_interval_s=30))
    a = _worker(services, "a.1")
    assert _claim(services, r1, a) is cluster.Claim.CLAIMED
    _end(services, r1, Status.FAILED)  # no threshold: a failure only ends its host
    assert _claim(services, r2, a) is cluster.Claim.WAIT
    with services.db.session() as session:
        session.execute(
            text("UPDATE instance_records SET finish_at = finish_at - interval '31 seconds' WHERE id = :id"),
            {"id": r1},
        )
    assert _claim(services, r2, a) is cluster.Claim.CLAIMED


def test_records_without_a_batch_are_claimed_as_before(services) -> None:
    (r1,) = _job(services, 1, Rollout(batch_size=1))
    with services.db.session() as session:
        session.execute(text("UPDATE instance_records SET batch = NULL WHERE id = :id"), {"id": r1})
    assert _claim(services, r1, _worker(services, "a.1")) is cluster.Claim.CLAIMED
