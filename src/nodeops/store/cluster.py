"""The guarantees of the distributed mode, held by PostgreSQL: claims, worker leases, fencing, the reaper's
decisions, revoke requests, and which tasks were handed to the broker.

- A record is run by the worker that moves it PENDING -> RUNNING (``claim``), only while no other record of its
  host is RUNNING and fewer than the cluster's limit of records run; claims take one transaction advisory lock,
  so two claims never decide on the same rows at once. Whatever the broker delivers twice finds its record
  claimed and runs nothing.
- A worker holds a lease (``workers.lease_until``), renewed by the database's clock (``renew_lease``). Every write
  of an owner first takes its lease row FOR SHARE (``hold_lease``); the reaper takes it FOR UPDATE before ending
  a worker, so a write either lands before the worker is ended or finds it ended and writes nothing (fencing).
- The reaper (``reap``) runs in one process at a time (``pg_try_advisory_xact_lock``): it ends the workers whose
  lease passed, fails their RUNNING records (the running step FAILED with a line naming the worker), recounts
  their jobs and returns the tasks whose PENDING records must be published again, with the tasks committed but
  never published.

Every function runs in the caller's session; times are the database's (``now()``), stored as naive UTC.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from nodeops.domain.rollout import Rollout
from nodeops.domain.status import Status
from nodeops.store import jobs, pipelines
from nodeops.store.db import Database, ReadHandle, session_cursor
from nodeops.store.models import InstanceRecord, Job, RecordStep, SubscriptionTask, Worker, utcnow
from nodeops.store.notices import REVOKE_CHANNEL, notify

CLAIM_LOCK = "nodeops.claims"  # one decision on what runs at a time, across the cluster
REAPER_LOCK = "nodeops.reaper"  # one reaper at a time
_DB_NOW = "(now() AT TIME ZONE 'utc')"
# the lease check every owner write makes first, completed with the worker id's placeholder and FOR SHARE
LEASE_HELD = f"SELECT 1 FROM workers WHERE ended_at IS NULL AND lease_until > {_DB_NOW} AND id ="


class Claim(enum.StrEnum):
    CLAIMED = "claimed"  # the record is this worker's, RUNNING
    GONE = "gone"  # the record is no longer PENDING (run elsewhere, revoked, or never existed): nothing to do
    BUSY = "busy"  # another record of its host is RUNNING: try again later
    FULL = "full"  # the cluster runs its limit of records: try again later
    FENCED = "fenced"  # this worker's lease has ended: it must stop
    WAIT = "wait"  # its rolling batch is not open yet: try again later


def register_worker(
    session: Session, *, worker_id: str, hostname: str, pid: int, concurrency: int, lease_s: float
) -> None:
    """Insert the worker's row with a fresh lease."""
    session.execute(
        text(
            "INSERT INTO workers (id, hostname, pid, concurrency, started_at, seen_at, lease_until) "
            f"VALUES (:id, :hostname, :pid, :concurrency, {_DB_NOW}, {_DB_NOW}, "
            f"{_DB_NOW} + make_interval(secs => :lease_s))"
        ),
        {"id": worker_id, "hostname": hostname, "pid": pid, "concurrency": concurrency, "lease_s": lease_s},
    )


def renew_lease(session: Session, *, worker_id: str, lease_s: float) -> bool:
    """Extend the worker's lease from now; False when it had already passed or the worker was ended (fenced)."""
    row = session.execute(
        text(
            f"UPDATE workers SET seen_at = {_DB_NOW}, lease_until = {_DB_NOW} + make_interval(secs => :lease_s) "
            f"WHERE id = :id AND ended_at IS NULL AND lease_until > {_DB_NOW} RETURNING id"
        ),
        {"id": worker_id, "lease_s": lease_s},
    ).first()
    return row is not None


def hold_lease(session: Session, *, worker_id: str) -> bool:
    """Whether the worker still holds its lease, keeping it so (FOR SHARE) until the session's transaction ends:
    the reaper cannot end the worker meanwhile. Every owner write calls this first in its transaction."""
    cur, p = session_cursor(session)  # before every flush of a worker's log writer: on the driver
    cur.execute(f"{LEASE_HELD} {p} FOR SHARE", (worker_id,))
    return cur.fetchone() is not None


def end_worker(session: Session, *, worker_id: str, reason: str) -> None:
    """A worker that stops on its own gives up its lease."""
    session.execute(
        text(f"UPDATE workers SET ended_at = {_DB_NOW}, end_reason = :reason WHERE id = :id AND ended_at IS NULL"),
        {"id": worker_id, "reason": reason},
    )


def live_workers(session: Session) -> list[str]:
    """Ids of the workers holding a lease now."""
    return list(
        session.scalars(text(f"SELECT id FROM workers WHERE ended_at IS NULL AND lease_until > {_DB_NOW} ORDER BY id"))
    )


def claim(
    db: Database,
    session: Session,
    *,
    record_id: int,
    worker_id: str,
    limit: int,
    line_for: Callable[[str], str],
) -> Claim:
    """Move the record PENDING -> RUNNING for ``worker_id`` if its host runs nothing else and fewer than ``limit``
    records run in the cluster; the job becomes RUNNING with its first claimed record. A claim that succeeds is
    three statements (the lock; the record's batch; the conditional update with the job's status); one that does
    not reads why. A record of a rolling batch is first checked by ``_rollout_gate`` under the same lock, so the
    threshold is decided once: ``line_for(reason)`` is the whole log line the records it stops get."""
    cur, p = session_cursor(session)  # the hottest statements of a worker: on the driver, in the session
    cur.execute(f"SELECT pg_advisory_xact_lock(hashtext({p}))", (CLAIM_LOCK,))
    cur.execute(
        f"SELECT task_id, job_id, batch FROM instance_records WHERE id = {p} AND status = 'PENDING'", (record_id,)
    )
    row = cur.fetchone()
    if row is not None and row[2] is not None:
        gate = _rollout_gate(
            db, session, task_id=row[0], job_id=row[1], batch=row[2], worker_id=worker_id, line_for=line_for
        )
        if gate is not None:
            return gate
    now = utcnow().replace(tzinfo=None)
    cur.execute(
        f"WITH claimed AS (UPDATE instance_records AS r SET status = 'RUNNING', worker_id = {p}, start_at = {p}, "
        f"updated_at = {p}, revision = r.revision + 1 WHERE r.id = {p} AND r.status = 'PENDING' "
        f"AND EXISTS ({LEASE_HELD} {p} FOR SHARE) "
        "AND (r.bk_host_id IS NULL OR NOT EXISTS (SELECT 1 FROM instance_records o "
        "WHERE o.status = 'RUNNING' AND o.bk_host_id = r.bk_host_id)) "
        f"AND (SELECT count(*) FROM instance_records WHERE status = 'RUNNING') < {p} RETURNING r.job_id), "
        "started AS (UPDATE jobs SET status = 'RUNNING' WHERE status = 'PENDING' "
        "AND id IN (SELECT job_id FROM claimed)) "
        "SELECT job_id FROM claimed",
        (worker_id, now, now, record_id, worker_id, limit),
    )
    if cur.fetchone() is None:
        return _why_not_claimed(session, record_id=record_id, worker_id=worker_id, limit=limit)
    return Claim.CLAIMED


def _rollout_gate(
    db: Database,
    session: Session,
    *,
    task_id: int,
    job_id: int | None,
    batch: int,
    worker_id: str,
    line_for: Callable[[str], str],
) -> Claim | None:
    """Whether a record of ``batch`` may be claimed now (None), under the claim lock: once more than the job's
    ``max_fail_percentage`` of the task's hosts started so far failed, every PENDING record of the task ends
    IGNORED (the reason in its first step's log) and the claim is GONE; before every host of the earlier
    batches has ended and ``batch_interval_s`` has passed since the last one did, WAIT."""
    stored = session.scalar(select(Job.rollout).where(Job.id == job_id)) if job_id is not None else None
    plan = Rollout.stored(stored)
    if plan is None:
        return None
    cur, p = session_cursor(session)
    cur.execute(
        "SELECT count(*) FILTER (WHERE start_at IS NOT NULL), "
        "count(*) FILTER (WHERE start_at IS NOT NULL AND status = 'FAILED'), "
        f"count(*) FILTER (WHERE batch < {p} AND status IN ('PENDING', 'RUNNING')), "
        f"max(finish_at) FILTER (WHERE batch < {p}) "
        f"FROM instance_records WHERE task_id = {p} AND batch IS NOT NULL",
        (batch, batch, task_id),
    )
    started, failed, earlier_active, last_end = cur.fetchone() or (0, 0, 0, None)
    if plan.threshold_reached(started=started, failed=failed):
        if not hold_lease(session, worker_id=worker_id):
            return Claim.FENCED
        _ignore_unstarted(db, session, task_id=task_id, line=line_for(plan.stop_reason(started=started, failed=failed)))
        if job_id is not None:
            pipelines.refresh_job_if_settled(session, job_id=job_id)
        return Claim.GONE
    if earlier_active:
        return Claim.WAIT
    now = utcnow().replace(tzinfo=None)
    if last_end is not None and last_end + timedelta(seconds=plan.batch_interval_s) > now:
        return Claim.WAIT
    return None


def _ignore_unstarted(db: Database, session: Session, *, task_id: int, line: str) -> None:
    """End every PENDING record of the task IGNORED, its first step not yet passed too, ``line`` in its log."""
    pending = list(
        session.scalars(
            select(InstanceRecord.id)
            .where(InstanceRecord.task_id == task_id, InstanceRecord.status == Status.PENDING.value)
            .order_by(InstanceRecord.id)
            .with_for_update()
        )
    )
    if not pending:
        return
    first: dict[int, int] = {
        record_id: index
        for record_id, index in session.execute(
            select(RecordStep.record_id, func.min(RecordStep.step_index))
            .where(RecordStep.record_id.in_(pending), RecordStep.status != Status.SUCCESS.value)
            .group_by(RecordStep.record_id)
        )
    }
    now = utcnow()
    jobs.write_progress(
        db,
        session,
        chunks=[(record_id, first.get(record_id, 0), line) for record_id in pending],
        steps=[jobs.StepProgress(r, first.get(r, 0), Status.IGNORED, now, now) for r in pending],
        records=[jobs.RecordProgress(record_id, Status.IGNORED, None, now) for record_id in pending],
    )


def _why_not_claimed(session: Session, *, record_id: int, worker_id: str, limit: int) -> Claim:
    if not hold_lease(session, worker_id=worker_id):
        return Claim.FENCED
    row = session.execute(
        select(InstanceRecord.status, InstanceRecord.bk_host_id).where(InstanceRecord.id == record_id)
    ).first()
    if row is None or row.status != Status.PENDING.value:
        return Claim.GONE
    if row.bk_host_id is not None:
        other = session.scalar(
            select(InstanceRecord.id)
            .where(InstanceRecord.status == Status.RUNNING.value, InstanceRecord.bk_host_id == row.bk_host_id)
            .limit(1)
        )
        if other is not None:
            return Claim.BUSY
    return Claim.FULL


def running_owner(session: Session, *, record_id: int) -> str | None:
    """The id of the worker running the record, None unless it is RUNNING."""
    return session.scalar(
        select(InstanceRecord.worker_id).where(
            InstanceRecord.id == record_id, InstanceRecord.status == Status.RUNNING.value
        )
    )


def job_of(session: Session, *, record_id: int) -> int | None:
    return session.scalar(select(InstanceRecord.job_id).where(InstanceRecord.id == record_id))


def host_groups(session: Session, *, task_id: int) -> list[list[int]]:
    """The task's PENDING record ids, one list per host in record order (a record without a host alone): what one
    broker message carries."""
    groups: dict[object, list[int]] = {}
    for record_id, bk_host_id in session.execute(
        select(InstanceRecord.id, InstanceRecord.bk_host_id)
        .where(InstanceRecord.task_id == task_id, InstanceRecord.status == Status.PENDING.value)
        .order_by(InstanceRecord.id)
    ):
        groups.setdefault(("host", bk_host_id) if bk_host_id is not None else ("record", record_id), []).append(
            record_id
        )
    return list(groups.values())


def mark_published(session: Session, *, task_id: int, package_version: str) -> None:
    """The task's hosts were handed to the broker, to get ``package_version``."""
    session.execute(
        update(SubscriptionTask)
        .where(SubscriptionTask.id == task_id)
        .values(published_at=utcnow(), package_version=package_version)
    )


def task_package(session: Session, *, task_id: int) -> str | None:
    """The agent package version the task's hosts get (None: not recorded, the task was never published)."""
    return session.scalar(select(SubscriptionTask.package_version).where(SubscriptionTask.id == task_id))


def revoke_requests(cur: ReadHandle, paramstyle: str, *, worker_id: str) -> list[int]:
    """The RUNNING records of this worker a revoke asked to stop (one short read: every worker looks often)."""
    cur.execute(
        f"SELECT id FROM instance_records WHERE worker_id = {paramstyle} AND status = 'RUNNING' "
        "AND revoke_requested ORDER BY id",
        (worker_id,),
    )
    return [int(row[0]) for row in cur.fetchall()]


def request_revoke(db: Database, session: Session, *, job_id: int, record_ids: Sequence[int], line: str) -> None:
    """Revoke in one transaction: the PENDING records among ``record_ids`` end FAILED (``line`` in the log of
    their first step not yet passed), the RUNNING ones are asked to stop (their owner cancels them and writes
    the line), the job is TERMINATED and recounted, and the workers are notified."""
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": CLAIM_LOCK})
    rows = session.execute(
        select(InstanceRecord.id, InstanceRecord.status)
        .where(InstanceRecord.id.in_(list(record_ids)))
        .order_by(InstanceRecord.id)
        .with_for_update()
    ).all()
    pending = [record_id for record_id, status in rows if status == Status.PENDING.value]
    running = [record_id for record_id, status in rows if status == Status.RUNNING.value]
    now = utcnow()
    if pending:
        first: dict[int, int] = {}
        for record_id, index in session.execute(
            select(RecordStep.record_id, func.min(RecordStep.step_index))
            .where(RecordStep.record_id.in_(pending), RecordStep.status != Status.SUCCESS.value)
            .group_by(RecordStep.record_id)
        ):
            first[record_id] = index
        jobs.write_progress(
            db,
            session,
            chunks=[(record_id, first.get(record_id, 0), line) for record_id in pending],
            records=[jobs.RecordProgress(record_id, Status.FAILED, None, now) for record_id in pending],
        )
    if running:
        session.execute(update(InstanceRecord).where(InstanceRecord.id.in_(running)).values(revoke_requested=True))
    jobs.set_job_status(session, job_id=job_id, status=Status.TERMINATED, end_at=now)
    pipelines.refresh_job(session, job_id=job_id)
    if running:
        notify(session, REVOKE_CHANNEL, str(job_id))


@dataclass(frozen=True, slots=True, kw_only=True)
class Reaped:
    """What one pass of the reaper did, and what is left for the caller to publish after the commit."""

    workers: list[str]  # the workers it ended
    records: int  # their RUNNING records it failed
    jobs: list[int]  # the jobs it recounted
    republish: list[int]  # tasks whose PENDING records must be published (again)


def reaping_needed(cur: ReadHandle, paramstyle: str, *, unpublished_after_s: float) -> bool:
    """Whether ``reap`` has anything to do: a worker whose lease passed, a RUNNING record of an ended worker, or
    a task committed ``unpublished_after_s`` ago, never published, with PENDING records. One short read, so the
    reaper of every process can look often and take its lock and rows only when there is work."""
    p = paramstyle
    cutoff = (utcnow() - timedelta(seconds=unpublished_after_s)).replace(tzinfo=None)
    cur.execute(
        f"SELECT EXISTS (SELECT 1 FROM workers WHERE ended_at IS NULL AND lease_until <= {_DB_NOW}) "
        "OR EXISTS (SELECT 1 FROM instance_records r JOIN workers w ON w.id = r.worker_id "
        "WHERE r.status = 'RUNNING' AND w.ended_at IS NOT NULL) "
        "OR EXISTS (SELECT 1 FROM subscription_tasks t JOIN instance_records r ON r.task_id = t.id "
        f"WHERE t.published_at IS NULL AND t.created_at < {p} AND r.status = 'PENDING')",
        (cutoff,),
    )
    row = cur.fetchone()
    return bool(row and row[0])


def reap(
    db: Database, session: Session, *, line_for: Callable[[str], str], unpublished_after_s: float
) -> Reaped | None:
    """One pass of the reaper, or None when another process is reaping. ``line_for(worker_id)`` is the log line
    written into a lost worker's running steps (whole lines). Tasks committed more than ``unpublished_after_s``
    ago and never published are returned with the lost workers' tasks."""
    got = session.scalar(text("SELECT pg_try_advisory_xact_lock(hashtext(:name))"), {"name": REAPER_LOCK})
    if not got:
        return None
    lost = list(
        session.scalars(
            text(f"SELECT id FROM workers WHERE ended_at IS NULL AND lease_until <= {_DB_NOW} ORDER BY id FOR UPDATE")
        )
    )
    if lost:
        session.execute(
            text(
                f"UPDATE workers SET ended_at = {_DB_NOW}, "
                "end_reason = 'lease expired (last renewed ' "
                "|| to_char(seen_at, 'YYYY-MM-DD HH24:MI:SS') || ' UTC)' "
                "WHERE id = ANY(:ids)"
            ),
            {"ids": lost},
        )
    orphans = session.execute(
        select(InstanceRecord.id, InstanceRecord.job_id, InstanceRecord.task_id, InstanceRecord.worker_id)
        .join(Worker, Worker.id == InstanceRecord.worker_id)
        .where(InstanceRecord.status == Status.RUNNING.value, Worker.ended_at.is_not(None))
        .order_by(InstanceRecord.id)
        .with_for_update(of=InstanceRecord)
    ).all()
    now = utcnow()
    if orphans:
        owner = {record_id: worker_id for record_id, _j, _t, worker_id in orphans}
        running: list[tuple[int, int]] = [
            (record_id, index)
            for record_id, index in session.execute(
                select(RecordStep.record_id, RecordStep.step_index)
                .where(RecordStep.record_id.in_(list(owner)), RecordStep.status == Status.RUNNING.value)
                .order_by(RecordStep.record_id, RecordStep.step_index)
            )
        ]
        # a record lost between two steps (or before its first was written) says why in its next step's log
        between = [record_id for record_id in owner if record_id not in {r for r, _i in running}]
        if between:
            running += [
                (record_id, index)
                for record_id, index in session.execute(
                    select(RecordStep.record_id, func.min(RecordStep.step_index))
                    .where(RecordStep.record_id.in_(between), RecordStep.status != Status.SUCCESS.value)
                    .group_by(RecordStep.record_id)
                )
            ]
        jobs.write_progress(
            db,
            session,
            chunks=[(record_id, index, line_for(owner[record_id] or "")) for record_id, index in running],
            steps=[jobs.StepProgress(record_id, index, Status.FAILED, None, now) for record_id, index in running],
            records=[jobs.RecordProgress(record_id, Status.FAILED, None, now) for record_id in owner],
        )
    job_ids = sorted({job_id for _r, job_id, _t, _w in orphans if job_id is not None})
    for job_id in job_ids:
        pipelines.refresh_job(session, job_id=job_id)
    tasks = {task_id for _r, _j, task_id, _w in orphans}
    if tasks:  # unpublished until the caller has published them again: a failed publish is retried next pass
        session.execute(
            update(SubscriptionTask).where(SubscriptionTask.id.in_(sorted(tasks))).values(published_at=None)
        )
    tasks.update(
        session.scalars(
            select(InstanceRecord.task_id)
            .join(SubscriptionTask, SubscriptionTask.id == InstanceRecord.task_id)
            .where(
                InstanceRecord.status == Status.PENDING.value,
                SubscriptionTask.published_at.is_(None),
                SubscriptionTask.created_at < now - timedelta(seconds=unpublished_after_s),
            )
            .distinct()
        )
    )
    pending = (
        set(
            session.scalars(
                select(InstanceRecord.task_id)
                .where(InstanceRecord.task_id.in_(sorted(tasks)), InstanceRecord.status == Status.PENDING.value)
                .distinct()
            )
        )
        if tasks
        else set()
    )
    return Reaped(workers=lost, records=len(orphans), jobs=job_ids, republish=sorted(pending))
