"""job_list (任务历史, spec §8): the jobs a caller may see, filtered, sorted and paged.

As Node Manager, the list is filtered by the caller's businesses instead of failing (spec §10): a job is listed
when the caller is a superuser or holds every business of its scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from nodeops.domain.contract import Contract, Field, Kind
from nodeops.domain.i18n import JOB_TYPE_DISPLAY, Language, job_type_display
from nodeops.domain.params import MAX_BIGINT, MAX_INT32
from nodeops.domain.status import ACTIVE, Status
from nodeops.service.auth import Caller
from nodeops.service.job_details import TIME_FORMAT
from nodeops.store import job_list
from nodeops.store.db import Database
from nodeops.store.models import utcnow

MAX_PAGESIZE = 1000
MAX_LIST = 500
MAX_IP_CHARS = 64  # an IPv6 address is at most 45 characters
_TIME_INPUTS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d")


_SORT = {
    "properties": {
        "head": {
            "default": "id",
            "description": "id, job_type, status, created_by, start_time or end_time.",
            "title": "Head",
            "type": "string",
        },
        "sort_type": {"default": "DEC", "description": "ASC or DEC.", "title": "Sort Type", "type": "string"},
    },
    "title": "JobListSort",
    "type": "object",
}


def _filter(name: str, kind: Kind = Kind.LIST, *, minimum: int = 1, maximum: int = MAX_BIGINT) -> Field:
    """A list filter: at most MAX_LIST values, blank ones skipped (a single value is a list of itself)."""
    return Field(
        name=name, kind=kind, noun="values", max_items=MAX_LIST, skip_blank=True, minimum=minimum, maximum=maximum
    )


JOB_LIST = Contract(
    "JobListRequest",
    "job_list (任务历史): the jobs the caller may view, filtered, sorted and paged.",
    (
        Field(name="page", kind=Kind.INT, default=1),
        Field(name="pagesize", kind=Kind.INT, default=10, minimum=-1, description="-1: every job; at most 1000."),
        _filter("job_id", Kind.INT_LIST),
        _filter("job_type"),
        _filter("status"),
        _filter("created_by"),
        _filter("bk_biz_id", Kind.INT_LIST, minimum=0, maximum=MAX_INT32),
        _filter("inner_ip_list"),
        Field(name="start_time", kind=Kind.TEXT, description="Jobs started at or after (YYYY-MM-DD HH:MM:SS)."),
        Field(name="end_time", kind=Kind.TEXT, description="Jobs started at or before (YYYY-MM-DD HH:MM:SS)."),
        Field(name="sort", kind=Kind.OBJECT, schema={"$ref": "#/components/schemas/JobListSort"}),
        Field(name="hide_auto_trigger_job", kind=Kind.TEXT, default=False, schema={"type": "boolean"}),
    ),
    components={"JobListSort": _SORT},
)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobListQuery:
    where: job_list.JobFilter
    bk_biz_ids: frozenset[int]  # empty: any business
    offset: int
    limit: int | None  # None: every job


def parse_job_list_query(params: Mapping[str, object], tz: tzinfo) -> JobListQuery:
    """A job_list request's filters, sort and page; one InvalidInput names every bad field."""
    problems: dict[str, str] = {}
    values = JOB_LIST.gather(params, problems)
    page = values.integer("page")
    pagesize = values.integer("pagesize")
    if pagesize is not None and (pagesize == 0 or pagesize > MAX_PAGESIZE):
        problems["pagesize"] = f"must be -1 (every job) or from 1 to {MAX_PAGESIZE}"
    job_ids = values.integers("job_id")
    job_types = [str(t) for _where, t in values.items("job_type")]
    known_types = JOB_TYPE_DISPLAY[Language.ZH]
    unknown = [t for t in job_types if t not in known_types]
    if unknown:
        problems["job_type"] = f"{unknown[0]!r} must be one of {', '.join(sorted(known_types))}"
    statuses = [str(s) for _where, s in values.items("status")]
    known = {s.value for s in Status}
    if any(s not in known for s in statuses):
        problems["status"] = f"must be a list of statuses among {', '.join(s.value for s in Status)}"
    created_by = [str(u) for _where, u in values.items("created_by")]
    biz_ids = values.integers("bk_biz_id")
    inner_ips = _ips(values.items("inner_ip_list"), problems)
    start_after = _time(values["start_time"], "start_time", tz, problems)
    start_before = _time(values["end_time"], "end_time", tz, problems)
    sort, descending = "id", True
    raw_sort = values["sort"]
    if raw_sort not in (None, "", {}):
        if not isinstance(raw_sort, dict):
            problems["sort"] = 'must be an object {"head": ..., "sort_type": "ASC" or "DEC"}'
        else:
            sort = str(raw_sort.get("head") or "id")
            if sort not in job_list.SORT_COLUMNS:
                problems["sort.head"] = f"{sort!r} must be one of {', '.join(job_list.SORT_COLUMNS)}"
                sort = "id"
            sort_type = str(raw_sort.get("sort_type") or "DEC").upper()
            if sort_type not in ("ASC", "DEC"):
                problems["sort.sort_type"] = f"{sort_type!r} must be ASC or DEC"
            descending = sort_type != "ASC"
    hide = values["hide_auto_trigger_job"]
    if hide != "" and not isinstance(hide, bool) and str(hide).lower() not in ("true", "false", "1", "0"):
        problems["hide_auto_trigger_job"] = "must be true or false"
    JOB_LIST.check(problems)
    where = job_list.JobFilter(
        job_ids=job_ids,
        job_types=job_types,
        statuses=statuses,
        created_by=created_by,
        inner_ips=inner_ips,
        start_after=start_after,
        start_before=start_before,
        hide_auto_trigger=hide is True or str(hide).lower() in ("true", "1"),
        sort=sort,
        descending=descending,
    )
    assert page is not None and pagesize is not None
    limit = None if pagesize == -1 else pagesize
    return JobListQuery(where=where, bk_biz_ids=frozenset(biz_ids), offset=(page - 1) * (limit or 0), limit=limit)


async def list_jobs(db: Database, tz: tzinfo, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
    """``{total, list}``: the jobs matching the request that ``caller`` may view."""
    query = parse_job_list_query(params, tz)

    def visible(scope: frozenset[int]) -> bool:
        if query.bk_biz_ids and not scope & query.bk_biz_ids:
            return False
        return caller.is_superuser or scope <= caller.biz_ids

    def read() -> tuple[int, list[job_list.JobRow]]:
        with db.session() as session:
            return job_list.list_jobs(session, query.where, keep=visible, offset=query.offset, limit=query.limit)

    total, rows = await db.call(read)
    now = utcnow()
    return {"total": total, "list": [_row(row, tz, now, caller.language) for row in rows]}


def _row(job: job_list.JobRow, tz: tzinfo, now: datetime, language: Language) -> dict[str, Any]:
    end_at = job.end_at if Status(job.status) not in ACTIVE else None
    return {
        "id": job.job_id,
        "job_type": job.job_type,
        "job_type_display": job_type_display(job.job_type, language),
        "status": job.status,
        "statistics": job.statistics,
        "created_by": job.created_by,
        "bk_biz_scope": job.bk_biz_scope,
        "start_time": job.start_at.astimezone(tz).strftime(TIME_FORMAT),
        "end_time": None if end_at is None else end_at.astimezone(tz).strftime(TIME_FORMAT),
        "cost_time": str(int(((end_at or now) - job.start_at).total_seconds())),
    }


def _ips(items: list[tuple[str, object]], problems: dict[str, str]) -> list[str]:
    """inner_ip_list: IP addresses as text, blank ones skipped; each is matched in a LIKE pattern, which SQLite
    refuses past 50,000 bytes, so anything longer than an address is refused here."""
    ips: list[str] = []
    for where, item in items:
        ip = item.strip() if isinstance(item, str) else None
        if ip is None or len(ip) > MAX_IP_CHARS:
            problems[where] = f"must be an IP address: text of at most {MAX_IP_CHARS} characters"
        elif ip:
            ips.append(ip)
    return ips


def _time(value: object, name: str, tz: tzinfo, problems: dict[str, str]) -> datetime | None:
    if value is None or value == "":
        return None
    for fmt in _TIME_INPUTS:
        try:
            return datetime.strptime(str(value).strip(), fmt).replace(tzinfo=tz)
        except ValueError:
            continue
    problems[name] = f"{str(value)[:40]!r} must be YYYY-MM-DD HH:MM:SS (or YYYY-MM-DD)"
    return None
