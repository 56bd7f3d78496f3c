"""A job at a glance (ours, docs/compatibility.md "The job timeline"): one page of a job's hosts, each with every
step's status and times, and the series of hosts done / failed / running over the job's run, for the viewer's
timeline and chart.

The same order and rules as details_job (``job_details``): the caller is authenticated first (``api.deps``), then
the parameters are validated (every bad field named at once), then the job is looked up (3801012), then the
caller's right to view it (9900403, the same refusal details_job answers). Each step's status and times are
rendered by the log API's own renderer (``domain.answer.AnswerRenderer.step_fields``), so the timeline and the
log API never disagree; the exact instants (``*_ms``, milliseconds since the epoch) are added for drawing. The
page's steps are one query (``store.job_reads.steps_of``). Imports ``store``, ``domain``, ``errors`` and the
services whose rules it shares (``job_details``, ``paging``, ``auth``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

from nodeops.domain.answer import AnswerRenderer, StepLog
from nodeops.domain.contract import JOB_ID, Contract, Field, Kind
from nodeops.domain.status import ACTIVE, Status
from nodeops.errors import JobNotFound
from nodeops.service.auth import Caller
from nodeops.service.job_details import TIME_FORMAT, job_access, settle_job
from nodeops.service.paging import out_of_range
from nodeops.store import job_reads
from nodeops.store.db import Database
from nodeops.store.job_reads import Instance, StepState
from nodeops.store.models import utcnow

MAX_PAGESIZE = 500  # hosts a page: a page's steps are one query and one answer the viewer redraws every second
DEFAULT_PAGESIZE = 100
MAX_POINTS = 300  # the chart's points: bounded whatever the job's length or size
DEFAULT_POINTS = 60
# an instance's latest record in one of these, with a finish time, counts as failed in the chart
FAILED = frozenset({Status.FAILED, Status.PART_FAILED, Status.TERMINATED})

PAGE = Field(name="page", kind=Kind.INT, default=1, description="Page of hosts, from 1.")
PAGESIZE = Field(
    name="pagesize",
    kind=Kind.INT,
    default=DEFAULT_PAGESIZE,
    maximum=MAX_PAGESIZE,
    description=f"Hosts a page, from 1 to {MAX_PAGESIZE}.",
)
POINTS = Field(
    name="points",
    kind=Kind.INT,
    default=DEFAULT_POINTS,
    minimum=2,
    maximum=MAX_POINTS,
    description=f"Points of the done / failed / running series, from 2 to {MAX_POINTS}.",
)
# the query string; job_id is the path's (its OpenAPI description: api.routes.timeline's parameters)
TIMELINE = Contract("JobTimelineRequest", "The job's timeline (nodeops).", (JOB_ID, PAGE, PAGESIZE, POINTS))


def epoch_ms(at: datetime | None) -> int | None:
    """Milliseconds since the epoch of ``at`` (a UTC datetime), or None."""
    return None if at is None else int(at.timestamp() * 1000)


class JobTimeline:
    """The job timeline; cheap to build (it holds the process's shared objects)."""

    def __init__(self, db: Database, tz: tzinfo) -> None:
        self.db = db
        self.tz = tz
        self.renderer = AnswerRenderer(tz)

    async def timeline(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """One page of the job's hosts with their steps, and the chart's series over all of its hosts; raises
        InvalidInput (a bad field, or a page past the last), JobNotFound, PermissionDenied."""
        request = TIMELINE.read(params)
        job_id = request.integer("job_id") or 0
        page = request.integer("page") or 1
        pagesize = request.integer("pagesize") or DEFAULT_PAGESIZE
        points = request.integer("points") or DEFAULT_POINTS
        return await self.db.call(lambda: self._timeline(caller, job_id, page, pagesize, points))

    def _timeline(self, caller: Caller, job_id: int, page: int, pagesize: int, points: int) -> dict[str, Any]:
        with self.db.session() as session:
            job = job_reads.find_job(session, job_id)
            if job is None:
                raise JobNotFound(job_id=job_id)
            caller.require_job_view(job_access(job))
            instances = job_reads.latest_instances(session, job.job_id)
            total = len(instances)
            if page > max(1, -(-total // pagesize)):
                raise out_of_range("page", page, total=total, pagesize=pagesize, noun="hosts")
            shown = instances[(page - 1) * pagesize : page * pagesize]
            steps = job_reads.steps_of(session, [instance.record_id for instance in shown])
        now = utcnow()
        statistics, status, end_at = settle_job(job, instances, now)
        return {
            "job_id": job.job_id,
            "job_type": job.job_type,
            "status": status.value,
            "statistics": statistics.as_dict(),
            "start_time": self._time(job.start_at),
            "end_time": self._time(end_at),
            "start_ms": epoch_ms(job.start_at),
            "end_ms": epoch_ms(end_at),
            "now_ms": epoch_ms(now),
            "total": total,
            "page": page,
            "pagesize": pagesize,
            "list": [self._host(instance, steps[instance.record_id]) for instance in shown],
            "series": series(instances, start_at=job.start_at, end_at=end_at or now, points=points, tz=self.tz),
        }

    def _host(self, instance: Instance, steps: Sequence[StepState]) -> dict[str, Any]:
        host = instance.host
        logs = [
            StepLog(index=s.index, name=s.name, status=s.status, start_at=s.start_at, finish_at=s.finish_at, log="")
            for s in steps
        ]
        rows = []
        for step, fields in zip(steps, self.renderer.step_fields(logs), strict=True):
            del fields["log"]
            fields["index"] = step.index
            fields["start_ms"] = epoch_ms(step.start_at)
            fields["finish_ms"] = epoch_ms(step.finish_at) if fields["finish_time"] is not None else None
            rows.append(fields)
        return {
            "instance_id": instance.instance_id,
            "ip": host.get("bk_host_innerip") or host.get("bk_host_innerip_v6") or None,
            "bk_host_id": instance.bk_host_id,
            "status": instance.status,
            "attempt": instance.attempt,
            "start_time": self._time(instance.start_at),
            "end_time": self._time(instance.finish_at),
            "start_ms": epoch_ms(instance.start_at),
            "end_ms": epoch_ms(instance.finish_at),
            "steps": rows,
        }

    def _time(self, at: datetime | None) -> str | None:
        return None if at is None else at.astimezone(self.tz).strftime(TIME_FORMAT)


def series(
    instances: Sequence[Instance], *, start_at: datetime, end_at: datetime, points: int, tz: tzinfo
) -> dict[str, Any]:
    """Hosts done, failed and running at ``points`` instants evenly spread from ``start_at`` to ``end_at``, from
    each instance's latest record: running from its start until its finish (or now), then done (SUCCESS) or failed
    (FAILED, PART_FAILED, TERMINATED) from its finish. Sorted instants and bisection: O((hosts + points) log hosts).
    """
    starts: list[datetime] = []
    finishes: list[datetime] = []  # of the started ones: a host stops running at its finish
    done: list[datetime] = []
    failed: list[datetime] = []
    for instance in instances:
        status = Status(instance.status)
        if instance.start_at is not None and (instance.finish_at is not None or status in ACTIVE):
            starts.append(instance.start_at)
            if instance.finish_at is not None:
                finishes.append(instance.finish_at)
        if instance.finish_at is not None:
            if status == Status.SUCCESS:
                done.append(instance.finish_at)
            elif status in FAILED:
                failed.append(instance.finish_at)
    for times in (starts, finishes, done, failed):
        times.sort()
    end_at = max(end_at, start_at)
    step = (end_at - start_at) / (points - 1)
    rows = []
    for k in range(points):
        at = end_at if k == points - 1 else start_at + step * k
        rows.append(
            {
                "time": at.astimezone(tz).strftime(TIME_FORMAT),
                "time_ms": epoch_ms(at),
                "done": bisect_right(done, at),
                "failed": bisect_right(failed, at),
                "running": bisect_right(starts, at) - bisect_right(finishes, at),
            }
        )
    return {"interval_s": round(step / timedelta(seconds=1), 3), "points": rows}
