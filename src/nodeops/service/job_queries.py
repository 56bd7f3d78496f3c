"""The job APIs' use cases: install_job and operate_job (validation and permission before ``JobRunner``),
details_job, and retry, revoke and retry_node on a job (spec §8).

Order inside a request as Node Manager (spec §10): the caller is authenticated first (``api.deps``), then the
parameters are validated (every bad field named at once), then the job is looked up (3801012), then the
caller's right on every business of the job is checked (9900403), then the use case runs. ``instance_id``
values take every form the log API takes (``parse_instance_id``), and both host forms find the same instance.

A retry never rewrites history: it runs the chosen instances again as a new task whose records are the next
``attempt``; earlier attempts stay readable through the log API's ``attempt`` parameter (spec §11.11).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from nodeops.domain.instance_id import MAX_HOST_ID, InstanceId, parse_instance_id
from nodeops.domain.params import int_value
from nodeops.domain.plans import JobType
from nodeops.domain.status import ACTIVE, JobStatistics, Status, aggregate_job_status
from nodeops.engine import packages
from nodeops.engine.runner import Engine
from nodeops.engine.steps import AgentPackage
from nodeops.errors import (
    Conflict,
    InstanceNotFound,
    InvalidInput,
    JobNotFound,
    LocalTransportDenied,
    NoFailedStep,
    NothingRunning,
    PermissionDenied,
)
from nodeops.service.auth import Caller
from nodeops.service.host_requests import HostRequest, parse_hosts
from nodeops.service.job_launch import (
    AGENT_VERSION_PARAM,
    INSTALL_TYPES,
    OPERATE_TYPES,
    JobRunner,
    StartedJob,
)
from nodeops.service.paging import out_of_range
from nodeops.settings import Settings
from nodeops.store import attempts, job_reads, pipelines
from nodeops.store.db import Database
from nodeops.store.job_reads import Instance, JobInfo, StepState
from nodeops.store.log_reads import JobAccess
from nodeops.store.models import utcnow

T = TypeVar("T")
MAX_PAGESIZE = 2**31 - 1
TIME_FORMAT = "%Y-%m-%d %H:%M:%S%z"  # how Node Manager's JSON renders datetimes (spec §1.2)
LINE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
OPERATE_ACTION = "agent_operate"  # the IAM action install/operate need, on every business of the hosts

JOB_TYPE_DISPLAY: dict[str, str] = {
    JobType.INSTALL_AGENT: "安装 Agent",
    JobType.REINSTALL_AGENT: "重装 Agent",
    JobType.UPGRADE_AGENT: "升级 Agent",
    JobType.RESTART_AGENT: "重启 Agent",
    JobType.RELOAD_AGENT: "重载配置",
    JobType.UNINSTALL_AGENT: "卸载 Agent",
}
OP_TYPE_DISPLAY = {
    "INSTALL": "安装",
    "REINSTALL": "重装",
    "UPGRADE": "升级",
    "RESTART": "重启",
    "RELOAD": "重载",
    "UNINSTALL": "卸载",
}
STEP_TYPE_DISPLAY = {"AGENT": "Agent", "PLUGIN": "插件", "PROXY": "Proxy"}
STATUS_DISPLAY = {
    Status.PENDING: "等待执行",
    Status.RUNNING: "正在执行",
    Status.SUCCESS: "执行成功",
    Status.FAILED: "执行失败",
    Status.PART_FAILED: "部分失败",
    Status.TERMINATED: "已终止",
    Status.REMOVED: "已移除",
    Status.FILTERED: "被过滤的",
    Status.IGNORED: "已忽略",
}
CONDITION_KEYS = ("ip", "instance_id", "status", "exclude_instance_ids")


def job_meta(job_type: str) -> dict[str, str]:
    """``{type, step_type, op_type, op_type_display, step_type_display}`` of a job type, as Node Manager's
    ``unzip_job_type`` splits ``{OP}_{STEP}`` (spec §5.1)."""
    op_type, _, step_type = job_type.rpartition("_")
    op_type = op_type.replace("MAIN_", "")
    return {
        "type": step_type,
        "step_type": step_type,
        "op_type": op_type,
        "op_type_display": OP_TYPE_DISPLAY.get(op_type, op_type),
        "step_type_display": STEP_TYPE_DISPLAY.get(step_type, step_type),
    }


# --- validation ---------------------------------------------------------------------------------------------


def _job_id(params: Mapping[str, object], problems: dict[str, str]) -> int:
    value = params.get("job_id")
    if value is None or value == "":
        problems["job_id"] = "this field is required (a positive integer)"
        return 0
    return int_value(value, "job_id", problems) or 0


def _job_type(value: object, allowed: Collection[JobType], problems: dict[str, str]) -> JobType | None:
    accepted = ", ".join(sorted(allowed))
    if value is None or value == "":
        problems["job_type"] = f"this field is required: one of {accepted}"
        return None
    if not isinstance(value, str) or value not in allowed:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        problems["job_type"] = f"{shown} must be one of {accepted}"
        return None
    return JobType(value)


def _instance_ids(value: object, name: str, problems: dict[str, str], *, allow_single: bool) -> list[InstanceId]:
    """A list of instance ids (``allow_single``: or one id); each bad one named ``name[i]``."""
    if value is None:
        return []
    items: list[object]
    if isinstance(value, list):
        items = value
    elif allow_single and isinstance(value, str | int) and not isinstance(value, bool):
        items = [value]
    else:
        problems[name] = "must be a list of instance_ids (object_type|node_type|type|id, or bk_host_ids)"
        return []
    parsed: list[InstanceId] = []
    for index, item in enumerate(items):
        where = f"{name}[{index}]" if isinstance(value, list) else name
        try:
            parsed.append(parse_instance_id(item))
        except InvalidInput as exc:
            problems[where] = "; ".join(exc.problems.values())
    return parsed


@dataclass(frozen=True, slots=True, kw_only=True)
class DetailsQuery:
    job_id: int
    page: int
    pagesize: int  # -1: everything
    ips: tuple[str, ...]
    instances: tuple[InstanceId, ...]
    statuses: frozenset[Status]
    excluded: tuple[InstanceId, ...]


def parse_details_query(params: Mapping[str, object]) -> DetailsQuery:
    """Validate details_job's ``job_id``, ``page``, ``pagesize`` and ``conditions``; one InvalidInput names
    every bad field."""
    problems: dict[str, str] = {}
    job_id = _job_id(params, problems)
    page = 1
    if params.get("page") not in (None, ""):
        page = int_value(params["page"], "page", problems, maximum=MAX_PAGESIZE) or 1
    pagesize = 10
    if params.get("pagesize") not in (None, ""):
        size = int_value(params["pagesize"], "pagesize", problems, minimum=-1, maximum=MAX_PAGESIZE)
        if size is not None and size != 0:
            pagesize = size
        elif size == 0 or "pagesize" in problems:
            problems["pagesize"] = f"must be -1 (every instance) or from 1 to {MAX_PAGESIZE}"
    ips: list[str] = []
    instances: list[InstanceId] = []
    statuses: set[Status] = set()
    excluded = _instance_ids(params.get("exclude_instance_ids"), "exclude_instance_ids", problems, allow_single=False)
    conditions = params.get("conditions")
    if conditions is not None and not isinstance(conditions, list):
        problems["conditions"] = 'must be a list of {"key": ..., "value": ...} objects'
        conditions = []
    for index, condition in enumerate(conditions or []):
        where = f"conditions[{index}]"
        if not isinstance(condition, dict):
            problems[where] = 'must be an object {"key": ..., "value": ...}'
            continue
        key, value = condition.get("key"), condition.get("value")
        if key not in CONDITION_KEYS:
            problems[f"{where}.key"] = f"{key!r} must be one of {', '.join(CONDITION_KEYS)}"
        elif key == "ip":
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, str) and v.strip() for v in values):
                problems[f"{where}.value"] = "must be an IP (or part of one), or a list of them"
            else:
                ips.extend(v.strip() for v in values if isinstance(v, str))
        elif key == "status":
            values = value if isinstance(value, list) else [value]
            known = {s.value for s in Status}
            if not all(isinstance(v, str) and v in known for v in values):
                problems[f"{where}.value"] = f"must be a list of statuses among {', '.join(s.value for s in Status)}"
            else:
                statuses.update(Status(v) for v in values if isinstance(v, str))
        elif key == "instance_id":
            instances.extend(_instance_ids(value, f"{where}.value", problems, allow_single=True))
        else:
            excluded.extend(_instance_ids(value, f"{where}.value", problems, allow_single=True))
    if problems:
        raise InvalidInput(problems)
    return DetailsQuery(
        job_id=job_id,
        page=page,
        pagesize=pagesize,
        ips=tuple(ips),
        instances=tuple(instances),
        statuses=frozenset(statuses),
        excluded=tuple(excluded),
    )


class InstanceIndex:
    """A job's instances by each identity, to resolve what callers name them by."""

    def __init__(self, instances: Sequence[Instance]) -> None:
        # a service instance keeps its host's id but no host key: only host instances answer the host forms
        self.by_host_id = {i.bk_host_id: i for i in instances if i.bk_host_id is not None and i.host_key is not None}
        self.by_host_key = {i.host_key: i for i in instances if i.host_key is not None}
        self.by_instance_id = {i.instance_id: i for i in instances}

    def find(self, wanted: InstanceId) -> Instance | None:
        """The instance ``wanted`` names: a host by either identity, anything else by its full id."""
        if (host_id := wanted.bk_host_id) is not None:
            return self.by_host_id.get(host_id)
        if wanted.is_host_instance:  # a parsed host instance's id is its normalised host key
            return self.by_host_key.get(wanted.id)
        return self.by_instance_id.get(str(wanted))

    def record_ids(self, wanted: Sequence[InstanceId]) -> set[int]:
        """The records of the instances among ``wanted`` that the job has."""
        return {found.record_id for item in wanted if (found := self.find(item)) is not None}


def _pick(job_id: int, instances: Sequence[Instance], wanted: Sequence[InstanceId]) -> list[Instance]:
    """The instances named by ``wanted`` in job order; one the job does not have raises InstanceNotFound."""
    index = InstanceIndex(instances)
    chosen: set[int] = set()
    for item in wanted:
        found = index.find(item)
        if found is None:
            raise InstanceNotFound(job_id=job_id, instance_id=str(item))
        chosen.add(found.record_id)
    return [instance for instance in instances if instance.record_id in chosen]


def _access(job: JobInfo) -> JobAccess:
    return JobAccess(job_id=job.job_id, bk_biz_scope=job.bk_biz_scope)


def require_biz(caller: Caller, biz_ids: Collection[int], *, rows: Mapping[int, Sequence[str]] | None = None) -> None:
    """Raise PermissionDenied unless the caller may operate agents on every one of ``biz_ids`` (spec §10).

    ``rows`` (``bk_biz_id -> [row names]``) lets the refusal name the rows of the request in those businesses."""
    if caller.is_superuser:
        return
    missing = sorted(set(biz_ids) - caller.biz_ids)
    if missing:
        named = list(dict.fromkeys(row for biz in missing for row in (rows or {}).get(biz, ())))
        raise PermissionDenied(
            username=caller.username, job_id=None, missing_biz_ids=missing, action=OPERATE_ACTION, rows=named
        )


# --- use cases ----------------------------------------------------------------------------------------------


class JobService:
    """The job APIs' use cases; cheap to build (it holds the process's shared objects)."""

    def __init__(self, *, db: Database, engine: Engine, runner: JobRunner, settings: Settings) -> None:
        self.db = db
        self.engine = engine
        self.runner = runner
        self.settings = settings
        self.tz = settings.tz

    def job_url(self, job_id: int) -> str:
        """Where Node Manager's UI shows the job (``{BK_NODEMAN_HOST}/#/task-list/detail/{id}``)."""
        return f"{self.settings.agent_server_url}/#/task-list/detail/{job_id}"

    def _started(self, started: StartedJob) -> dict[str, Any]:
        return {
            "job_id": started.job_id,
            "job_url": self.job_url(started.job_id),
            "ip_filter": started.ip_filter,
            "subscription_id": started.subscription_id,
            "task_id_list": [started.task_id],
        }

    async def install(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """install_job: validate ``job_type`` and ``hosts``, check the caller's right on their businesses,
        then register the hosts and start the job. All hosts refused: 3801018 with ``data.ip_filter``."""
        problems: dict[str, str] = {}
        job_type = _job_type(params.get("job_type"), INSTALL_TYPES, problems)
        hosts: list[HostRequest] = []
        try:
            hosts = parse_hosts(params.get("hosts"))
        except InvalidInput as exc:
            problems.update(exc.problems)
        if problems:
            raise InvalidInput(problems)
        assert job_type is not None
        if not caller.is_superuser:
            if any(host.transport == "local" for host in hosts):
                raise LocalTransportDenied(username=caller.username)
            # the hosts' businesses as asked, and as they are now: an install moves a host to the one asked
            current = await self.db.call(lambda: self._registered_biz_ids(hosts))
            require_biz(caller, {host.bk_biz_id for host in hosts} | current)
        started = await self.runner.install(
            job_type=job_type, hosts=hosts, created_by=caller.username, from_system=caller.app_code
        )
        return self._started(started)

    async def operate(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """operate_job: ``job_type`` and ``bk_host_id[]`` (``version`` for UPGRADE_AGENT); the caller needs
        the right on the business of every known host. Unknown and busy hosts come back in ``ip_filter``."""
        problems: dict[str, str] = {}
        job_type = _job_type(params.get("job_type"), OPERATE_TYPES, problems)
        raw_ids = params.get("bk_host_id")
        host_ids: list[int] = []
        if isinstance(raw_ids, int | str) and not isinstance(raw_ids, bool):
            raw_ids = [raw_ids]
        if not isinstance(raw_ids, list) or not raw_ids:
            problems["bk_host_id"] = "this field is required: a non-empty list of bk_host_ids"
        else:
            for index, raw in enumerate(raw_ids):
                host_id = int_value(raw, f"bk_host_id[{index}]", problems, maximum=MAX_HOST_ID)
                if host_id is not None:
                    host_ids.append(host_id)
        version = params.get("version")
        if version is not None and version != "":
            if not isinstance(version, str):
                problems["version"] = "must be a version string such as 0.2.0"
            elif job_type is not None and job_type != JobType.UPGRADE_AGENT:
                problems["version"] = f"only UPGRADE_AGENT takes a version, not {job_type}"
        else:
            version = None
        if problems:
            raise InvalidInput(problems)
        assert job_type is not None and (version is None or isinstance(version, str))
        if not caller.is_superuser:  # unknown hosts are refused in ip_filter, not here
            known = await self.db.call(lambda: self._host_biz_ids(host_ids))
            require_biz(caller, set(known.values()))
        started = await self.runner.operate(
            job_type=job_type,
            bk_host_ids=host_ids,
            created_by=caller.username,
            from_system=caller.app_code,
            version=version,
        )
        return self._started(started)

    def _registered_biz_ids(self, hosts: Sequence[HostRequest]) -> set[int]:
        with self.db.session() as session:
            return job_reads.registered_biz_ids(
                session,
                host_ids=[host.bk_host_id for host in hosts if host.bk_host_id is not None],
                addresses=[(host.bk_cloud_id, host.inner_ip, host.inner_ipv6) for host in hosts],
            )

    def _host_biz_ids(self, host_ids: Sequence[int]) -> dict[int, int]:
        with self.db.session() as session:
            return job_reads.host_biz_ids(session, host_ids)

    async def details(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """details_job: the job, its statistics and one page of its instances, filtered by ``conditions``;
        the hosts refused up front follow the page with ``filter_host: true`` (spec §8)."""
        query = parse_details_query(params)
        return await self.db.call(lambda: self._details(caller, query))

    def _details(self, caller: Caller, query: DetailsQuery) -> dict[str, Any]:
        with self.db.session() as session:
            job = job_reads.find_job(session, query.job_id)
            if job is None:
                raise JobNotFound(job_id=query.job_id)
            caller.require_job_view(_access(job))
            instances = job_reads.latest_instances(session, job.job_id)
            chosen = self._filter(instances, query)
            total = len(chosen)
            if query.pagesize == -1:
                page = chosen
            else:
                if query.page > max(1, -(-total // query.pagesize)):
                    raise out_of_range("page", query.page, total=total, pagesize=query.pagesize, noun="instances")
                start = (query.page - 1) * query.pagesize
                page = chosen[start : start + query.pagesize]
            steps = job_reads.steps_of(session, [instance.record_id for instance in page])
            ap_ids = job_reads.host_ap_ids(
                session, [instance.bk_host_id for instance in page if instance.bk_host_id is not None]
            )
        now = utcnow()
        meta = job_meta(job.job_type)
        rows = [self._row(instance, steps[instance.record_id], meta, ap_ids, now) for instance in page]
        rows.extend(self._filtered_rows(job, query))
        statuses = [Status(instance.status) for instance in instances]
        statuses += [_error_host_status(host, Status.IGNORED) for host in job.error_hosts]
        statistics = JobStatistics.count(statuses)
        status = aggregate_job_status(statistics, Status(job.status))
        end_at = job.end_at
        if end_at is None and status not in ACTIVE:  # finished, and the engine has not stored it yet
            end_at = max((i.finish_at for i in instances if i.finish_at is not None), default=now)
        return {
            "job_id": job.job_id,
            "created_by": job.created_by,
            "job_type": job.job_type,
            "job_type_display": JOB_TYPE_DISPLAY.get(job.job_type, job.job_type),
            "ip_filter_list": [host.get("ip", "") for host in job.error_hosts],
            "total": total,
            "list": rows,
            "statistics": {**job.statistics, **statistics.as_dict()},
            "status": status.value,
            "start_time": self._time(job.start_at),
            "end_time": self._time(end_at),
            # whole seconds over the whole run (Node Manager's ``timedelta.seconds`` wraps after a day, §11.14)
            "cost_time": str(int(((end_at or now) - job.start_at).total_seconds())),
            "meta": meta,
            "subscription_id": job.subscription_id,
            "task_id_list": job.task_ids,
        }

    @staticmethod
    def _filter(instances: Sequence[Instance], query: DetailsQuery) -> list[Instance]:
        """The instances meeting every condition of ``query`` (each condition: any of its values)."""
        index = InstanceIndex(instances)
        named = index.record_ids(query.instances) if query.instances else None
        excluded = index.record_ids(query.excluded)
        chosen = []
        for instance in instances:
            if query.statuses and Status(instance.status) not in query.statuses:
                continue
            if (named is not None and instance.record_id not in named) or instance.record_id in excluded:
                continue
            if query.ips:
                host = instance.host
                ips = [str(host.get("bk_host_innerip") or ""), str(host.get("bk_host_innerip_v6") or "")]
                if not any(part in ip for part in query.ips for ip in ips if ip):  # fuzzy, as Node Manager
                    continue
            chosen.append(instance)
        return chosen

    def _row(
        self,
        instance: Instance,
        steps: Sequence[StepState],
        meta: Mapping[str, str],
        ap_ids: Mapping[int, int],
        now: datetime,
    ) -> dict[str, Any]:
        host = instance.host
        inner_ip = host.get("bk_host_innerip") or None
        inner_ipv6 = host.get("bk_host_innerip_v6") or None
        node_id, status_display, step = _current_step(steps, Status(instance.status))
        cost = None
        if instance.start_at is not None:
            cost = ((instance.finish_at or now) - instance.start_at).total_seconds()
        return {
            "instance_id": instance.instance_id,
            "ip": inner_ip or inner_ipv6,
            "inner_ip": inner_ip,
            "inner_ipv6": inner_ipv6,
            "bk_host_id": instance.bk_host_id,
            "bk_cloud_id": host.get("bk_cloud_id"),
            "bk_cloud_name": None,
            "bk_biz_id": host.get("bk_biz_id"),
            "bk_biz_name": None,
            "status": instance.status,
            "status_display": status_display,
            "step": step,
            "node_id": node_id,
            "op_type": meta["op_type"],
            "op_type_display": meta["op_type_display"],
            "start_time": self._time(instance.start_at),
            "end_time": self._time(instance.finish_at),
            "cost_time": cost,
            "is_manual": False,
            "ap_id": ap_ids.get(instance.bk_host_id) if instance.bk_host_id is not None else None,
            "attempt": instance.attempt,
        }

    @staticmethod
    def _filtered_rows(job: JobInfo, query: DetailsQuery) -> list[dict[str, Any]]:
        # Node Manager appends them to every page and filters them by the status condition only (spec §8)
        rows = []
        for host in job.error_hosts:
            status = _error_host_status(host, Status.FAILED)
            if query.statuses and status not in query.statuses:
                continue
            rows.append(
                {
                    "filter_host": True,
                    "bk_host_id": host.get("bk_host_id"),
                    "ip": host.get("ip", ""),
                    "inner_ip": host.get("inner_ip"),
                    "inner_ipv6": host.get("inner_ipv6"),
                    "bk_cloud_id": host.get("bk_cloud_id"),
                    "bk_cloud_name": None,
                    "bk_biz_id": host.get("bk_biz_id"),
                    "bk_biz_name": None,
                    "job_id": job.job_id,
                    "status": status.value,
                    "status_display": host.get("msg", ""),
                    "exception": host.get("exception", ""),
                    "step": "",
                }
            )
        return rows

    def _time(self, at: datetime | None) -> str | None:
        return None if at is None else at.astimezone(self.tz).strftime(TIME_FORMAT)

    async def retry(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """Run the FAILED instances again (those of ``instance_id_list``, default every FAILED one) as a new
        task and attempt; nothing to retry is 3800003."""
        problems: dict[str, str] = {}
        job_id = _job_id(params, problems)
        wanted = _instance_ids(params.get("instance_id_list"), "instance_id_list", problems, allow_single=False)
        if problems:
            raise InvalidInput(problems)

        def choose(job: JobInfo, instances: Sequence[Instance]) -> list[Instance]:
            scope = _pick(job.job_id, instances, wanted) if wanted else instances
            failed = [instance for instance in scope if instance.status == Status.FAILED.value]
            if not failed:
                counts = _status_counts(scope)
                raise Conflict(
                    f"job {job.job_id} has no FAILED instance to retry"
                    f"{' among the given instance_id_list' if wanted else ''} ({counts}); "
                    "only failed instances run again"
                )
            return failed

        job, task_id, _created = await self._run_again(caller, job_id, choose)
        return {"job_id": job.job_id, "task_id_list": [*job.task_ids, task_id]}

    async def retry_node(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """Re-run one instance from its first FAILED step, as a new attempt whose earlier steps are kept as
        they ran; no failed step is 3800007 (无法获取失败任务节点)."""
        problems: dict[str, str] = {}
        job_id = _job_id(params, problems)
        wanted: list[InstanceId] = []
        if params.get("instance_id") in (None, ""):
            problems["instance_id"] = "this field is required (object_type|node_type|type|id, or a bk_host_id)"
        else:
            wanted = _instance_ids(params.get("instance_id"), "instance_id", problems, allow_single=True)
            if isinstance(params.get("instance_id"), list):
                problems["instance_id"] = "must be one instance_id, not a list"
        if problems:
            raise InvalidInput(problems)
        failed_step: list[StepState] = []

        def choose(job: JobInfo, instances: Sequence[Instance]) -> list[Instance]:
            return _pick(job.job_id, instances, wanted)[:1]

        def resume(job: JobInfo, instance: Instance, steps: Sequence[StepState]) -> int:
            failed_step.extend(step for step in steps if step.status == Status.FAILED.value)
            if not failed_step:
                raise NoFailedStep(job_id=job.job_id, instance_id=instance.instance_id, status=instance.status)
            return failed_step[0].index

        _job, _task_id, created = await self._run_again(caller, job_id, choose, resume)
        step = failed_step[0]
        (record_id,) = created.values()
        return {"retry_node_id": f"{record_id}-{step.index}", "retry_node_name": step.name}

    async def _run_again(
        self,
        caller: Caller,
        job_id: int,
        choose: Callable[[JobInfo, Sequence[Instance]], list[Instance]],
        resume: Callable[[JobInfo, Instance, Sequence[StepState]], int] | None = None,
    ) -> tuple[JobInfo, int, dict[str, int]]:
        """Look the job up, check access, let ``choose`` pick the instances (and ``resume`` the step each
        resumes at, keeping the earlier ones), add their next attempt as a new task and hand it to the engine."""

        def prepare() -> tuple[JobInfo, int, dict[str, int], AgentPackage]:
            with self.db.session() as session:
                job = job_reads.find_job(session, job_id, for_update=True)
                if job is None:
                    raise JobNotFound(job_id=job_id)
                caller.require_job_view(_access(job))
                targets = choose(job, job_reads.latest_instances(session, job_id))
                steps = job_reads.steps_of(session, [instance.record_id for instance in targets])
                keep_before = (
                    {i.record_id: resume(job, i, steps[i.record_id]) for i in targets} if resume is not None else {}
                )
                version = job.step_params.get(AGENT_VERSION_PARAM)
                package = packages.choose(self.db, version if isinstance(version, str) else None)
                task_id, created = attempts.add_attempts(
                    session, job=job, instances=targets, steps=steps, keep_before=keep_before
                )
            return job, task_id, created, package

        job, task_id, created, package = await self.db.call(prepare)
        self.engine.submit(job.job_id, task_id, package)
        return job, task_id, created

    async def revoke(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """Stop the job's PENDING and RUNNING instances (those of ``instance_id_list``, default all): running
        steps end FAILED with 已终止 in their log, the job becomes TERMINATED and stays so. Nothing pending
        or running is 3800016."""
        problems: dict[str, str] = {}
        job_id = _job_id(params, problems)
        wanted = _instance_ids(params.get("instance_id_list"), "instance_id_list", problems, allow_single=False)
        if problems:
            raise InvalidInput(problems)

        def targets() -> tuple[JobInfo, list[Instance]]:
            with self.db.session() as session:
                job = job_reads.find_job(session, job_id)
                if job is None:
                    raise JobNotFound(job_id=job_id)
                caller.require_job_view(_access(job))
                instances = job_reads.latest_instances(session, job_id)
            scope = _pick(job_id, instances, wanted) if wanted else instances
            active = [instance for instance in scope if Status(instance.status) in ACTIVE]
            if not active:
                raise NothingRunning(job_id=job_id, subscription_id=job.subscription_id)
            return job, active

        job, active = await self.db.call(targets)
        record_ids = [instance.record_id for instance in active]
        await self.engine.revoke(job_id, record_ids if wanted else None)
        stamp = utcnow().astimezone(self.tz).strftime(LINE_TIME_FORMAT)
        line = f"[{stamp} WARNING] 已终止 (revoked by a user)"

        def finish() -> None:
            with self.db.session() as session:
                # instances no pipeline of this process was running (e.g. queued when it restarted)
                attempts.fail_unfinished(session, record_ids, line=line)
                pipelines.refresh_job(session, job_id=job_id)

        await self.db.call(finish)
        return {"job_id": job.job_id, "task_id_list": job.task_ids}


def _current_step(steps: Sequence[StepState], status: Status) -> tuple[int, str, str]:
    """``(node_id, status_display, step)`` as Node Manager's ``get_current_step_display``: the first RUNNING
    or FAILED step, else the last step (执行成功 when it succeeded, else 等待执行)."""
    for step in steps:
        if step.status == Status.RUNNING.value:
            return step.index, f"正在 {step.name}", step.name
        if step.status == Status.FAILED.value:
            return step.index, f"{step.name} 失败", step.name
    if not steps:
        return -1, STATUS_DISPLAY.get(status, status.value), ""
    last = steps[-1]
    if last.status == Status.SUCCESS.value:
        return last.index, STATUS_DISPLAY[Status.SUCCESS], last.name
    if status == Status.FAILED:  # ended before any step ran (revoked while queued, or the service restarted)
        return -1, STATUS_DISPLAY[Status.FAILED], last.name
    return -1, STATUS_DISPLAY[Status.PENDING], last.name


def _error_host_status(host: Mapping[str, Any], default: Status) -> Status:
    try:
        return Status(host.get("status") or default)
    except ValueError:
        return default


def _status_counts(instances: Sequence[Instance]) -> str:
    counts: dict[str, int] = {}
    for instance in instances:
        counts[instance.status] = counts.get(instance.status, 0) + 1
    return ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "no instances"
