"""The subscription APIs' use cases (Node Manager's backend ``/backend/api/subscription/<action>/``, spec §8):
create, info, update, delete, switch, run, revoke, retry, task_result, task_result_detail, instance_status.

A subscription names a scope of the inventory and one agent step. Running it resolves the scope now (a TOPO
scope follows the topology: a host moved out of a module is REMOVED from the next run's view, a new one added)
and hands a task to the engine, one instance per host or service instance. Every subscription runs for one job
(see ``store.subscriptions``), so its instance_ids work in the log API with that ``job_id``, in either host form.

Order inside a request as the job APIs: authentication (``api.deps``), validation naming every bad field, the
subscription (3800001, Node Manager's SubscriptionNotExist), the caller's right on its businesses, the use case.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from nodeops.domain.answer import capped_log
from nodeops.domain.contract import Contract, Field, Kind
from nodeops.domain.i18n import Language, job_type_display, step_name
from nodeops.domain.instance_id import InstanceId, parse_instance_ids
from nodeops.domain.plans import JobType, plan_steps
from nodeops.domain.rollout import read_rollout
from nodeops.domain.scope import (
    SCOPE,
    STEPS,
    SUBSCRIPTION_SCOPE,
    AgentStep,
    Scope,
    ScopeObject,
    parse_actions,
    parse_scope,
    parse_step,
    parse_steps,
)
from nodeops.domain.status import Status, backtrace_steps, collect_status
from nodeops.domain.terminal import strip_controls
from nodeops.domain.webhook import mask_url, read_webhook_url
from nodeops.errors import (
    Conflict,
    InstanceTaskIsRunning,
    InvalidInput,
    RecordNotFound,
    SubscriptionNotFound,
    TaskNotFound,
)
from nodeops.service.auth import Caller
from nodeops.service.job_commands import ROLLOUT_FIELDS, WEBHOOK_URL, JobCommands, require_biz
from nodeops.service.job_details import (
    LINE_TIME_FORMAT,
    MAX_PAGESIZE,
    TIME_FORMAT,
)
from nodeops.service.job_launch import AGENT_VERSION_PARAM, ChoosePackage, LaunchedTask, launch
from nodeops.service.paging import out_of_range
from nodeops.service.webhooks import default_webhook_url
from nodeops.store import inventory, proxies, subscriptions, webhooks
from nodeops.store import jobs as job_rows
from nodeops.store.db import ReadHandle, Session
from nodeops.store.log_reads import JobAccess
from nodeops.store.subscriptions import RecordRow, ResultQuery, SubscriptionInfo, SubStep

MAX_IDS = 1000
STREAM_BATCH = 500
_ACTION_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultStream:
    """A task result too big for one answer: the head (``total``, ``status_counter``; None for the bare list of
    ``pagesize=-1``) and its rows, batch by batch."""

    head: dict[str, Any] | None
    rows: AsyncIterator[list[dict[str, Any]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class _ResultParams:
    subscription_id: int
    task_ids: tuple[int, ...]
    page: int
    pagesize: int
    start: int | None
    statuses: tuple[str, ...]
    include: tuple[InstanceId, ...] | None
    exclude: tuple[InstanceId, ...]
    return_all: bool
    need_detail: bool
    all_tasks: bool
    out_of_scope: bool


# --- the requests ---------------------------------------------------------------------------------------------

SUBSCRIPTION_ID = Field(name="subscription_id", kind=Kind.INT, required=True)
_TASK_IDS = Field(name="task_id_list", kind=Kind.INT_LIST, max_items=MAX_IDS, unique=True)
_INSTANCE_IDS = Field(name="instance_id_list", kind=Kind.INSTANCE_IDS)
_SUBSCRIPTION_IDS = Field(
    name="subscription_id_list", kind=Kind.INT_LIST, required=True, max_items=MAX_IDS, unique=True
)
_RUN_IMMEDIATELY = Field(name="run_immediately", kind=Kind.BOOL, default=False)
_NAME = Field(name="name", kind=Kind.TEXT)
_SCOPE = Field(name="scope", kind=Kind.OBJECT, required=True, item=SCOPE)
CREATE = Contract(
    "CreateSubscriptionRequest",
    "create: a subscription of a scope, with one agent step; run_immediately also runs it.",
    (
        _SCOPE,
        STEPS,
        _NAME,
        _RUN_IMMEDIATELY,
        *ROLLOUT_FIELDS,
        WEBHOOK_URL,
    ),
)
INFO = Contract(
    "SubscriptionInfoRequest",
    "",
    (
        _SUBSCRIPTION_IDS,
        Field(name="show_deleted", kind=Kind.BOOL, default=False),
    ),
)
UPDATE = Contract(
    "UpdateSubscriptionRequest",
    "",
    (
        SUBSCRIPTION_ID,
        _NAME,
        _RUN_IMMEDIATELY,
        Field(name="steps", kind=Kind.OBJECTS, default=[], noun="steps", description="[{id, params[, config]}]."),
        replace(_SCOPE, item=SUBSCRIPTION_SCOPE),
        *ROLLOUT_FIELDS,
        replace(WEBHOOK_URL, description="nodeops: replaces where its job's ends are notified; null or '' stops it."),
    ),
)
DELETE = Contract("SubscriptionIdRequest", "delete: the subscription.", (SUBSCRIPTION_ID,))
SWITCH = Contract(
    "SwitchSubscriptionRequest",
    "",
    (
        Field(
            name="action",
            kind=Kind.TEXT,
            required=True,
            schema={"type": "string", "enum": ["enable", "disable"]},
            description="enable or disable.",
        ),
        SUBSCRIPTION_ID,
    ),
)
RUN = Contract(
    "RunSubscriptionRequest",
    "",
    (
        SUBSCRIPTION_ID,
        Field(
            name="scope", kind=Kind.OBJECT, item=SUBSCRIPTION_SCOPE, description="{node_type, nodes}: run only these."
        ),
        Field(
            name="actions",
            kind=Kind.OBJECT,
            schema={"type": "object", "additionalProperties": {"type": "string"}},
            description='{"agent": "RESTART_AGENT"}: this run only.',
        ),
    ),
)
REVOKE = Contract(
    "SubscriptionRevokeRequest",
    "revoke: the instances to stop (default every running one).",
    (SUBSCRIPTION_ID, _INSTANCE_IDS),
)
RETRY = Contract(
    "SubscriptionInstancesRequest",
    "retry: the instances to run again (default every failed one).",
    (
        replace(_TASK_IDS, description="retry: only instances of these tasks."),
        SUBSCRIPTION_ID,
        _INSTANCE_IDS,
    ),
)
TASK_RESULT = Contract(
    "TaskResultRequest",
    "task_result: the latest record of each instance over the tasks (default the newest task).",
    (
        SUBSCRIPTION_ID,
        _TASK_IDS,
        Field(name="page", kind=Kind.INT, default=1, maximum=MAX_PAGESIZE),
        Field(
            name="pagesize",
            kind=Kind.INT,
            default=-1,
            minimum=-1,
            maximum=MAX_PAGESIZE,
            description="-1: every instance, as a bare list unless return_all.",
        ),
        Field(
            name="start", kind=Kind.INT, maximum=MAX_PAGESIZE, description="Position of the first row; wins over page."
        ),
        Field(name="statuses", kind=Kind.VALUE, schema={"type": "array", "items": {"type": "string"}}),
        _INSTANCE_IDS,
        Field(name="exclude_instance_ids", kind=Kind.INSTANCE_IDS),
        Field(name="return_all", kind=Kind.BOOL, default=False),
        Field(name="need_detail", kind=Kind.BOOL, default=False),
        Field(name="need_aggregate_all_tasks", kind=Kind.BOOL, default=False),
        Field(name="need_out_of_scope_snapshots", kind=Kind.BOOL, default=True),
    ),
)
TASK_RESULT_DETAIL = Contract(
    "TaskResultDetailRequest",
    "",
    (
        SUBSCRIPTION_ID,
        _TASK_IDS,
        Field(name="task_id", kind=Kind.INT),
        Field(
            name="instance_id",
            kind=Kind.VALUE,
            required=True,
            schema={"anyOf": [{"type": "string"}, {"type": "integer"}]},
        ),
    ),
)
INSTANCE_STATUS = Contract(
    "InstanceStatusRequest",
    "",
    (
        _SUBSCRIPTION_IDS,
        Field(name="show_task_detail", kind=Kind.BOOL, default=False),
        Field(name="need_detail", kind=Kind.BOOL, default=False),
    ),
)
REQUESTS = (CREATE, INFO, UPDATE, DELETE, SWITCH, RUN, REVOKE, RETRY, TASK_RESULT, TASK_RESULT_DETAIL, INSTANCE_STATUS)


def _statuses(value: object, problems: dict[str, str]) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    values = value if isinstance(value, list) else [value]
    known = [s.value for s in Status]
    bad = [v for v in values if v not in known]
    if bad:
        problems["statuses"] = f"{bad[0]!r} is not a status; use any of {', '.join(known)}"
        return ()
    return tuple(dict.fromkeys(str(v) for v in values))


def parse_result_query(params: Mapping[str, object]) -> _ResultParams:
    """Validate task_result's parameters; one InvalidInput names every bad field."""
    problems: dict[str, str] = {}
    values = TASK_RESULT.gather(params, problems)
    if values.integer("pagesize") == 0:
        problems["pagesize"] = f"must be -1 (every instance) or from 1 to {MAX_PAGESIZE}"
    statuses = _statuses(values["statuses"], problems)
    include = None if params.get("instance_id_list") is None else tuple(values.instance_ids("instance_id_list"))
    TASK_RESULT.check(problems)
    return _ResultParams(
        subscription_id=values.integer("subscription_id") or 0,
        task_ids=tuple(values.integers("task_id_list")),
        page=values.integer("page") or 1,
        pagesize=values.integer("pagesize") or -1,
        start=values.integer("start"),
        statuses=statuses,
        include=include,
        exclude=tuple(values.instance_ids("exclude_instance_ids")),
        return_all=values.flag("return_all"),
        need_detail=values.flag("need_detail"),
        all_tasks=values.flag("need_aggregate_all_tasks"),
        out_of_scope=values.flag("need_out_of_scope_snapshots"),
    )


def _access(subscription: SubscriptionInfo) -> JobAccess:
    return JobAccess(job_id=subscription.job_id, bk_biz_scope=subscription.bk_biz_scope)


class SubscriptionService:
    """The subscription APIs' use cases; cheap to build (it holds the process's shared objects)."""

    def __init__(self, jobs: JobCommands, task_actions: dict[int, str]) -> None:
        """``task_actions`` memoises the action of each task (the process's ``Services.task_actions``)."""
        self.jobs = jobs
        self._actions = task_actions
        self.db = jobs.db
        self.engine = jobs.engine
        self.tz = jobs.tz
        self._step_max_bytes = jobs.settings.log_step_max_bytes  # each sub-step's log, as the log API caps it

    # --- lookups ----------------------------------------------------------------------------------------------

    def _find(
        self, session: Session, subscription_id: int, *, deleted_ok: bool = False, with_nodes: bool = True
    ) -> SubscriptionInfo:
        found = subscriptions.find_subscriptions(session, [subscription_id], with_nodes=with_nodes).get(subscription_id)
        if found is None or (found.is_deleted and not deleted_ok):
            raise SubscriptionNotFound(subscription_ids=[subscription_id])
        return found

    def _time(self, at: datetime | None, fmt: str = LINE_TIME_FORMAT) -> str | None:
        return None if at is None else at.astimezone(self.tz).strftime(fmt)

    # --- create, info, update, delete, switch ---------------------------------------------------------------

    async def create(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """Create a subscription (and the job it runs for); ``run_immediately`` also runs it."""
        problems: dict[str, str] = {}
        values = CREATE.gather(params, problems)
        scope = parse_scope(values["scope"], problems=problems)
        steps = parse_steps(values.objects("steps"), problems)
        name = self._name(values["name"], problems)
        run_now = values.flag("run_immediately")
        plan = read_rollout(params, problems)
        webhook_url = read_webhook_url(values[WEBHOOK_URL.name], WEBHOOK_URL.name, problems)
        CREATE.check(problems)
        assert scope is not None and steps

        def create() -> tuple[int, int]:
            with self.db.session() as session:
                targets = self._resolve(session, scope)
                require_biz(caller, self._biz_ids(scope, targets))
                subscription_id = subscriptions_create(
                    session, scope=scope, steps=steps, name=name, caller=caller, targets=targets
                )
                if plan is not None:
                    subscriptions.set_rollout(session, subscription_id, plan)
                notify_at = webhook_url or default_webhook_url(self.jobs.settings)
                if notify_at is not None:
                    webhooks.set_webhook_url(session, subscription_id, notify_at)
                job_id = self._find(session, subscription_id).job_id
            return subscription_id, job_id

        subscription_id, job_id = await self.db.call(create)
        answer: dict[str, Any] = {"subscription_id": subscription_id, "job_id": job_id}
        if run_now:
            answer["task_id"] = (await self._run(caller, subscription_id, None, {}))["task_id"]
        return answer

    @staticmethod
    def _name(value: object, problems: dict[str, str]) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > 128:
            problems["name"] = "must be a string of at most 128 characters"
            return None
        return value

    def _resolve(self, session: Session, scope: Scope) -> list[inventory.ScopeTarget]:
        missing = inventory.missing_nodes(session, scope)
        if missing:
            raise InvalidInput({f"scope.nodes[{index}]": why for index, why in sorted(missing.items())})
        return inventory.resolve_scope(session, scope)

    @staticmethod
    def _biz_ids(scope: Scope, targets: Sequence[inventory.ScopeTarget]) -> set[int]:
        biz = {t.bk_biz_id for t in targets}
        biz.update(n.bk_inst_id for n in scope.nodes if n.bk_obj_id == "biz" and n.bk_inst_id is not None)
        if scope.bk_biz_id is not None:
            biz.add(scope.bk_biz_id)
        return biz

    async def info(self, caller: Caller, params: Mapping[str, object]) -> list[dict[str, Any]]:
        """The subscriptions of ``subscription_id_list``: scope, steps, state; unknown ids answer 3800001."""
        values = INFO.read(params)
        ids, show_deleted = values.integers("subscription_id_list"), values.flag("show_deleted")

        def read() -> tuple[list[SubscriptionInfo], dict[int, str | None]]:
            with self.db.session() as session:
                found = subscriptions.find_subscriptions(session, ids)
                urls = webhooks.webhook_urls(session, list(found))
            missing = [i for i in ids if i not in found or (found[i].is_deleted and not show_deleted)]
            if missing:
                raise SubscriptionNotFound(subscription_ids=missing)
            for sub in found.values():
                caller.require_job_view(_access(sub))
            return [found[i] for i in ids], urls

        subs, urls = await self.db.call(read)
        return [self._info(sub, urls.get(sub.id)) for sub in subs]

    def _info(self, sub: SubscriptionInfo, webhook_url: str | None) -> dict[str, Any]:
        return {
            "id": sub.id,
            "name": sub.name,
            "enable": sub.enable,
            "is_deleted": sub.is_deleted,
            "category": sub.category,
            "plugin_name": None,
            "bk_biz_id": sub.bk_biz_id,
            "bk_biz_scope": sorted(sub.bk_biz_scope),
            "scope": sub.scope,
            "steps": [{"id": s.step_id, "type": s.type, "config": s.config, "params": s.params} for s in sub.steps],
            "creator": sub.creator,
            "from_system": sub.from_system,
            "create_time": self._time(sub.created_at, TIME_FORMAT),
            "job_id": sub.job_id,
            "rollout": sub.rollout,  # nodeops: its runs' batch_size, max_fail_percentage, batch_interval_s
            "webhook_url": None if webhook_url is None else mask_url(webhook_url),  # nodeops: where its ends go
        }

    async def update(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """Replace the scope and the steps' params (``run_immediately``: and run it)."""
        problems: dict[str, str] = {}
        values = UPDATE.gather(params, problems)
        subscription_id = values.integer("subscription_id") or 0
        name = self._name(values["name"], problems)
        run_now = values.flag("run_immediately")
        raw_steps = values.objects("steps")
        plan = read_rollout(params, problems)
        new_webhook = WEBHOOK_URL.name in params
        webhook_url = read_webhook_url(values[WEBHOOK_URL.name], WEBHOOK_URL.name, problems)
        UPDATE.check(problems)

        def update() -> None:
            with self.db.session() as session:
                sub = self._find(session, subscription_id)
                scope = parse_scope(values["scope"], object_type=ScopeObject(sub.object_type), problems=problems)
                changes = self._step_changes(sub, raw_steps, problems)
                if problems:
                    raise InvalidInput(problems)
                assert scope is not None
                targets = self._resolve(session, scope)
                require_biz(caller, self._biz_ids(scope, targets) | set(sub.bk_biz_scope))
                subscriptions.update_subscription(
                    session, subscription_id, scope=scope.as_json(), steps=changes, name=name
                )
                if plan is not None:  # given: replaces the runs' batches and threshold
                    subscriptions.set_rollout(session, subscription_id, plan)
                if new_webhook:  # given: replaces where the job's ends are notified (null or '': nowhere)
                    webhooks.set_webhook_url(session, subscription_id, webhook_url)
                subscriptions.widen_job_scope(session, sub.job_id, {t.bk_biz_id for t in targets})

        await self.db.call(update)
        answer: dict[str, Any] = {"subscription_id": subscription_id}
        if run_now:
            answer["task_id"] = (await self._run(caller, subscription_id, None, {}))["task_id"]
        return answer

    @staticmethod
    def _step_changes(
        sub: SubscriptionInfo, raw_steps: Sequence[tuple[int, str, Mapping[str, object]]], problems: dict[str, str]
    ) -> list[dict[str, Any]]:
        """Each step sent, completed from the subscription's step of its id, then read as a whole step."""
        known = {s.step_id: s for s in sub.steps}
        changes = []
        for _index, where, raw in raw_steps:
            step_id = raw.get("id")
            step = known.get(step_id) if isinstance(step_id, str) else None
            if step is None:
                problems[f"{where}.id"] = f"{raw.get('id')!r} is not a step of this subscription"
                continue
            # what is left out (or empty) is the subscription's
            merged = {
                **raw,
                "id": step.step_id,
                "type": raw.get("type") or step.type,
                "config": raw.get("config") or step.config,
            }
            parsed = parse_step(merged, problems, where=where)
            if parsed is not None:
                changes.append(parsed.as_json())
        return changes

    async def delete(self, caller: Caller, params: Mapping[str, object]) -> None:
        """Delete the subscription (softly, as Node Manager: its tasks and logs stay readable by job)."""
        await self._set(caller, DELETE.read(params).integer("subscription_id") or 0, is_deleted=True)

    async def switch(self, caller: Caller, params: Mapping[str, object]) -> None:
        """``action`` enable or disable: a disabled subscription refuses to run."""
        problems: dict[str, str] = {}
        values = SWITCH.gather(params, problems)
        action = values["action"]
        if action not in ("enable", "disable"):
            problems["action"] = f"{action!r} must be enable or disable"
        SWITCH.check(problems)
        await self._set(caller, values.integer("subscription_id") or 0, enable=action == "enable")

    async def _set(self, caller: Caller, subscription_id: int, **values: bool) -> None:

        def write() -> None:
            with self.db.session() as session:
                sub = self._find(session, subscription_id)
                require_biz(caller, set(sub.bk_biz_scope))
                subscriptions.set_subscription(session, subscription_id, **values)

        await self.db.call(write)

    # --- run, revoke, retry -------------------------------------------------------------------------------------

    async def run(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """Run the subscription on its scope (or on the part of it ``scope`` names): a new task, one instance per
        host or service instance, started at once. ``actions`` overrides the step's action for this run."""
        values = RUN.read(params)
        return await self._run(caller, values.integer("subscription_id") or 0, values["scope"], values["actions"])

    async def _run(
        self, caller: Caller, subscription_id: int, raw_scope: object, raw_actions: object
    ) -> dict[str, Any]:
        def create(choose: ChoosePackage) -> LaunchedTask:
            problems: dict[str, str] = {}
            with self.db.session() as session:
                subscriptions.lock_subscription(session, subscription_id)
                sub = self._find(session, subscription_id)
                kind = ScopeObject(sub.object_type)
                scope = parse_scope(sub.scope, object_type=kind, problems=problems)
                partial = None
                if raw_scope is not None:
                    partial = parse_scope(raw_scope, object_type=kind, problems=problems)
                actions = parse_actions(raw_actions, [s.step_id for s in sub.steps], problems)
                if problems:
                    raise InvalidInput(problems)
                assert scope is not None
                if not sub.enable:
                    raise Conflict(f"subscription {subscription_id} is disabled; switch it on (action enable) first")
                if (running := subscriptions.running_task(session, subscription_id)) is not None:
                    raise InstanceTaskIsRunning(subscription_id=subscription_id, task_id=running)
                step = sub.steps[0]
                action = actions.get(step.step_id) or JobType(step.config["job_type"])
                targets = self._resolve(session, partial or scope)
                require_biz(caller, self._biz_ids(partial or scope, targets) | set(sub.bk_biz_scope))
                version = step.params.get(AGENT_VERSION_PARAM)
                choose(version if isinstance(version, str) else None)
                task_id, _removed = subscriptions.add_run(
                    session,
                    subscription=sub,
                    scope=(partial or scope).as_json(),
                    action=action,
                    targets=targets,
                    plan=plan_steps(action),
                    remove_missing=partial is None,
                )
                subscriptions.widen_job_scope(session, sub.job_id, {t.bk_biz_id for t in targets})
                # what the action makes its hosts (a proxy, or an agent of its area), as a job's launch does
                proxies.set_node_types(session, [t.bk_host_id for t in targets], proxy_job=action.is_proxy)
                return LaunchedTask(job_id=sub.job_id, task_id=task_id)

        launched = await launch(self.db, self.engine, create)
        return {"task_id": launched.task_id, "job_id": launched.job_id}

    async def revoke(self, caller: Caller, params: Mapping[str, object]) -> None:
        """Stop the subscription's PENDING and RUNNING instances (of ``instance_id_list``, default all)."""
        job_id = await self._job_of(REVOKE.read(params).integer("subscription_id") or 0)
        await self.jobs.revoke(caller, {"job_id": job_id, "instance_id_list": params.get("instance_id_list")})

    async def retry(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """Run the FAILED instances again (of ``instance_id_list``, default all) as a new task."""
        values = RETRY.read(params)
        task_ids = values.integers("task_id_list")
        job_id = await self._job_of(values.integer("subscription_id") or 0, task_ids=task_ids)
        answer = await self.jobs.retry(caller, {"job_id": job_id, "instance_id_list": params.get("instance_id_list")})
        return {"task_id": answer["task_id_list"][-1], "job_id": job_id}

    async def _job_of(self, subscription_id: int, *, task_ids: Sequence[int] = ()) -> int:

        def find() -> int:
            with self.db.session() as session:
                sub = self._find(session, subscription_id)
                self._check_tasks(session, subscription_id, task_ids)
            return sub.job_id

        return await self.db.call(find)

    @staticmethod
    def _check_tasks(session: Session, subscription_id: int, task_ids: Sequence[int]) -> None:
        if task_ids:
            unknown = sorted(set(task_ids) - subscriptions.tasks_of(session, subscription_id, task_ids))
            if unknown:
                raise TaskNotFound(subscription_id=subscription_id, task_ids=unknown)

    # --- task results -------------------------------------------------------------------------------------------

    async def task_result(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any] | ResultStream:
        """A page of the latest record of each instance of the tasks (default the newest task), with ``total``
        and ``status_counter``; ``pagesize=-1`` or ``return_all`` stream every row (see ResultStream)."""
        query = parse_result_query(params)

        def prepare(_cur: ReadHandle) -> tuple[SubscriptionInfo, ResultQuery]:
            with self.db.session() as session:
                sub = self._find(session, query.subscription_id, deleted_ok=True, with_nodes=False)
                caller.require_job_view(_access(sub))
                return sub, self._result_query(session, sub, query)

        sub, result_query = await self.db.read(prepare)
        if query.pagesize == -1 or query.return_all:
            return await self._stream(sub, result_query, query, caller.language)
        return await self.db.read(lambda _cur: self._page(sub, result_query, query, caller.language))

    def _result_query(self, session: Session, sub: SubscriptionInfo, query: _ResultParams) -> ResultQuery:
        task_ids = query.task_ids
        if task_ids:
            self._check_tasks(session, sub.id, task_ids)
        elif not query.all_tasks:
            every = subscriptions.task_ids(session, sub.id)
            if not every:
                raise TaskNotFound(subscription_id=sub.id, task_ids=[])
            task_ids = (every[-1],)
        return ResultQuery(
            subscription_id=sub.id,
            job_id=sub.job_id,
            task_ids=task_ids,
            all_tasks=query.all_tasks,
            statuses=query.statuses,
            include=query.include,
            exclude=query.exclude,
            without_removed=not query.out_of_scope,
        )

    def _page(
        self, sub: SubscriptionInfo, result_query: ResultQuery, query: _ResultParams, language: Language
    ) -> dict[str, Any]:
        with self.db.session() as session:
            counter = subscriptions.status_counter(session, result_query)
            total = (
                counter["total"] if result_query.is_unfiltered else subscriptions.count_records(session, result_query)
            )
            offset = (query.start - 1) if query.start is not None else (query.page - 1) * query.pagesize
            if offset and offset >= total:
                field, value = ("start", query.start) if query.start is not None else ("page", query.page)
                raise out_of_range(field, value, total=total, pagesize=query.pagesize, noun="instances")
            records = subscriptions.page_records(session, result_query, offset=offset, limit=query.pagesize)
            rows = self._rows(session, sub, records, need_detail=query.need_detail, language=language)
        return {"total": total, "list": rows, "status_counter": counter}

    async def _stream(
        self, sub: SubscriptionInfo, result_query: ResultQuery, query: _ResultParams, language: Language
    ) -> ResultStream:
        head = None
        if query.return_all:

            def count(_cur: ReadHandle) -> dict[str, Any]:
                with self.db.session() as session:
                    counter = subscriptions.status_counter(session, result_query)
                    total = (
                        counter["total"]
                        if result_query.is_unfiltered
                        else subscriptions.count_records(session, result_query)
                    )
                    return {"total": total, "status_counter": counter}

            head = await self.db.read(count)
        batches = subscriptions.iter_records(self.db.session, result_query, batch=STREAM_BATCH)

        def next_batch(_cur: ReadHandle) -> list[dict[str, Any]] | None:
            records = next(batches, None)
            if records is None:
                return None
            with self.db.session() as session:
                return self._rows(session, sub, records, need_detail=query.need_detail, language=language)

        async def rows() -> AsyncIterator[list[dict[str, Any]]]:
            while (batch := await self.db.read(next_batch)) is not None:
                yield batch

        return ResultStream(head=head, rows=rows())

    def _rows(
        self,
        session: Session,
        sub: SubscriptionInfo,
        records: Sequence[RecordRow],
        *,
        need_detail: bool,
        language: Language,
    ) -> list[dict[str, Any]]:
        unknown = sorted({r.task_id for r in records} - self._actions.keys())
        if unknown:
            if len(self._actions) > _ACTION_CACHE_SIZE:
                self._actions.clear()
            self._actions.update(subscriptions.task_actions(session, unknown))
        steps = (
            subscriptions.sub_steps(
                session, [r.record_id for r in records], with_logs=True, max_bytes=self._step_max_bytes
            )
            if need_detail
            else {}
        )
        step_id = sub.steps[0].step_id if sub.steps else "agent"
        return [
            self._row(
                r, step_id, self._actions.get(r.task_id, sub.job_type), steps.get(r.record_id), sub.job_id, language
            )
            for r in records
        ]

    def _row(
        self,
        record: RecordRow,
        step_id: str,
        action: str,
        detail: list[SubStep] | None,
        job_id: int | None,
        language: Language,
    ) -> dict[str, Any]:
        """One instance's row; its node names in ``language`` (its logs as stored)."""
        host = record.instance_info.get("host") or {}
        node_name = f"[{step_id}] {job_type_display(action, language)}"
        step: dict[str, Any] = {
            "id": step_id,
            "type": "AGENT",
            "index": 0,
            "action": action,
            "extra_info": {},
            "pipeline_id": "",
            "node_name": node_name,
            "status": record.status,
            "start_time": self._time(record.start_at),
            "finish_time": self._time(record.finish_at),
        }
        if detail is not None:
            statuses = backtrace_steps([Status(s.status) for s in detail])
            sub_steps = [
                {
                    "index": s.index,
                    "node_name": step_name(s.name, language),
                    "step_code": s.code,
                    "pipeline_id": f"{record.record_id}-{s.index}",
                    "log": capped_log(
                        s.log,
                        s.omitted_bytes,
                        self._step_max_bytes,
                        strip_controls,
                        job_id=job_id,
                        instance_id=record.instance_id,
                        attempt=record.attempt,
                    ),
                    "ex_data": None,
                    "status": status.value,
                    "start_time": self._time(s.start_at),
                    "finish_time": None if status == Status.PENDING else self._time(s.finish_at),
                }
                for s, status in zip(detail, statuses, strict=True)
            ]
            ip = host.get("bk_host_innerip") or host.get("bk_host_innerip_v6", "")
            target = {
                "node_name": f"{node_name} {host.get('bk_cloud_id', 0)}:{ip}",
                "pipeline_id": "",
                "status": collect_status(statuses).value if statuses else record.status,
                "start_time": step["start_time"],
                "finish_time": step["finish_time"],
                "sub_steps": sub_steps,
            }
            step["target_hosts"] = [target]
        return {
            "task_id": record.task_id,
            "record_id": record.record_id,
            "instance_id": record.instance_id,
            "create_time": self._time(record.created_at, TIME_FORMAT),
            "pipeline_id": "",
            "start_time": self._time(record.start_at),
            "finish_time": self._time(record.finish_at),
            "instance_info": record.instance_info,
            "status": record.status,
            "attempt": record.attempt,
            "steps": [] if record.status == Status.REMOVED.value else [step],
        }

    async def task_result_detail(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """One instance's latest record over the tasks (default all), with its steps, sub-steps and logs."""
        problems: dict[str, str] = {}
        values = TASK_RESULT_DETAIL.gather(params, problems)
        subscription_id = values.integer("subscription_id") or 0
        task_ids = values.integers("task_id_list")
        if (task_id := values.integer("task_id")) is not None:
            task_ids.append(task_id)
        wanted: list[InstanceId] = []
        if values["instance_id"] in (None, ""):
            problems["instance_id"] = "this field is required (object_type|node_type|type|id, or a bk_host_id)"
        else:
            wanted = parse_instance_ids(values["instance_id"], "instance_id", problems, allow_single=True)
            if not wanted and "instance_id" not in problems:
                problems["instance_id"] = "must be one instance_id (object_type|node_type|type|id, or a bk_host_id)"
        TASK_RESULT_DETAIL.check(problems)

        def read() -> dict[str, Any]:
            with self.db.session() as session:
                sub = self._find(session, subscription_id, deleted_ok=True, with_nodes=False)
                caller.require_job_view(_access(sub))
                self._check_tasks(session, subscription_id, task_ids)
                query = ResultQuery(
                    subscription_id=subscription_id,
                    job_id=sub.job_id,
                    task_ids=tuple(task_ids),
                    all_tasks=not task_ids,
                    include=tuple(wanted),
                )
                records = subscriptions.page_records(session, query, offset=0, limit=1)
                if not records:
                    raise RecordNotFound(subscription_id=subscription_id, instance_id=str(wanted[0]))
                return self._rows(session, sub, records, need_detail=True, language=caller.language)[0]

        return await self.db.call(read)

    async def instance_status(self, caller: Caller, params: Mapping[str, object]) -> list[dict[str, Any]]:
        """Each subscription's instances now (latest record, REMOVED ones left out) with their agent state."""
        if params.get("subscription_id_list") is None and params.get("subscription_id") not in (None, ""):
            # the documented parameter name (spec §11.18)
            params = {**params, "subscription_id_list": [params.get("subscription_id")]}
        values = INSTANCE_STATUS.read(params)
        ids = values.integers("subscription_id_list")
        show_task_detail, need_detail = values.flag("show_task_detail"), values.flag("need_detail")

        def read() -> list[dict[str, Any]]:
            with self.db.session() as session:
                found = subscriptions.find_subscriptions(session, ids, with_nodes=False)
                missing = [i for i in ids if i not in found or found[i].is_deleted]
                if missing:
                    raise SubscriptionNotFound(subscription_ids=missing)
                answer = []
                for sub in (found[i] for i in ids):
                    caller.require_job_view(_access(sub))
                    query = ResultQuery(
                        subscription_id=sub.id, job_id=sub.job_id, task_ids=(), all_tasks=True, without_removed=True
                    )
                    total = subscriptions.count_records(session, query)
                    records = subscriptions.page_records(session, query, offset=0, limit=max(total, 1))
                    running = subscriptions.running_task(session, sub.id)
                    agents = inventory.agent_states(session, [self._host_id(r) for r in records])
                    # no logs for every instance
                    rows = self._rows(session, sub, records, need_detail=False, language=caller.language)
                    instances = []
                    for record, row in zip(records, rows, strict=True):
                        info = record.instance_info
                        agent = agents.get(self._host_id(record))
                        last_task: dict[str, Any] = {"id": record.task_id}
                        if show_task_detail:
                            last_task.update(record_id=record.record_id, steps=row["steps"])
                        instances.append(
                            {
                                "instance_id": record.instance_id,
                                "status": record.status,
                                "create_time": row["create_time"],
                                "host_statuses": [] if agent is None else [agent],
                                "instance_info": info if need_detail else {"host": info.get("host", {})},
                                "running_task": None if running is None else {"id": running, "is_auto_trigger": False},
                                "last_task": last_task,
                            }
                        )
                    answer.append({"subscription_id": sub.id, "instances": instances})
                return answer

        return await self.db.call(read)

    @staticmethod
    def _host_id(record: RecordRow) -> int:
        host = record.instance_info.get("host") or {}
        value = host.get("bk_host_id")
        return int(value) if isinstance(value, int) else 0


def subscriptions_create(
    session: Session,
    *,
    scope: Scope,
    steps: Sequence[AgentStep],
    name: str | None,
    caller: Caller,
    targets: Sequence[inventory.ScopeTarget],
) -> int:
    """Store a subscription of ``scope`` with its steps, and the job it runs for; returns its id."""
    as_json = scope.as_json()
    subscription_id = job_rows.add_subscription(
        session,
        object_type=as_json["object_type"],
        node_type=as_json["node_type"],
        nodes=as_json["nodes"],
        bk_biz_id=scope.bk_biz_id,
        steps=[step.as_json() for step in steps],
        creator=caller.username,
        from_system=caller.app_code,
        name=name,
    )
    biz = {t.bk_biz_id for t in targets} | ({scope.bk_biz_id} if scope.bk_biz_id is not None else set())
    job_rows.add_job(
        session,
        job_type=steps[0].job_type,
        created_by=caller.username,
        from_system=caller.app_code,
        bk_biz_scope=sorted(biz),
        subscription_id=subscription_id,
    )
    return subscription_id
