"""Subscriptions as Node Manager's backend keeps them: the subscription, its steps, the job it runs for, its
runs (tasks) and the task results (the latest record of each instance over some tasks).

Every subscription has exactly one job (``jobs.subscription_id``): install_job and operate_job create both, a
subscription created through the API gets a job of its own. A run is a task of that job; its records continue
each instance's ``attempt`` count, so the log API reads an instance of any run by the job and either host form.

Task results are the hot read of this module: a page is a count, a status counter and one page of rows, each
an indexed query whatever the task's size; ``iter_records`` walks a whole result by id in batches, so no caller
needs every row in memory. Imports only ``domain`` and the models.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, insert, not_, null, select, update
from sqlalchemy.orm import Session

from nodeops.domain.answer import DEFAULT_STEP_MAX_BYTES
from nodeops.domain.instance_id import InstanceId
from nodeops.domain.plans import PlannedStep
from nodeops.domain.rollout import Rollout
from nodeops.domain.status import ACTIVE, Status
from nodeops.store import instances, jobs
from nodeops.store.db import lock_for_update, session_cursor, stored_utc
from nodeops.store.inventory import ScopeTarget
from nodeops.store.job_reads import StepState
from nodeops.store.log_reads import capped_chunk_columns
from nodeops.store.models import (
    InstanceRecord,
    Job,
    Subscription,
    SubscriptionStep,
    SubscriptionTask,
    utcnow,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepInfo:
    step_id: str
    type: str
    config: dict[str, Any]
    params: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionInfo:
    """A subscription with its steps, its job and the job's businesses."""

    id: int
    name: str | None
    object_type: str
    node_type: str
    nodes: list[Any] | None  # None: not read (``find_subscriptions(..., with_nodes=False)``)
    bk_biz_id: int | None
    category: str
    creator: str
    from_system: str
    enable: bool
    is_deleted: bool
    created_at: datetime
    steps: list[StepInfo]
    job_id: int
    job_type: str
    bk_biz_scope: frozenset[int]
    rollout: dict[str, Any] | None = None  # its runs' batches and threshold (the job's copy, which the engines read)

    @property
    def scope(self) -> dict[str, Any]:
        if self.nodes is None:
            raise ValueError(f"subscription {self.id} was read without its nodes")
        return {
            "bk_biz_id": self.bk_biz_id,
            "object_type": self.object_type,
            "node_type": self.node_type,
            "nodes": self.nodes,
        }


def find_subscriptions(session: Session, ids: Sequence[int], *, with_nodes: bool = True) -> dict[int, SubscriptionInfo]:
    """The subscriptions among ``ids`` (deleted ones too), each with its steps and job (column reads: every
    subscription API starts here). ``with_nodes=False`` leaves the scope's nodes unread (``nodes`` is None): a
    subscription of many hosts holds them all there, and the result APIs need none of them."""
    if not ids:
        return {}
    sub = Subscription
    rows = session.execute(
        select(
            sub.id,
            sub.name,
            sub.object_type,
            sub.node_type,
            sub.nodes if with_nodes else null(),
            sub.bk_biz_id,
            sub.category,
            sub.creator,
            sub.from_system,
            sub.enable,
            sub.is_deleted,
            sub.created_at,
            Job.id,
            Job.job_type,
            Job.bk_biz_scope,
            Job.rollout,
        )
        .join(Job, Job.subscription_id == sub.id)
        .where(sub.id.in_(list(ids)))
    ).all()
    steps: dict[int, list[StepInfo]] = {}
    for subscription_id, step_id, type_, config, params in session.execute(
        select(
            SubscriptionStep.subscription_id,
            SubscriptionStep.step_id,
            SubscriptionStep.type,
            SubscriptionStep.config,
            SubscriptionStep.params,
        )
        .where(SubscriptionStep.subscription_id.in_(list(ids)))
        .order_by(SubscriptionStep.subscription_id, SubscriptionStep.index)
    ):
        steps.setdefault(subscription_id, []).append(
            StepInfo(step_id=step_id, type=type_, config=dict(config or {}), params=dict(params or {}))
        )
    return {
        row[0]: SubscriptionInfo(
            id=row[0],
            name=row[1],
            object_type=row[2],
            node_type=row[3],
            nodes=list(row[4] or []) if with_nodes else None,
            bk_biz_id=row[5],
            category=row[6],
            creator=row[7],
            from_system=row[8],
            enable=row[9],
            is_deleted=row[10],
            created_at=row[11],
            steps=steps.get(row[0], []),
            job_id=int(row[12]),
            job_type=row[13],
            bk_biz_scope=frozenset(int(b) for b in row[14] or ()),
            rollout=row[15],
        )
        for row in rows
    }


def lock_subscription(session: Session, subscription_id: int) -> None:
    """Hold the subscription's row until the session ends (SQLite: the database's write lock), so two runs
    cannot interleave."""
    lock_for_update(session)
    session.execute(select(Subscription.id).where(Subscription.id == subscription_id).with_for_update())


def update_subscription(
    session: Session,
    subscription_id: int,
    *,
    scope: dict[str, Any] | None = None,
    steps: Sequence[dict[str, Any]] = (),
    name: str | None = None,
) -> None:
    """Replace the scope's node type, nodes and business, and the ``params`` (and ``config``) of the steps given."""
    values: dict[str, Any] = {}
    if scope is not None:
        values.update(node_type=scope["node_type"], nodes=scope["nodes"], bk_biz_id=scope["bk_biz_id"])
    if name is not None:
        values["name"] = name
    if values:
        session.execute(update(Subscription).where(Subscription.id == subscription_id).values(**values))
    for step in steps:
        changes: dict[str, Any] = {"params": dict(step.get("params") or {})}
        if step.get("config"):
            changes["config"] = dict(step["config"])
        session.execute(
            update(SubscriptionStep)
            .where(SubscriptionStep.subscription_id == subscription_id, SubscriptionStep.step_id == step["id"])
            .values(**changes)
        )


def set_rollout(session: Session, subscription_id: int, rollout: Rollout) -> None:
    """Give the subscription's runs batches and a threshold: kept on the subscription and on its job (which the
    engines read, as for a job's)."""
    value = rollout.as_dict()
    session.execute(update(Subscription).where(Subscription.id == subscription_id).values(rollout=value))
    session.execute(update(Job).where(Job.subscription_id == subscription_id).values(rollout=value))


def set_subscription(
    session: Session, subscription_id: int, *, enable: bool | None = None, is_deleted: bool | None = None
) -> None:
    values: dict[str, Any] = {}
    if enable is not None:
        values["enable"] = enable
    if is_deleted is not None:
        values["is_deleted"] = is_deleted
    session.execute(update(Subscription).where(Subscription.id == subscription_id).values(**values))


def widen_job_scope(session: Session, job_id: int, bk_biz_ids: set[int]) -> None:
    """Add businesses to the job's ``bk_biz_scope`` (the right to read it needs all of them, spec §10)."""
    job = session.get(Job, job_id)
    if job is not None and not bk_biz_ids <= set(job.bk_biz_scope or ()):
        job.bk_biz_scope = sorted(set(job.bk_biz_scope or ()) | bk_biz_ids)


def task_ids(session: Session, subscription_id: int) -> list[int]:
    return list(
        session.scalars(
            select(SubscriptionTask.id)
            .where(SubscriptionTask.subscription_id == subscription_id)
            .order_by(SubscriptionTask.id)
        )
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Latest:
    record_id: int
    instance_id: str
    attempt: int
    status: str
    instance_info: dict[str, Any]
    bk_host_id: int | None
    host_key: str | None


def latest_records(session: Session, subscription_id: int) -> dict[str, Latest]:
    """``instance_id -> its latest record`` over every task of the subscription."""
    rows = session.execute(
        select(
            InstanceRecord.id,
            InstanceRecord.instance_id,
            InstanceRecord.attempt,
            InstanceRecord.status,
            InstanceRecord.instance_info,
            InstanceRecord.bk_host_id,
            InstanceRecord.host_key,
        ).where(InstanceRecord.subscription_id == subscription_id, InstanceRecord.is_latest.is_(True))
    ).all()
    return {
        row[1]: Latest(
            record_id=row[0],
            instance_id=row[1],
            attempt=row[2],
            status=row[3],
            instance_info=row[4],
            bk_host_id=row[5],
            host_key=row[6],
        )
        for row in rows
    }


def add_run(
    session: Session,
    *,
    subscription: SubscriptionInfo,
    scope: dict[str, Any],
    action: str,
    targets: Sequence[ScopeTarget],
    plan: Sequence[PlannedStep],
    remove_missing: bool,
) -> tuple[int, int]:
    """One run: a task with a PENDING record per target (each the next attempt of its instance) and, when
    ``remove_missing``, a REMOVED record (no steps) for every instance of the last view that left the scope.
    Returns ``(task_id, removed count)``."""
    latest = latest_records(session, subscription.id)
    step_id = subscription.steps[0].step_id if subscription.steps else "agent"
    in_scope = {t.instance_id for t in targets}
    removed = [
        lat
        for iid, lat in latest.items()
        if remove_missing and lat.status != Status.REMOVED.value and iid not in in_scope
    ]
    task = SubscriptionTask(
        subscription_id=subscription.id,
        job_id=subscription.job_id,
        scope=scope,
        actions={t.instance_id: {step_id: action} for t in targets}
        | {r.instance_id: {step_id: Status.REMOVED.value} for r in removed},
    )
    session.add(task)
    session.flush()
    by_attempt: dict[int, list[jobs.NewInstance]] = {}
    for target in targets:
        previous = latest.get(target.instance_id)
        by_attempt.setdefault(previous.attempt + 1 if previous else 1, []).append(
            jobs.NewInstance(
                instance_id=target.instance_id,
                bk_host_id=target.bk_host_id,
                host_key=target.host_key,
                instance_info=target.instance_info,
            )
        )
    rollout = Rollout.stored(subscription.rollout)
    batches = None if rollout is None else rollout.batches([t.instance_id for t in targets])
    for attempt, new_instances in sorted(by_attempt.items()):
        jobs.add_records(
            session,
            job_id=subscription.job_id,
            subscription_id=subscription.id,
            task_id=task.id,
            instances=new_instances,
            steps=plan,
            attempt=attempt,
            batches=batches,
        )
    now = utcnow()
    if removed:
        session.execute(
            insert(InstanceRecord),
            [
                {
                    "task_id": task.id,
                    "subscription_id": subscription.id,
                    "job_id": subscription.job_id,
                    "instance_id": r.instance_id,
                    "bk_host_id": r.bk_host_id,
                    "host_key": r.host_key,
                    "attempt": r.attempt + 1,
                    "instance_info": r.instance_info,
                    "status": Status.REMOVED.value,
                    "is_latest": True,
                    "revision": 0,
                    "created_at": now,
                    "updated_at": now,
                    "finish_at": now,
                }
                for r in removed
            ],
        )
    replaced = [lat.record_id for iid, lat in latest.items() if iid in in_scope]
    replaced += [r.record_id for r in removed]
    for start in range(0, len(replaced), 500):
        session.execute(
            update(InstanceRecord).where(InstanceRecord.id.in_(replaced[start : start + 500])).values(is_latest=False)
        )
    return task.id, len(removed)


# --- task results -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultQuery:
    """Which records a task result shows: the latest of each instance over ``task_ids`` (all tasks when
    ``all_tasks``), narrowed by statuses and instances."""

    subscription_id: int
    job_id: int  # the subscription's job: with ``include``, the job's lookup indexes find the instances
    task_ids: tuple[int, ...]
    all_tasks: bool = False
    statuses: tuple[str, ...] = ()
    include: tuple[InstanceId, ...] | None = None  # only these instances (``store.instances`` finds them)
    exclude: tuple[InstanceId, ...] = ()  # not these
    without_removed: bool = False

    @property
    def is_unfiltered(self) -> bool:
        """True when the view is every latest record (its count is the status counter's total)."""
        return not self.statuses and self.include is None and not self.exclude


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordRow:
    record_id: int
    task_id: int
    instance_id: str
    attempt: int
    status: str
    instance_info: dict[str, Any]
    created_at: datetime
    start_at: datetime | None
    finish_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubStep(StepState):
    """A step of a record with its log, up to the cap ``sub_steps`` was given (``omitted_bytes`` left out)."""

    log: str
    omitted_bytes: int = 0


_ROW_COLUMNS = (
    InstanceRecord.id,
    InstanceRecord.task_id,
    InstanceRecord.instance_id,
    InstanceRecord.attempt,
    InstanceRecord.status,
    InstanceRecord.instance_info,
    InstanceRecord.created_at,
    InstanceRecord.start_at,
    InstanceRecord.finish_at,
)


def _base(query: ResultQuery) -> ColumnElement[bool]:
    """The latest record of each instance over the query's tasks."""
    if not query.all_tasks and len(query.task_ids) == 1:
        # one task holds one record per instance: its records are the view, no grouping needed; the task is one
        # of the subscription's (the service checked), so the task alone says it, and its indexes answer alone
        return InstanceRecord.task_id == query.task_ids[0]
    latest = select(func.max(InstanceRecord.id)).where(InstanceRecord.subscription_id == query.subscription_id)
    if not query.all_tasks:
        latest = latest.where(InstanceRecord.task_id.in_(query.task_ids))
    return InstanceRecord.id.in_(latest.group_by(InstanceRecord.instance_id))


def _filtered(query: ResultQuery) -> ColumnElement[bool]:
    conditions = [_base(query)]
    if query.without_removed:
        conditions.append(InstanceRecord.status != Status.REMOVED.value)
    if query.statuses:
        conditions.append(InstanceRecord.status.in_(query.statuses))
    if query.include is not None:  # by the job's lookup indexes (job_id, then each instance_id form)
        conditions += [InstanceRecord.job_id == query.job_id, instances.condition(query.include)]
    if query.exclude:
        conditions.append(not_(instances.condition(query.exclude)))
    return and_(*conditions)


def status_counter(session: Session, query: ResultQuery) -> dict[str, int]:
    """``{STATUS: n, ..., "total": n}`` over the unfiltered view (Node Manager's ``status_counter``)."""
    base = [_base(query)]
    if query.without_removed:
        base.append(InstanceRecord.status != Status.REMOVED.value)
    rows = session.execute(
        select(InstanceRecord.status, func.count()).where(*base).group_by(InstanceRecord.status)
    ).all()
    counter = {status: int(count) for status, count in sorted(rows)}
    counter["total"] = sum(counter.values())
    return counter


def count_records(session: Session, query: ResultQuery) -> int:
    return int(session.scalar(select(func.count()).select_from(InstanceRecord).where(_filtered(query))) or 0)


def page_records(session: Session, query: ResultQuery, *, offset: int, limit: int) -> list[RecordRow]:
    """One page of the view, by record id."""
    statement: Select[Any] = (
        select(*_ROW_COLUMNS).where(_filtered(query)).order_by(InstanceRecord.id).offset(offset).limit(limit)
    )
    return [_row(r) for r in session.execute(statement)]


def iter_records(session_factory: Any, query: ResultQuery, *, batch: int = 500) -> Iterator[list[RecordRow]]:
    """The whole view in batches of ``batch`` rows by id (keyset: each batch is one indexed query in its own
    session), so a caller holds one batch at a time."""
    after = 0
    while True:
        with session_factory() as session:
            rows = [
                _row(r)
                for r in session.execute(
                    select(*_ROW_COLUMNS)
                    .where(_filtered(query), InstanceRecord.id > after)
                    .order_by(InstanceRecord.id)
                    .limit(batch)
                )
            ]
        if not rows:
            return
        yield rows
        after = rows[-1].record_id
        if len(rows) < batch:
            return


def _row(r: Any) -> RecordRow:
    return RecordRow(
        record_id=r[0],
        task_id=r[1],
        instance_id=r[2],
        attempt=r[3],
        status=r[4],
        instance_info=r[5] if isinstance(r[5], dict) else {},
        created_at=r[6],
        start_at=r[7],
        finish_at=r[8],
    )


def sub_steps(
    session: Session, record_ids: Sequence[int], *, with_logs: bool, max_bytes: int = DEFAULT_STEP_MAX_BYTES
) -> dict[int, list[SubStep]]:
    """The steps of each record in plan order, with their logs when ``with_logs``, each step's up to about
    ``max_bytes`` (the rest only counted, in ``SubStep.omitted_bytes``, as the log API reads them): two statements
    on the driver (a page of 50 records is some 350 steps and as many chunks of log, which SQLAlchemy's row
    processing would take longer to hand over than the database takes to read)."""
    result: dict[int, list[SubStep]] = {record_id: [] for record_id in record_ids}
    if not record_ids:
        return result
    cur, p = session_cursor(session)
    ids = list(record_ids)
    marks = ", ".join([p] * len(ids))
    logs: dict[tuple[int, int], list[str]] = {}
    omitted: dict[tuple[int, int], int] = {}
    if with_logs:
        columns = capped_chunk_columns(p, is_sqlite=session.get_bind().dialect.name == "sqlite")
        cur.execute(
            f"SELECT l.record_id, l.step_index, {columns} FROM step_logs l WHERE l.record_id IN ({marks})"
            " WINDOW w AS (PARTITION BY l.record_id, l.step_index ORDER BY l.id ROWS UNBOUNDED PRECEDING)"
            " ORDER BY l.record_id, l.step_index, l.id",
            [max_bytes, max_bytes, *ids],
        )
        for record_id, index, text, left_out in cur.fetchall():
            if text is not None:
                logs.setdefault((record_id, index), []).append(text)
            elif left_out is not None:
                omitted[record_id, index] = omitted.get((record_id, index), 0) + int(left_out) + 1  # and its newline
    cur.execute(
        "SELECT record_id, step_index, code, name, status, start_at, finish_at FROM record_steps"
        f" WHERE record_id IN ({marks}) ORDER BY record_id, step_index",
        ids,
    )
    for record_id, index, code, name, status, start_at, finish_at in cur.fetchall():
        result[record_id].append(
            SubStep(
                index=index,
                code=code,
                name=name,
                status=status,
                start_at=stored_utc(start_at),
                finish_at=stored_utc(finish_at),
                log="\n".join(logs.get((record_id, index), ())),
                omitted_bytes=omitted.get((record_id, index), 0),
            )
        )
    cur.close()
    return result


def task_actions(session: Session, task_ids: Sequence[int]) -> dict[int, str]:
    """The action each task runs (one per task here: every instance of a run gets the same)."""
    actions: dict[int, str] = {}
    for task_id, task_actions in session.execute(
        select(SubscriptionTask.id, SubscriptionTask.actions).where(SubscriptionTask.id.in_(list(task_ids)))
    ):
        for steps in (task_actions or {}).values():
            action = next(iter(steps.values()), "") if isinstance(steps, dict) else ""
            if action and action != Status.REMOVED.value:
                actions[int(task_id)] = str(action)
                break
    return actions


def tasks_of(session: Session, subscription_id: int, task_ids: Sequence[int]) -> set[int]:
    """Which of ``task_ids`` are tasks of the subscription."""
    return set(
        session.scalars(
            select(SubscriptionTask.id).where(
                SubscriptionTask.subscription_id == subscription_id, SubscriptionTask.id.in_(list(task_ids))
            )
        )
    )


def running_task(session: Session, subscription_id: int) -> int | None:
    """The newest task of the subscription with a PENDING or RUNNING latest record, if any."""
    return session.scalar(
        select(func.max(InstanceRecord.task_id)).where(
            InstanceRecord.subscription_id == subscription_id,
            InstanceRecord.is_latest.is_(True),
            InstanceRecord.status.in_([s.value for s in ACTIVE]),
        )
    )
