"""Log reading beyond the log API (docs/log-reading.md): tail, follow (Server-Sent Events), search, download,
archive and batch, each under ``/api/job/{job_id}/…``.

Routes gather the identity (``ArgsDep``: common args, else the web session cookie) and the parameters, and hand
them to ``LogReading``, which authenticates and validates before anything is sent: an error, even on a stream or
a download, is answered in the envelope. A missing trailing slash is accepted, as elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response, StreamingResponse

from nodeops.api.deps import LanguageDep, ParamsDep, ServicesDep, gather_args
from nodeops.api.envelope import json_response, success_body
from nodeops.api.routing import Endpoint, JobIdPath, add_route
from nodeops.domain.i18n import Language
from nodeops.service.auth import CommonArgs

router = APIRouter(tags=["log reading"])


async def request_args(request: Request, params: ParamsDep) -> CommonArgs:
    return gather_args(request, params)


ArgsDep = Annotated[CommonArgs, Depends(request_args)]
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID")]
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True, slots=True)
class JobRead:
    """What every route here hands to ``LogReading``: the identity, the parameters (the path's job_id among
    them) and the language the answer is in."""

    args: CommonArgs
    params: dict[str, Any]
    language: Language


async def job_read(job_id: JobIdPath, args: ArgsDep, params: ParamsDep, language: LanguageDep) -> JobRead:
    return JobRead(args=args, params={**params, "job_id": job_id}, language=language)


JobReadDep = Annotated[JobRead, Depends(job_read)]


async def _envelope(answer: Awaitable[Any]) -> Response:
    return json_response(success_body(await answer))


async def tail(read: JobReadDep, services: ServicesDep) -> Response:
    return await _envelope(services.reading.tail(read.args, read.params, read.language))


async def stream(read: JobReadDep, services: ServicesDep, last_event_id: LastEventId = None) -> Response:
    events = await services.reading.open_log_stream(read.args, read.params, last_event_id, read.language)
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


async def events(read: JobReadDep, services: ServicesDep, last_event_id: LastEventId = None) -> Response:
    changes = await services.reading.open_job_events(read.args, read.params, last_event_id, read.language)
    return StreamingResponse(changes, media_type="text/event-stream", headers=SSE_HEADERS)


async def search(read: JobReadDep, services: ServicesDep) -> Response:
    return await _envelope(services.reading.search(read.args, read.params, read.language))


def _attachment(name: str, body: AsyncIterator[bytes], media_type: str) -> Response:
    """A download: never kept by a browser's or a proxy's cache (logs may hold what a host should not show)."""
    disposition = f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}"
    headers = {"Content-Disposition": disposition, "Cache-Control": "no-store"}
    return StreamingResponse(body, media_type=media_type, headers=headers)


async def download(read: JobReadDep, services: ServicesDep) -> Response:
    name, body = await services.reading.open_download(read.args, read.params)
    return _attachment(name, body, "text/plain; charset=utf-8")


async def archive(read: JobReadDep, services: ServicesDep) -> Response:
    name, body = await services.reading.open_archive(read.args, read.params)
    return _attachment(name, body, "application/gzip")


async def batch(read: JobReadDep, services: ServicesDep) -> Response:
    return await _envelope(services.reading.batch(read.args, read.params, read.language))


ROUTES: tuple[tuple[str, Endpoint, list[str], str, str], ...] = (
    (
        "/api/job/{job_id}/log/tail/",
        tail,
        ["GET", "HEAD"],
        "job_log_tail",
        "Tail: each step's status and only the log text after `cursor` (empty: from the start)",
    ),
    (
        "/api/job/{job_id}/log/stream/",
        stream,
        ["GET"],
        "job_log_stream",
        "Follow one instance's log as Server-Sent Events: line, step, end; resumes with Last-Event-ID",
    ),
    (
        "/api/job/{job_id}/events/",
        events,
        ["GET"],
        "job_events",
        "Follow a job's status changes as Server-Sent Events: instance, job, end",
    ),
    (
        "/api/job/{job_id}/log/search/",
        search,
        ["GET", "HEAD"],
        "job_log_search",
        "Search the log lines of a job (newest attempt of each instance) or of one instance",
    ),
    (
        "/api/job/{job_id}/log/download/",
        download,
        ["GET"],
        "job_log_download",
        "Download one instance's full log as text (colours kept, other controls dropped), a header line per step",
    ),
    (
        "/api/job/{job_id}/log/archive/",
        archive,
        ["GET"],
        "job_log_archive",
        "Download every instance's log of a job as a .tar.gz, one file per instance",
    ),
    (
        "/api/job/{job_id}/log/batch/",
        batch,
        ["POST"],
        "job_log_batch",
        "Several instances' logs at once (at most 500), or with `tail` their last N lines",
    ),
)
for _path, _endpoint, _methods, _id, _summary in ROUTES:
    add_route(router, _path, _endpoint, methods=_methods, operation_id=_id, summary=_summary)
