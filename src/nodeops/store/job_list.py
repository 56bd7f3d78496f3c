"""What job_list reads (spec §8): jobs matching filters, sorted, a page at a time.

Filters on columns are SQL; the business scope (a JSON list) is filtered in Python over the matching jobs' ids
and scopes only, so a page loads full rows for just its own jobs. Imports only ``domain`` and the models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from nodeops.store.models import InstanceRecord, Job

SORT_COLUMNS: dict[str, Any] = {
    "id": Job.id,
    "job_type": Job.job_type,
    "status": Job.status,
    "created_by": Job.created_by,
    "start_time": Job.start_at,
    "end_time": Job.end_at,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFilter:
    job_ids: Sequence[int] = ()
    job_types: Sequence[str] = ()
    statuses: Sequence[str] = ()
    created_by: Sequence[str] = ()
    inner_ips: Sequence[str] = ()
    start_after: datetime | None = None
    start_before: datetime | None = None
    hide_auto_trigger: bool = False
    sort: str = "id"
    descending: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRow:
    job_id: int
    job_type: str
    status: str
    statistics: dict[str, Any]
    created_by: str
    bk_biz_scope: list[int]
    start_at: datetime
    end_at: datetime | None


def list_jobs(
    session: Session, where: JobFilter, *, keep: Callable[[frozenset[int]], bool], offset: int, limit: int | None
) -> tuple[int, list[JobRow]]:
    """The number of jobs matching ``where`` whose business scope ``keep`` accepts, and the page of them from
    ``offset`` (``limit`` None: all), sorted as asked (then by id)."""
    query: Select[Any] = select(Job.id, Job.bk_biz_scope)
    if where.job_ids:
        query = query.where(Job.id.in_(list(where.job_ids)))
    if where.job_types:
        query = query.where(Job.job_type.in_(list(where.job_types)))
    if where.statuses:
        query = query.where(Job.status.in_(list(where.statuses)))
    if where.created_by:
        query = query.where(Job.created_by.in_(list(where.created_by)))
    if where.start_after is not None:
        query = query.where(Job.start_at >= where.start_after)
    if where.start_before is not None:
        query = query.where(Job.start_at <= where.start_before)
    if where.hide_auto_trigger:
        query = query.where(Job.is_auto_trigger.is_(False))
    if where.inner_ips:
        hosts = select(InstanceRecord.job_id).where(
            or_(*(InstanceRecord.host_key.startswith(f"{ip}-", autoescape=True) for ip in where.inner_ips))
        )
        query = query.where(Job.id.in_(hosts))
    column = SORT_COLUMNS[where.sort]
    order = [column.desc() if where.descending else column.asc()]
    if where.sort != "id":
        order.append(Job.id.desc() if where.descending else Job.id.asc())
    ids = [
        int(job_id)
        for job_id, scope in session.execute(query.order_by(*order))
        if keep(frozenset(int(b) for b in scope or ()))
    ]
    page = ids[offset:] if limit is None else ids[offset : offset + limit]
    if not page:
        return len(ids), []
    rows = {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(page)))}
    return len(ids), [
        JobRow(
            job_id=job.id,
            job_type=job.job_type,
            status=job.status,
            statistics=dict(job.statistics or {}),
            created_by=job.created_by,
            bk_biz_scope=[int(b) for b in job.bk_biz_scope or ()],
            start_at=job.start_at,
            end_at=job.end_at,
        )
        for job in (rows[job_id] for job_id in page)
    ]
