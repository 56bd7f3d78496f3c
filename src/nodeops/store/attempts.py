"""A job's attempts: retry adds the next attempt of instances as a new task, revoke fails what no pipeline runs.

An instance's first attempt is created with its job (``jobs.create_job``); each retry adds one record per
instance (attempt + 1) and marks the previous one not latest, so earlier attempts stay readable. Reads of
instances and steps are in ``job_reads``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import insert, literal, select, update
from sqlalchemy.orm import Session

from nodeops.domain.plans import PlannedStep, StepCode
from nodeops.domain.status import ACTIVE, Status
from nodeops.store import jobs
from nodeops.store.db import Database, lock_for_update
from nodeops.store.job_reads import Instance, JobInfo, StepState
from nodeops.store.models import InstanceRecord, Job, RecordStep, StepLog, SubscriptionTask, utcnow


def add_attempts(
    db: Database,
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
            new_id = created[instance.instance_id]
            _copy_steps(db, session, instance.record_id, new_id, steps[instance.record_id], until)
    session.execute(
        update(InstanceRecord)
        .where(InstanceRecord.id.in_([instance.record_id for instance in instances]))
        .values(is_latest=False)
    )
    session.execute(update(Job).where(Job.id == job.job_id).values(status=Status.RUNNING.value, end_at=None))
    return task.id, created


def _copy_steps(
    db: Database, session: Session, old_id: int, new_id: int, steps: Sequence[StepState], until: int
) -> None:
    kept = [step for step in steps if step.index < until]
    if kept:
        jobs.write_progress(
            db,
            session,
            steps=[jobs.StepProgress(new_id, s.index, Status.SUCCESS, s.start_at, s.finish_at) for s in kept],
        )
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


def fail_unfinished(db: Database, session: Session, record_ids: Sequence[int], *, line: str) -> int:
    """End the records among ``record_ids`` still PENDING or RUNNING as FAILED, a running step with them
    (with ``line``, whole lines, appended to its log), through ``jobs.write_progress``. For records no pipeline
    of this process runs; returns how many."""
    active = [status.value for status in ACTIVE]
    lock_for_update(session)  # a second revoke at once waits, then finds them ended: one 已终止 line each
    left = list(
        session.scalars(
            select(InstanceRecord.id)
            .where(InstanceRecord.id.in_(list(record_ids)), InstanceRecord.status.in_(active))
            .order_by(InstanceRecord.id)  # locked in the order every progress writer locks them
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
    jobs.write_progress(
        db,
        session,
        chunks=[(record_id, index, line) for record_id, index in running],
        steps=[jobs.StepProgress(record_id, index, Status.FAILED, None, now) for record_id, index in running],
        records=[jobs.RecordProgress(record_id, Status.FAILED, None, now) for record_id in left],
    )
    return len(left)


def _node_of(instance: Instance) -> dict[str, Any]:
    if instance.bk_host_id is not None:
        return {"bk_host_id": instance.bk_host_id}
    return {"instance_id": instance.instance_id}
