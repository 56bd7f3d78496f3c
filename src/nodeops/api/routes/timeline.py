"""The job timeline (ours): ``GET /api/job/{job_id}/timeline/``, a page of the job's hosts with every step's
status and times and the series of hosts done / failed / running, which the viewer draws (web/static/timeline.js).

The route (``api.routing.use_case_endpoint``) only hands the query string to ``JobTimeline``
(``service.job_timeline``), which reads it through its contract; the same contract describes the query
parameters in the OpenAPI schema (``add_route``'s ``query``).
A missing trailing slash is accepted, as elsewhere.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter

from nodeops.api.routing import add_route, use_case_endpoint
from nodeops.api.schemas import JobTimelineResponse
from nodeops.service.auth import Caller
from nodeops.service.container import Services
from nodeops.service.job_timeline import TIMELINE, JobTimeline

router = APIRouter(tags=["job"])
PATH = "/api/job/{job_id}/timeline/"


def _timeline(services: Services, caller: Caller, params: dict[str, Any]) -> Awaitable[dict[str, Any]]:
    return JobTimeline(services.db, services.settings.tz).timeline(caller, params)


add_route(
    router,
    PATH,
    use_case_endpoint(_timeline, PATH),
    methods=("GET", "HEAD"),
    operation_id="job_timeline",
    summary="A job at a glance: a page of hosts with every step's status and times, and hosts done / failed / "
    "running over time",
    query=TIMELINE,
    response=JobTimelineResponse,
)
