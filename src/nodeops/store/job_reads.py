"""What the job APIs (details, retry, revoke, retry_node) read, and the few writes retry and revoke make.

A job's instances are its records grouped by ``instance_id``; an instance's *latest* record is its highest
``attempt`` (the first run is 1, each retry adds one). These are ORM reads on a session: the job APIs are not
the hot path (the log API has its own raw reads in ``log_reads``). Imports only ``domain``, the models and the
store's own modules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.orm import Session

from nodeops.domain.plans import PlannedStep, StepCode
from nodeops.domain.status import ACTIVE, Status
from nodeops.store import jobs
from nodeops.store.db import lock_for_update
from nodeops.store.models import (
    Host,
    InstanceRecord,
    Job,
    RecordStep,
    StepLog,
    SubscriptionStep,
    SubscriptionTask,
    utcnow,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobInfo:
    """A job as the job APIs show it, with its task ids and the params of its subscription step."""

    job_id: int
    job_type: str
    status: str
    statistics: dict[str, Any]
    created_by: str
    from_system: str
    bk_biz_scope: frozenset[int]
    error_hosts: list[dict[str, Any]]
    subscription_id: int
    start_at: datetime
    end_at: datetime | None
    task_ids: list[int]
    step_params: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    """The latest record of one instance of a job."""

    record_id: int
    first_record_id: int  # the instance's first record: a stable order across retries
    task_id: int
    instance_id: str
    bk_host_id: int | None
    host_key: str | None
    attempt: int
    status: str
    instance_info: dict[str, Any]
    start_at: datetime | None
    finish_at: datetime | None

    @property
    def host(self) -> dict[str, Any]:
        host = self.instance_info.get("host")
        return host if isinstance(host, dict) else {}


@dataclass(frozen=True, slots=True, kw_only=True)
class StepState:
    """One step of a record: its place in the plan, what it does, how it went."""

    index: int
    code: str
    name: str
    status: str
    start_at: datetime | None
    finish_at: datetime | None


def find_job(session: Session, job_id: int, *, for_update: bool = False) -> JobInfo | None:
    """The job, or None. ``for_update`` locks its row until the session ends (SQLite: the database's write
    lock), so two retries of one job cannot both add an attempt."""
    query = select(Job).where(Job.id == job_id)
    if for_update:
        lock_for_update(session)
        query = query.with_for_update()
    job = session.scalar(query)
    if job is None:
        return None
    task_ids = list(
        session.scalars(
            select(SubscriptionTask.id).where(SubscriptionTask.job_id == job_id).order_by(SubscriptionTask.id)
        )
    )
    params = session.scalar(
        select(SubscriptionStep.params)
        .where(SubscriptionStep.subscription_id == job.subscription_id)
        .order_by(SubscriptionStep.index)
        .limit(1)
    )
    return JobInfo(
        job_id=job.id,
        job_type=job.job_type,
        status=job.status,
        statistics=dict(job.statistics or {}),
        created_by=job.created_by,
        from_system=job.from_system,
        bk_biz_scope=frozenset(int(b) for b in job.bk_biz_scope or ()),
        error_hosts=[h for h in job.error_hosts or () if isinstance(h, dict)],
        subscription_id=job.subscription_id,
        start_at=job.start_at,
        end_at=job.end_at,
        task_ids=task_ids,
        step_params=dict(params or {}),
    )


def latest_instances(session: Session, job_id: int) -> list[Instance]:
    """The latest record of every instance of the job, in the order the instances were first created."""
    latest = (
        select(
            InstanceRecord.instance_id,
            func.max(InstanceRecord.attempt).label("attempt"),
            func.min(InstanceRecord.id).label("first_id"),
        )
        .where(InstanceRecord.job_id == job_id)
        .group_by(InstanceRecord.instance_id)
        .subquery()
    )
    rows = session.execute(
        select(InstanceRecord, latest.c.first_id)
        .join(
            latest,
            (latest.c.instance_id == InstanceRecord.instance_id) & (latest.c.attempt == InstanceRecord.attempt),
        )
        .where(InstanceRecord.job_id == job_id)
        .order_by(latest.c.first_id)
    ).all()
    return [
        Instance(
            record_id=record.id,
            first_record_id=int(first_id),
            task_id=record.task_id,
            instance_id=record.instance_id,
            bk_host_id=record.bk_host_id,
            host_key=record.host_key,
            attempt=record.attempt,
            status=record.status,
            instance_info=dict(record.instance_info or {}),
            start_at=record.start_at,
            finish_at=record.finish_at,
        )
        for record, first_id in rows
    ]


def steps_of(session: Session, record_ids: Sequence[int]) -> dict[int, list[StepState]]:
    """The steps of each record, in plan order."""
    steps: dict[int, list[StepState]] = {record_id: [] for record_id in record_ids}
    if not record_ids:
        return steps
    for step in session.scalars(
        select(RecordStep)
        .where(RecordStep.record_id.in_(list(record_ids)))
        .order_by(RecordStep.record_id, RecordStep.step_index)
    ):
        steps[step.record_id].append(
            StepState(
                index=step.step_index,
                code=step.code,
                name=step.name,
                status=step.status,
                start_at=step.start_at,
                finish_at=step.finish_at,
            )
        )
    return steps


def host_biz_ids(session: Session, host_ids: Sequence[int]) -> dict[int, int]:
    """``bk_host_id -> bk_biz_id`` of the known hosts among ``host_ids``."""
    if not host_ids:
        return {}
    rows = session.execute(select(Host.bk_host_id, Host.bk_biz_id).where(Host.bk_host_id.in_(list(host_ids))))
    return {int(host_id): int(biz) for host_id, biz in rows}


def registered_biz_ids(
    session: Session, *, host_ids: Sequence[int], addresses: Sequence[tuple[int, str | None, str | None]]
) -> set[int]:
    """The businesses hosts are in now: those with these ids, or at these ``(bk_cloud_id, ipv4, ipv6)``."""
    found: set[int] = set()
    if host_ids:
        found.update(session.scalars(select(Host.bk_biz_id).where(Host.bk_host_id.in_(list(host_ids)))))
    for cloud, ipv4, ipv6 in addresses:  # one indexed lookup each, as install registers them
        query = select(Host.bk_biz_id).where(Host.bk_cloud_id == cloud)
        query = query.where(Host.inner_ip == ipv4) if ipv4 else query.where(Host.inner_ipv6 == ipv6)
        found.update(session.scalars(query))
    return {int(biz) for biz in found}


def host_ap_ids(session: Session, host_ids: Sequence[int]) -> dict[int, int]:
    """``bk_host_id -> ap_id`` of the known hosts among ``host_ids``."""
    if not host_ids:
        return {}
    rows = session.execute(select(Host.bk_host_id, Host.ap_id).where(Host.bk_host_id.in_(list(host_ids))))
    return {int(host_id): int(ap_id) for host_id, ap_id in rows}


def add_attempts(
    session: Session,
    *,
    job: JobInfo,
    instances: Sequence[Instance],
    steps: Mapping[int, Sequence[StepState]],
    keep_before: Mapping[int, int] | None = None,
) -> tuple[int, dict[str, int]]:
    """Run ``instances`` again: a new task, and for each a new PENDING record (attempt + 1) with the steps of
    its latest record; the job becomes RUNNING again. Returns the task id and ``instance_id -> record id``.

    ``keep_before`` (``record_id -> step index``, retry_node) copies the steps before that index from the
    latest record as they ran (status, times, log), so the engine, which skips SUCCESS steps, resumes there.
    """
    keep_before = keep_before or {}
    task = SubscriptionTask(
        subscription_id=job.subscription_id,
        job_id=job.job_id,
        scope={
            "object_type": "HOST",
            "node_type": "INSTANCE",
            "nodes": [_node_of(instance) for instance in instances],
        },
        actions={instance.instance_id: {"agent": job.job_type} for instance in instances},
    )
    session.add(task)
    session.flush()
    created: dict[str, int] = {}
    for instance in instances:  # one insert each: instances of a job may be at different attempts
        plan = [
            PlannedStep(index=step.index, code=StepCode(step.code), name=step.name)
            for step in steps[instance.record_id]
        ]
        created.update(
            jobs.add_records(
                session,
                job_id=job.job_id,
                subscription_id=job.subscription_id,
                task_id=task.id,
                instances=[
                    jobs.NewInstance(
                        instance_id=instance.instance_id,
                        bk_host_id=instance.bk_host_id,
                        host_key=instance.host_key,
                        instance_info=instance.instance_info,
                    )
                ],
                steps=plan,
                attempt=instance.attempt + 1,
            )
        )
        if (until := keep_before.get(instance.record_id)) is not None:
            _copy_steps(session, instance.record_id, created[instance.instance_id], steps[instance.record_id], until)
    session.execute(
        update(InstanceRecord)
        .where(InstanceRecord.id.in_([instance.record_id for instance in instances]))
        .values(is_latest=False)
    )
    session.execute(update(Job).where(Job.id == job.job_id).values(status=Status.RUNNING.value, end_at=None))
    return task.id, created


def _copy_steps(session: Session, old_id: int, new_id: int, steps: Sequence[StepState], until: int) -> None:
    kept = [step for step in steps if step.index < until]
    for step in kept:
        jobs.set_step(
            session,
            record_id=new_id,
            step_index=step.index,
            status=Status.SUCCESS,
            start_at=step.start_at,
            finish_at=step.finish_at,
        )
    if kept:
        session.execute(
            insert(StepLog).from_select(
                ["record_id", "step_index", "text", "created_at"],
                select(
                    literal(new_id),
                    StepLog.step_index,
                    StepLog.text,
                    StepLog.created_at,
                )
                .where(StepLog.record_id == old_id, StepLog.step_index < until)
                .order_by(StepLog.id),
            )
        )


def fail_unfinished(session: Session, record_ids: Sequence[int], *, line: str) -> int:
    """End the records among ``record_ids`` still PENDING or RUNNING as FAILED, a running step with them
    (with ``line`` appended to its log). For records no pipeline of this process runs; returns how many."""
    active = [status.value for status in ACTIVE]
    lock_for_update(session)  # a second revoke at once waits, then finds them ended: one 已终止 line each
    left = list(
        session.scalars(
            select(InstanceRecord.id)
            .where(InstanceRecord.id.in_(list(record_ids)), InstanceRecord.status.in_(active))
            .with_for_update()
        )
    )
    if not left:
        return 0
    now = utcnow()
    running = session.execute(
        select(RecordStep.record_id, RecordStep.step_index).where(
            RecordStep.record_id.in_(left), RecordStep.status == Status.RUNNING.value
        )
    ).all()
    jobs.append_logs(session, [(record_id, index, line) for record_id, index in running])
    for record_id, index in running:
        jobs.set_step(session, record_id=record_id, step_index=index, status=Status.FAILED, finish_at=now)
    for record_id in left:
        jobs.set_record(session, record_id=record_id, status=Status.FAILED, finish_at=now)
    return len(left)


def _node_of(instance: Instance) -> dict[str, Any]:
    if instance.bk_host_id is not None:
        return {"bk_host_id": instance.bk_host_id}
    return {"instance_id": instance.instance_id}
