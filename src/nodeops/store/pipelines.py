"""What the engine reads and writes around a run: the work of a task, job aggregation, recovery.

A host's agent state (heartbeats, status, version, token) is written in ``store.agents``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from nodeops.domain.status import ACTIVE, JobStatistics, Status, aggregate_job_status
from nodeops.store.models import AccessPoint, Host, InstanceRecord, Job, RecordStep, SubscriptionTask, utcnow


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedRun:
    """One step of a record as the engine will run it."""

    index: int
    code: str
    name: str
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HostWork:
    """Everything one host pipeline needs: its record, its host (credentials still sealed), its steps."""

    record_id: int
    job_id: int
    instance_id: str
    bk_host_id: int
    ip: str
    bk_cloud_id: int
    os_type: str
    transport: str
    ssh_port: int
    account: str | None
    auth_type: str
    password_enc: bytes | None
    key_enc: bytes | None
    credentials_expire_at: datetime | None
    setup_path: str
    server_url: str
    agent_version: str | None
    steps: tuple[PlannedRun, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockedWork:
    """A PENDING record of a task that cannot run: its host, or the host's access point, no longer exists."""

    record_id: int
    job_id: int
    instance_id: str
    bk_host_id: int | None
    ap_id: int | None  # the access point that does not exist; None when the host itself is gone
    step_index: int  # the first step not yet SUCCESS: where the engine says why the record did not run


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskWork:
    """Every PENDING record of a task, in record order: the ones to run, and the ones that cannot run."""

    runnable: list[HostWork]
    blocked: list[BlockedWork]


def pending_work(session: Session, *, task_id: int) -> TaskWork:
    """The PENDING records of a task with their hosts and steps. A record whose host or access point is
    missing is in ``blocked``, never left out: it must still be ended, or its job would never finish."""
    return _work(session, (InstanceRecord.task_id == task_id, InstanceRecord.status == Status.PENDING.value))


def record_work(session: Session, *, record_id: int) -> HostWork | BlockedWork | None:
    """One record's work, whatever its status (a cluster worker reads it once it has claimed it)."""
    work = _work(session, (InstanceRecord.id == record_id,))
    return (work.runnable or work.blocked or [None])[0]


def _work(session: Session, where: tuple[ColumnElement[bool], ...]) -> TaskWork:
    rows = session.execute(
        select(InstanceRecord, Host, AccessPoint)
        .outerjoin(Host, Host.bk_host_id == InstanceRecord.bk_host_id)
        .outerjoin(AccessPoint, AccessPoint.id == Host.ap_id)
        .where(*where)
        .order_by(InstanceRecord.id)
    ).all()
    record_ids = [record.id for record, _host, _ap in rows]
    steps: dict[int, list[PlannedRun]] = {}
    for step in session.scalars(
        select(RecordStep)
        .where(RecordStep.record_id.in_(record_ids))
        .order_by(RecordStep.record_id, RecordStep.step_index)
    ):
        steps.setdefault(step.record_id, []).append(
            PlannedRun(index=step.step_index, code=step.code, name=step.name, status=step.status)
        )
    runnable: list[HostWork] = []
    blocked: list[BlockedWork] = []
    for record, host, ap in rows:
        planned = tuple(steps.get(record.id, ()))
        if host is None or ap is None:
            first = next((step for step in planned if step.status != Status.SUCCESS.value), None)
            blocked.append(
                BlockedWork(
                    record_id=record.id,
                    job_id=record.job_id or 0,
                    instance_id=record.instance_id,
                    bk_host_id=record.bk_host_id,
                    ap_id=None if host is None else host.ap_id,
                    step_index=first.index if first else (planned[0].index if planned else 0),
                )
            )
            continue
        runnable.append(
            HostWork(
                record_id=record.id,
                job_id=record.job_id or 0,
                instance_id=record.instance_id,
                bk_host_id=host.bk_host_id,
                ip=host.inner_ip or host.inner_ipv6 or "",
                bk_cloud_id=host.bk_cloud_id,
                os_type=host.os_type,
                transport=host.transport,
                ssh_port=host.ssh_port,
                account=host.account,
                auth_type=host.auth_type,
                password_enc=host.password_enc,
                key_enc=host.key_enc,
                credentials_expire_at=host.credentials_expire_at,
                setup_path=host.setup_path or ap.linux_setup_path,
                server_url=ap.server_url,
                agent_version=host.agent_version,
                steps=planned,
            )
        )
    return TaskWork(runnable=runnable, blocked=blocked)


def refresh_job(session: Session, *, job_id: int) -> Status:
    """Recount the job's latest record per instance (plus hosts refused up front) and store its status.

    On PostgreSQL the job's row is locked first (``FOR UPDATE``), so two processes ending a job's last hosts at
    once recount one after the other: the second reads the records after the first has committed, and the job
    cannot be left RUNNING by a recount that read before the other host ended. Call it in its own short
    transaction, after the records' changes are committed.
    """
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None:
        return Status.PENDING
    latest = (
        select(InstanceRecord.instance_id, func.max(InstanceRecord.attempt).label("attempt"))
        .where(InstanceRecord.job_id == job_id)
        .group_by(InstanceRecord.instance_id)
        .subquery()
    )
    statuses = [
        Status(s)
        for s in session.scalars(
            select(InstanceRecord.status)
            .join(
                latest,
                (latest.c.instance_id == InstanceRecord.instance_id) & (latest.c.attempt == InstanceRecord.attempt),
            )
            .where(InstanceRecord.job_id == job_id)
        )
    ]
    statuses += [Status(h.get("status") or Status.IGNORED) for h in job.error_hosts]
    stats = JobStatistics.count(statuses)
    status = aggregate_job_status(stats, Status(job.status))
    job.status = status.value
    job.statistics = stats.as_dict()
    if status not in ACTIVE and job.end_at is None:
        job.end_at = utcnow()
    return status


def refresh_job_if_settled(session: Session, *, job_id: int) -> bool:
    """Recount the job (``refresh_job``) only if none of its records is PENDING or RUNNING any more; returns
    whether it did. What a cluster worker calls after each host: a recount reads every record of the job, and
    while some still run its status stays RUNNING anyway. Of two workers ending a job's last records at once,
    each checks after its own commit, so at least one finds nothing active and recounts."""
    active = session.scalar(
        select(InstanceRecord.id)
        .join(SubscriptionTask, SubscriptionTask.id == InstanceRecord.task_id)
        .where(SubscriptionTask.job_id == job_id, InstanceRecord.status.in_([s.value for s in ACTIVE]))
        .limit(1)
    )
    if active is not None:
        return False
    refresh_job(session, job_id=job_id)
    return True


def interrupted_records(session: Session) -> list[tuple[int, int, int]]:
    """``(record_id, job_id, running step index or -1)`` of every record left PENDING or RUNNING: at start-up
    no pipeline runs yet, so these were interrupted by the end of a previous process (crash recovery)."""
    rows = session.execute(
        select(InstanceRecord.id, InstanceRecord.job_id).where(
            InstanceRecord.status.in_([Status.PENDING.value, Status.RUNNING.value])
        )
    ).all()
    result: list[tuple[int, int, int]] = []
    for record_id, job_id in rows:
        step = session.scalar(
            select(RecordStep.step_index).where(
                RecordStep.record_id == record_id, RecordStep.status == Status.RUNNING.value
            )
        )
        result.append((record_id, job_id or 0, -1 if step is None else step))
    return result
