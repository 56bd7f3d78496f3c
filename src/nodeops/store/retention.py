"""Deleting old jobs (retention): finished jobs that ended before a cutoff, with everything they own.

Deletes run in short transactions of at most ``batch`` records each (their log chunks, steps, sealed answers,
then the records), then the job's tasks, the job and its subscription, so a writer of a running job waits at
most one short transaction. Rows are deleted explicitly, child tables first: the result does not depend on
foreign-key enforcement (SQLite enforces it only when asked; nodeops asks, see ``store.db``). Jobs still
PENDING or RUNNING are never chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from nodeops.domain.status import ACTIVE
from nodeops.store.db import Database
from nodeops.store.models import (
    InstanceRecord,
    Job,
    RecordAnswer,
    RecordStep,
    StepLog,
    Subscription,
    SubscriptionStep,
    SubscriptionTask,
    WebhookDelivery,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Cleaned:
    jobs: int
    records: int
    log_chunks: int


def _expired(before: datetime) -> object:
    active = [status.value for status in ACTIVE]
    return (Job.status.not_in(active)) & (func.coalesce(Job.end_at, Job.start_at) < before)


def count_expired(db: Database, before: datetime) -> Cleaned:
    """What ``delete_expired`` would delete now."""
    with db.session() as session:
        job_ids = select(Job.id).where(_expired(before))  # type: ignore[arg-type]
        record_ids = select(InstanceRecord.id).where(InstanceRecord.job_id.in_(job_ids))
        return Cleaned(
            jobs=int(session.scalar(select(func.count()).select_from(Job).where(Job.id.in_(job_ids))) or 0),
            records=int(
                session.scalar(
                    select(func.count()).select_from(InstanceRecord).where(InstanceRecord.id.in_(record_ids))
                )
                or 0
            ),
            log_chunks=int(
                session.scalar(select(func.count()).select_from(StepLog).where(StepLog.record_id.in_(record_ids))) or 0
            ),
        )


def delete_expired(db: Database, before: datetime, *, batch: int) -> Cleaned:
    """Delete every job that ended before ``before``, ``batch`` records per transaction; returns the counts."""
    jobs = records = chunks = 0
    while True:
        with db.session() as session:
            job = session.execute(
                select(Job.id, Job.subscription_id).where(_expired(before)).order_by(Job.id).limit(1)  # type: ignore[arg-type]
            ).first()
        if job is None:
            return Cleaned(jobs=jobs, records=records, log_chunks=chunks)
        job_id, subscription_id = int(job[0]), int(job[1])
        while True:
            with db.session() as session:
                ids = list(
                    session.scalars(select(InstanceRecord.id).where(InstanceRecord.job_id == job_id).limit(batch))
                )
                if not ids:
                    break
                chunks += _delete_records(session, ids)
                records += len(ids)
        with db.session() as session:
            if session.scalar(select(Job.status).where(Job.id == job_id)) in {s.value for s in ACTIVE}:
                continue  # retried meanwhile: its new attempts run; leave the job (its old records are gone)
            session.execute(delete(SubscriptionTask).where(SubscriptionTask.job_id == job_id))
            session.execute(delete(WebhookDelivery).where(WebhookDelivery.job_id == job_id))
            session.execute(delete(Job).where(Job.id == job_id))
            if not session.scalar(select(func.count()).select_from(Job).where(Job.subscription_id == subscription_id)):
                session.execute(delete(SubscriptionTask).where(SubscriptionTask.subscription_id == subscription_id))
                session.execute(delete(SubscriptionStep).where(SubscriptionStep.subscription_id == subscription_id))
                session.execute(delete(Subscription).where(Subscription.id == subscription_id))
            jobs += 1


def _delete_records(session: Session, ids: list[int]) -> int:
    deleted = session.execute(delete(StepLog).where(StepLog.record_id.in_(ids))).rowcount  # type: ignore[attr-defined]
    session.execute(delete(RecordAnswer).where(RecordAnswer.record_id.in_(ids)))
    session.execute(delete(RecordStep).where(RecordStep.record_id.in_(ids)))
    session.execute(delete(InstanceRecord).where(InstanceRecord.id.in_(ids)))
    return int(deleted or 0)
