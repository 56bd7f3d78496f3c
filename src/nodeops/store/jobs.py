"""Writes of the job side: a job with its one-off subscription, its tasks, records, steps and log chunks.

Once a record exists, its steps' state, its own and its log chunks change only through ``write_progress``, whoever
writes them (the engine's ``LogWriter``, revoke, a retry's kept steps, tests); log chunks are only ever INSERTed,
so appending costs the same whatever the log's length.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from nodeops.domain.plans import PlannedStep
from nodeops.domain.rollout import Rollout
from nodeops.domain.status import Status
from nodeops.store.db import Database
from nodeops.store.models import (
    InstanceRecord,
    Job,
    RecordStep,
    Subscription,
    SubscriptionStep,
    SubscriptionTask,
    utcnow,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewInstance:
    """A host instance to create a record for; ``instance_id`` is the form chosen at creation (spec §4)."""

    instance_id: str
    bk_host_id: int | None = None
    host_key: str | None = None
    instance_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatedJob:
    job_id: int
    subscription_id: int
    task_id: int
    record_ids: dict[str, int]  # instance_id -> record id of attempt 1


def create_job(
    session: Session,
    *,
    job_type: str,
    created_by: str,
    from_system: str,
    bk_biz_scope: Sequence[int],
    instances: Sequence[NewInstance],
    steps: Sequence[PlannedStep],
    error_hosts: Sequence[dict[str, Any]] = (),
    step_params: dict[str, Any] | None = None,
    rollout: Rollout | None = None,
) -> CreatedJob:
    """Create a job, its subscription (one ``agent`` step, with ``step_params``), its first task and a PENDING
    record per instance; with a ``rollout``, each record gets the batch of its instance's position."""
    nodes = [_node_of(instance) for instance in instances]
    subscription_id = add_subscription(
        session,
        object_type="HOST",
        node_type="INSTANCE",
        nodes=nodes,
        bk_biz_id=bk_biz_scope[0] if len(bk_biz_scope) == 1 else None,
        steps=[{"id": "agent", "type": "AGENT", "config": {"job_type": job_type}, "params": dict(step_params or {})}],
        creator=created_by,
        from_system=from_system,
    )
    job_id = add_job(
        session,
        job_type=job_type,
        created_by=created_by,
        from_system=from_system,
        bk_biz_scope=bk_biz_scope,
        error_hosts=error_hosts,
        subscription_id=subscription_id,
        rollout=rollout,
    )
    task = SubscriptionTask(
        subscription_id=subscription_id,
        job_id=job_id,
        scope={"object_type": "HOST", "node_type": "INSTANCE", "nodes": nodes},
        actions={instance.instance_id: {"agent": job_type} for instance in instances},
    )
    session.add(task)
    session.flush()
    record_ids = add_records(
        session,
        job_id=job_id,
        subscription_id=subscription_id,
        task_id=task.id,
        instances=instances,
        steps=steps,
        attempt=1,
        batches=None if rollout is None else rollout.batches([i.instance_id for i in instances]),
    )
    return CreatedJob(job_id=job_id, subscription_id=subscription_id, task_id=task.id, record_ids=record_ids)


def add_subscription(
    session: Session,
    *,
    object_type: str,
    node_type: str,
    nodes: list[dict[str, Any]],
    bk_biz_id: int | None,
    steps: Sequence[dict[str, Any]],
    creator: str,
    from_system: str,
    name: str | None = None,
) -> int:
    """Insert a subscription and its steps (``{id, type, config, params}`` each); returns its id."""
    subscription = Subscription(
        name=name,
        object_type=object_type,
        node_type=node_type,
        nodes=nodes,
        bk_biz_id=bk_biz_id,
        creator=creator,
        from_system=from_system,
    )
    session.add(subscription)
    session.flush()
    session.add_all(
        SubscriptionStep(
            subscription_id=subscription.id,
            index=index,
            step_id=step["id"],
            type=step["type"],
            config=dict(step.get("config") or {}),
            params=dict(step.get("params") or {}),
        )
        for index, step in enumerate(steps)
    )
    return subscription.id


def add_job(
    session: Session,
    *,
    job_type: str,
    created_by: str,
    from_system: str,
    bk_biz_scope: Sequence[int],
    subscription_id: int,
    error_hosts: Sequence[dict[str, Any]] = (),
    rollout: Rollout | None = None,
) -> int:
    """Insert the job a subscription runs for (PENDING, no statistics yet); returns its id."""
    job = Job(
        job_type=job_type,
        created_by=created_by,
        from_system=from_system,
        bk_biz_scope=sorted(set(bk_biz_scope)),
        error_hosts=list(error_hosts),
        subscription_id=subscription_id,
        statistics={},
    )
    if rollout is not None:  # else left out of the insert: SQL NULL, not JSON null
        job.rollout = rollout.as_dict()
    session.add(job)
    session.flush()
    return job.id


def add_records(
    session: Session,
    *,
    job_id: int,
    subscription_id: int,
    task_id: int,
    instances: Sequence[NewInstance],
    steps: Sequence[PlannedStep],
    attempt: int,
    batches: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Insert a PENDING record per instance, each with every planned step PENDING and its rolling batch in
    ``batches`` (by instance_id; none: no batches); returns their ids."""
    if not instances:
        return {}
    now = utcnow()
    rows = [
        {
            "task_id": task_id,
            "subscription_id": subscription_id,
            "job_id": job_id,
            "instance_id": i.instance_id,
            "bk_host_id": i.bk_host_id,
            "host_key": i.host_key,
            "attempt": attempt,
            "instance_info": i.instance_info,
            "status": Status.PENDING.value,
            "is_latest": True,
            "created_at": now,
            "updated_at": now,
            "batch": None if batches is None else batches.get(i.instance_id),
        }
        for i in instances
    ]
    ids = list(session.scalars(insert(InstanceRecord).returning(InstanceRecord.id, sort_by_parameter_order=True), rows))
    session.execute(
        insert(RecordStep),
        [
            {
                "record_id": rid,
                "step_index": s.index,
                "code": s.code.value,
                "name": s.name,
                "status": Status.PENDING.value,
            }
            for rid in ids
            for s in steps
        ],
    )
    return {i.instance_id: rid for i, rid in zip(instances, ids, strict=True)}


@dataclass(frozen=True, slots=True)
class StepProgress:
    """A step's new status, with whichever of its times changed (None: unchanged)."""

    record_id: int
    step_index: int
    status: Status
    start_at: datetime | None
    finish_at: datetime | None


@dataclass(frozen=True, slots=True)
class RecordProgress:
    """A record's new status and times, when they changed (None: unchanged)."""

    record_id: int
    status: Status | None
    start_at: datetime | None
    finish_at: datetime | None


def write_progress(
    db: Database,
    session: Session,
    *,
    chunks: Sequence[tuple[int, int, str]] = (),
    steps: Sequence[StepProgress] = (),
    records: Sequence[RecordProgress] = (),
) -> None:
    """Write progress, in the session's transaction: log chunks ``(record_id, step_index, text)`` (whole lines)
    appended, step and record changes applied, and the revision of every record concerned (in ``records``, or
    whose steps or logs changed) bumped once. The one way step and record statuses, their times and log text
    change once a record exists: the engine's ``LogWriter``, revoke, a retry's kept steps and test data alike.

    The engine writes this for every host several times a second, so it is three raw ``executemany`` on the
    session's own connection, whatever the number of hosts, rather than a few ORM statements per change; each
    in (record_id, step_index) order, so concurrent writers take their row locks in one order.
    Raises ValueError for a naive datetime.
    """
    given = {r.record_id for r in records}
    changed = dict.fromkeys([record_id for record_id, _, _ in chunks] + [s.record_id for s in steps])
    records = [*records, *(RecordProgress(rid, None, None, None) for rid in changed if rid not in given)]
    # Rows are written in one order, by (record_id, step_index), whoever writes: two processes writing
    # progress of the same records then lock them in the same order and never deadlock on each other. The sorts
    # are stable, so chunks of one step keep their order.
    chunks = sorted(chunks, key=lambda chunk: (chunk[0], chunk[1]))
    steps = sorted(steps, key=lambda step: (step.record_id, step.step_index))
    records = sorted(records, key=lambda record: record.record_id)
    p = db.paramstyle
    now = db.bind_time(utcnow())
    session.flush()  # the raw statements below may refer to rows the ORM still holds
    cursor = session.connection().connection.cursor()
    try:
        if chunks:
            cursor.executemany(
                f"INSERT INTO step_logs (record_id, step_index, text, created_at) VALUES ({p}, {p}, {p}, {p})",
                [(record_id, index, text, now) for record_id, index, text in chunks],
            )
        if steps:
            cursor.executemany(
                f"UPDATE record_steps SET status = {p}, start_at = COALESCE({p}, start_at), "
                f"finish_at = COALESCE({p}, finish_at) WHERE record_id = {p} AND step_index = {p}",
                [
                    (s.status.value, db.bind_time(s.start_at), db.bind_time(s.finish_at), s.record_id, s.step_index)
                    for s in steps
                ],
            )
        if records:
            cursor.executemany(
                f"UPDATE instance_records SET status = COALESCE({p}, status), start_at = COALESCE({p}, start_at), "
                f"finish_at = COALESCE({p}, finish_at), revision = revision + 1, updated_at = {p} WHERE id = {p}",
                [
                    (
                        None if r.status is None else r.status.value,
                        db.bind_time(r.start_at),
                        db.bind_time(r.finish_at),
                        now,
                        r.record_id,
                    )
                    for r in records
                ],
            )
    finally:
        cursor.close()


def set_job_status(session: Session, *, job_id: int, status: Status, end_at: datetime | None = None) -> None:
    """Set only the job's status (and end time); statistics are recomputed by ``pipelines.refresh_job``."""
    values: dict[str, Any] = {"status": status.value}
    if end_at is not None:
        values["end_at"] = end_at
    session.execute(update(Job).where(Job.id == job_id).values(**values))


def job_status(session: Session, job_id: int) -> str:
    """The job's stored status ("" for an unknown job)."""
    return session.scalar(select(Job.status).where(Job.id == job_id)) or ""


def _node_of(instance: NewInstance) -> dict[str, Any]:
    if instance.bk_host_id is not None:
        return {"bk_host_id": instance.bk_host_id}
    if instance.host_key is not None:
        ip, cloud, _supplier = instance.host_key.rsplit("-", 2)
        return {"ip": ip, "bk_cloud_id": int(cloud)}
    return {"instance_id": instance.instance_id}
