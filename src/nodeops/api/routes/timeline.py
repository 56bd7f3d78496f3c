"""The job timeline (ours): ``GET /api/job/{job_id}/timeline/``, a page of the job's hosts with every step's
status and times and the series of hosts done / failed / running, which the viewer draws (web/static/timeline.js).

The route only hands the query string to ``JobTimeline`` (``service.job_timeline``), which reads it through its
contract; the query parameters are declared here for the OpenAPI description only, from that contract's fields.
A missing trailing slash is accepted, as elsewhere.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from nodeops.api.bodies import refuse_nul
from nodeops.api.deps import CallerDep, ParamsDep, ServicesDep
from nodeops.api.routing import JobIdPath, add_route, respond
from nodeops.api.schemas import JobTimelineResponse
from nodeops.domain.contract import Contract, Field
from nodeops.service.job_timeline import PAGE, PAGESIZE, POINTS, TIMELINE, JobTimeline

router = APIRouter(tags=["job"])
REQUESTS: tuple[Contract, ...] = (TIMELINE,)


def _query(item: Field) -> object:
    """A query parameter described by the contract's ``item`` (read as text: the contract validates it)."""
    return Query(description=f"{item.description} Default {item.default}.")


async def timeline(
    job_id: JobIdPath,
    caller: CallerDep,
    params: ParamsDep,
    services: ServicesDep,
    page: Annotated[str | None, _query(PAGE)] = None,
    pagesize: Annotated[str | None, _query(PAGESIZE)] = None,
    points: Annotated[str | None, _query(POINTS)] = None,
) -> Response:
    refuse_nul(params)
    data = await JobTimeline(services.db, services.settings.tz).timeline(caller, {**params, "job_id": job_id})
    return respond(data)


add_route(
    router,
    "/api/job/{job_id}/timeline/",
    timeline,
    methods=("GET", "HEAD"),
    operation_id="job_timeline",
    summary="A job at a glance: a page of hosts with every step's status and times, and hosts done / failed / "
    "running over time",
    response=JobTimelineResponse,
)
