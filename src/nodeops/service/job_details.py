"""The job details use case (details_job, spec §8): one page of a job's instances with their current step, the
job's statistics and status; and what the job APIs share to read a request: ``parse_job_id``, ``job_meta`` and
the formats. Its display texts are in the caller's language (``Caller.language``, ``domain.i18n``).

Order inside a request as Node Manager (spec §10): the caller is authenticated first (``api.deps``), then the
parameters are validated (every bad field named at once), then the job is looked up (3801012), then the
caller's right to view it is checked (9900403). ``instance_id`` values take every form the log API takes
(``parse_instance_id``), and both host forms find the same instance (``store.instances``). The commands on a job
(install, operate, retry, revoke, retry_node) are in ``job_commands``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from nodeops.domain.contract import JOB_ID, Contract, Field, Kind, read_field
from nodeops.domain.i18n import (
    OP_TYPE_DISPLAY,
    STEP_TYPE_DISPLAY,
    Language,
    display_of,
    job_type_display,
    status_display,
    step_failed_display,
    step_name,
    step_running_display,
)
from nodeops.domain.instance_id import InstanceId, parse_instance_ids
from nodeops.domain.status import ACTIVE, JobStatistics, Status, aggregate_job_status
from nodeops.errors import JobNotFound
from nodeops.service.auth import Caller
from nodeops.service.paging import out_of_range
from nodeops.service.webhooks import notifications
from nodeops.store import instances as store_instances
from nodeops.store import job_reads, webhooks
from nodeops.store.db import Database
from nodeops.store.job_reads import Instance, JobInfo, StepState
from nodeops.store.log_reads import JobAccess
from nodeops.store.models import utcnow

MAX_PAGESIZE = 2**31 - 1
TIME_FORMAT = "%Y-%m-%d %H:%M:%S%z"  # how Node Manager's JSON renders datetimes (spec §1.2)
LINE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

CONDITION_KEYS = ("ip", "instance_id", "status", "exclude_instance_ids")
_LINE_PREFIX = re.compile(r"^\[[^\]]*\] ")  # a log line's "[time LEVEL] "


def job_meta(job_type: str, language: Language = Language.ZH) -> dict[str, str]:
    """``{type, step_type, op_type, op_type_display, step_type_display}`` of a job type, as Node Manager's
    ``unzip_job_type`` splits ``{OP}_{STEP}`` (spec §5.1), its displays in ``language``."""
    op_type, _, step_type = job_type.rpartition("_")
    op_type = op_type.replace("MAIN_", "")
    return {
        "type": step_type,
        "step_type": step_type,
        "op_type": op_type,
        "op_type_display": display_of(OP_TYPE_DISPLAY, op_type, language),
        "step_type_display": display_of(STEP_TYPE_DISPLAY, step_type, language),
    }


# --- validation ---------------------------------------------------------------------------------------------


CONDITION = Contract(
    "DetailsCondition",
    "One filter of details_job; several of one key match any of their values, different keys all.",
    (
        Field(
            name="key",
            kind=Kind.CHOICE,
            required=True,
            choices=CONDITION_KEYS,
            description="ip (part of an IP), instance_id, status (a list) or exclude_instance_ids.",
        ),
        # read by the key's own rule: the use case's
        Field(name="value", kind=Kind.VALUE, required=True, description="A value or a list of values."),
    ),
    documented=(),
)
_DETAILS_FIELDS = (
    Field(name="page", kind=Kind.INT, default=1, maximum=MAX_PAGESIZE, description="Page number, from 1."),
    Field(
        name="pagesize",
        kind=Kind.INT,
        default=10,
        minimum=-1,
        maximum=MAX_PAGESIZE,
        description="Instances per page; -1 for all of them.",
    ),
    Field(
        name="exclude_instance_ids",
        kind=Kind.INSTANCE_IDS,
        description="instance_ids (object_type|node_type|type|id, or bk_host_ids) left out.",
    ),
    Field(
        name="conditions", kind=Kind.OBJECTS, noun="conditions", item=CONDITION, description="Filters of the instances."
    ),
)
DETAILS = Contract(
    "DetailsJobRequest",
    "details_job (查询任务详情) at nodeman's address: job_id is in the path.",
    _DETAILS_FIELDS,
)
ESB_DETAILS = Contract(
    "EsbDetailsJobRequest",
    "details_job at the ESB address: job_id is in the body.",
    (JOB_ID, *_DETAILS_FIELDS),
)


def parse_job_id(params: Mapping[str, object], problems: dict[str, str]) -> int:
    """The required ``job_id`` (a positive integer); 0 with the problem named when it is missing or bad."""
    job_id = read_field(JOB_ID, params.get("job_id"), problems)
    assert job_id is None or isinstance(job_id, int)
    return job_id or 0


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
    request = ESB_DETAILS.gather(params, problems)  # job_id is in the body, or the path's
    job_id = request.integer("job_id") or 0
    page = request.integer("page") or 1
    size = request.integer("pagesize")
    if size == 0 or "pagesize" in problems:
        problems["pagesize"] = f"must be -1 (every instance) or from 1 to {MAX_PAGESIZE}"
    pagesize = size or 10
    ips: list[str] = []
    instances: list[InstanceId] = []
    statuses: set[Status] = set()
    excluded = request.instance_ids("exclude_instance_ids")
    for _index, where, condition in request.objects("conditions"):  # each read by CONDITION
        read = CONDITION.gather(condition, problems, prefix=where)
        key, value = read.text("key"), read["value"]
        # the value is read by the rule of its key
        if key is None:
            continue
        if key == "ip":
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
            instances.extend(parse_instance_ids(value, f"{where}.value", problems, allow_single=True))
        else:
            excluded.extend(parse_instance_ids(value, f"{where}.value", problems, allow_single=True))
    ESB_DETAILS.check(problems)
    return DetailsQuery(
        job_id=job_id,
        page=page,
        pagesize=pagesize,
        ips=tuple(ips),
        instances=tuple(instances),
        statuses=frozenset(statuses),
        excluded=tuple(excluded),
    )


def settle_job(
    job: JobInfo, instances: Sequence[Instance], now: datetime
) -> tuple[JobStatistics, Status, datetime | None]:
    """The job's statistics, status and end as the job APIs show them: counted from its instances' latest records
    and its hosts refused up front; a finished job the engine has not stored as such ends with its last host."""
    statuses = [Status(instance.status) for instance in instances]
    statuses += [_error_host_status(host, Status.IGNORED) for host in job.error_hosts]
    statistics = JobStatistics.count(statuses)
    status = aggregate_job_status(statistics, Status(job.status))
    end_at = job.end_at
    if end_at is None and status not in ACTIVE:  # finished, and the engine has not stored it yet
        end_at = max((i.finish_at for i in instances if i.finish_at is not None), default=now)
    return statistics, status, end_at


def job_access(job: JobInfo) -> JobAccess:
    """What a caller's right to view ``job`` is checked against."""
    return JobAccess(job_id=job.job_id, bk_biz_scope=job.bk_biz_scope)


# --- use case -----------------------------------------------------------------------------------------------


class JobDetails:
    """details_job; cheap to build (it holds the process's shared objects)."""

    def __init__(self, db: Database, tz: tzinfo) -> None:
        self.db = db
        self.tz = tz

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
            caller.require_job_view(job_access(job))
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
            reasons = job_reads.ignored_reasons(
                session, [instance.record_id for instance in page if instance.status == Status.IGNORED.value]
            )
            deliveries = webhooks.deliveries_of(session, job.job_id)
        now = utcnow()
        language = caller.language
        meta = job_meta(job.job_type, language)
        rows = [
            self._row(instance, steps[instance.record_id], meta, ap_ids, now, language, reasons.get(instance.record_id))
            for instance in page
        ]
        rows.extend(self._filtered_rows(job, query))
        statistics, status, end_at = settle_job(job, instances, now)
        return {
            "job_id": job.job_id,
            "created_by": job.created_by,
            "job_type": job.job_type,
            "job_type_display": job_type_display(job.job_type, language),
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
            # nodeops: the webhook deliveries of its ends (service.webhooks), each with every attempt
            "notifications": notifications(deliveries, self._time),
        }

    @staticmethod
    def _filter(instances: Sequence[Instance], query: DetailsQuery) -> list[Instance]:
        """The instances meeting every condition of ``query`` (each condition: any of its values)."""
        named = _record_ids(instances, query.instances) if query.instances else None
        excluded = _record_ids(instances, query.excluded)
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
        language: Language,
        ignored_reason: str | None = None,
    ) -> dict[str, Any]:
        """One instance's row, its displays in ``language``; an instance its job's failure threshold kept from
        starting shows why as its ``status_display`` (a line of its log: as written), as a host refused up front
        does."""
        host = instance.host
        inner_ip = host.get("bk_host_innerip") or None
        inner_ipv6 = host.get("bk_host_innerip_v6") or None
        node_id, display, step = _current_step(steps, Status(instance.status), language)
        if ignored_reason is not None:
            display = _LINE_PREFIX.sub("", ignored_reason, count=1)
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
            "status_display": display,
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
            "batch": instance.batch,  # nodeops: its rolling batch (null: the job has none)
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


def _record_ids(instances: Sequence[Instance], wanted: Sequence[InstanceId]) -> set[int]:
    """The records of the instances among ``wanted`` that the job has."""
    return {found.record_id for found in store_instances.pick(instances, wanted) if found is not None}


def _current_step(steps: Sequence[StepState], status: Status, language: Language) -> tuple[int, str, str]:
    """``(node_id, status_display, step)`` as Node Manager's ``get_current_step_display``, in ``language``: the
    first RUNNING or FAILED step, else the last step (执行成功 when it succeeded, else 等待执行); a step IGNORED
    (the job's failure threshold kept the host from starting) is the current one too."""
    for step in steps:
        if step.status == Status.IGNORED.value:
            return step.index, status_display(Status.IGNORED, language), step_name(step.name, language)
        if step.status == Status.RUNNING.value:
            name = step_name(step.name, language)
            return step.index, step_running_display(name, language), name
        if step.status == Status.FAILED.value:
            name = step_name(step.name, language)
            return step.index, step_failed_display(name, language), name
    if not steps:
        return -1, status_display(status, language), ""
    last = steps[-1]
    name = step_name(last.name, language)
    if last.status == Status.SUCCESS.value:
        return last.index, status_display(Status.SUCCESS, language), name
    if status == Status.FAILED:  # ended before any step ran (revoked while queued, or the service restarted)
        return -1, status_display(Status.FAILED, language), name
    return -1, status_display(Status.PENDING, language), name


def _error_host_status(host: Mapping[str, Any], default: Status) -> Status:
    try:
        return Status(host.get("status") or default)
    except ValueError:
        return default
