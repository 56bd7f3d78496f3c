"""What the job APIs (details, retry, revoke, retry_node) read; retry's and revoke's writes are in ``attempts``.

A job's instances are its records grouped by ``instance_id``; an instance's *latest* record is its highest
``attempt`` (the first run is 1, each retry adds one). These are ORM reads on a session: the job APIs are not
the hot path (the log API has its own raw reads in ``log_reads``). Imports only ``domain``, the models and the
store's own modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nodeops.domain.status import Status
from nodeops.store.db import lock_for_update
from nodeops.store.models import (
    Host,
    InstanceRecord,
    Job,
    RecordStep,
    StepLog,
    SubscriptionStep,
    SubscriptionTask,
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
    batch: int | None = None  # its rolling batch (None: no batches, or a retry's record)

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
            batch=record.batch,
        )
        for record, first_id in rows
    ]


def ignored_reasons(session: Session, record_ids: Sequence[int]) -> dict[int, str]:
    """The last log line of the IGNORED step of each record that has one (why it did not start), as written."""
    if not record_ids:
        return {}
    reasons: dict[int, str] = {}
    for record_id, text in session.execute(
        select(StepLog.record_id, StepLog.text)
        .join(
            RecordStep,
            (RecordStep.record_id == StepLog.record_id) & (RecordStep.step_index == StepLog.step_index),
        )
        .where(StepLog.record_id.in_(list(record_ids)), RecordStep.status == Status.IGNORED.value)
        .order_by(StepLog.record_id, StepLog.id)
    ):
        reasons[record_id] = text.rsplit("\n", 1)[-1]
    return reasons


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
