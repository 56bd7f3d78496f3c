"""How the JSON APIs are routed: POST (and the same path without its trailing slash) to a use case that gets the
services, the authenticated caller and the request's parameters, answering the envelope.

A use case returns the ``data`` of the answer, or a ``ResultStream`` (task_result with every row), which is sent
as a chunked body built batch by batch: the envelope's head, then the rows, then its tail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from nodeops.api.bodies import refuse_nul
from nodeops.api.deps import CallerDep, ParamsDep, ServicesDep
from nodeops.api.envelope import json_response, success_body
from nodeops.service.auth import Caller
from nodeops.service.container import Services
from nodeops.service.subscriptions import ResultStream

UseCase = Callable[[Services, Caller, dict[str, Any]], Awaitable[Any]]
JobIdPath = Annotated[
    str,
    Path(description="任务ID: the job_id.", json_schema_extra={"type": "integer", "minimum": 1}),
]


def respond(data: Any) -> Response:
    """The success envelope around ``data``; a ResultStream is streamed."""
    if isinstance(data, ResultStream):
        return StreamingResponse(_stream(data), media_type="application/json")
    return json_response(success_body(data))


async def _stream(result: ResultStream) -> AsyncIterator[bytes]:
    head = b'{"result":true,"code":0,"message":"success","data":'
    if result.head is not None:
        yield head + orjson.dumps(result.head)[:-1] + b',"list":['
    else:
        yield head + b"["
    first = True
    async for rows in result.rows:
        if rows:
            body = orjson.dumps(rows)[1:-1]
            yield body if first else b"," + body
            first = False
    yield b"]}}" if result.head is not None else b"]}"


def add_post(
    router: APIRouter,
    path: str,
    use_case: UseCase,
    *,
    operation_id: str,
    summary: str,
    request: type[BaseModel],
    response: type[BaseModel],
    tags: list[str] | None = None,
) -> None:
    """Route POST ``path`` (and the same without its trailing slash) to ``use_case``; ``{job_id}`` in the path
    becomes the parameter ``job_id``."""
    if "{job_id}" in path:

        async def endpoint_with_job(
            job_id: JobIdPath, caller: CallerDep, params: ParamsDep, services: ServicesDep
        ) -> Response:
            refuse_nul(params)
            return respond(await use_case(services, caller, {**params, "job_id": job_id}))

        endpoint: Callable[..., Awaitable[Response]] = endpoint_with_job
    else:

        async def endpoint_without_job(caller: CallerDep, params: ParamsDep, services: ServicesDep) -> Response:
            refuse_nul(params)
            return respond(await use_case(services, caller, params))

        endpoint = endpoint_without_job
    body = {
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request.__name__}"}}},
        }
    }
    ok = {
        200: {
            "model": response,
            "description": "The envelope; errors too answer HTTP 200 with result false and a code.",
        }
    }
    for variant, listed in ((path, True), (path.rstrip("/"), False)):
        router.add_api_route(
            variant,
            endpoint,
            methods=["POST"],
            operation_id=operation_id if listed else f"{operation_id}_no_slash",
            summary=summary,
            responses=ok,  # type: ignore[arg-type]
            response_class=Response,
            openapi_extra=body,
            include_in_schema=listed,
            tags=tags,  # type: ignore[arg-type]
        )
