"""How the JSON APIs are routed: ``add_route``, the one way a route is declared (the path, and the same without its
trailing slash); a POST to a use case that gets the services, the authenticated caller and the request's
parameters, answering the envelope (``use_case_endpoint``).

A use case returns the ``data`` of the answer, or a ``ResultStream`` (task_result with every row), which is sent
as a chunked body built batch by batch: the envelope's head, then the rows, then its tail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from nodeops.api.bodies import refuse_nul
from nodeops.api.deps import CallerDep, ParamsDep, ServicesDep
from nodeops.api.envelope import SUCCESS_HEAD, envelope_tail, json_response, success_body
from nodeops.domain.contract import Contract, field_schema
from nodeops.service.auth import Caller
from nodeops.service.container import Services
from nodeops.service.subscriptions import ResultStream

UseCase = Callable[[Services, Caller, dict[str, Any]], Awaitable[Any]]
Endpoint = Callable[..., Awaitable[Response]]
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
    if result.head is not None:
        yield SUCCESS_HEAD + orjson.dumps(result.head)[:-1] + b',"list":['
    else:
        yield SUCCESS_HEAD + b"["
    first = True
    async for rows in result.rows:
        if rows:
            body = orjson.dumps(rows)[1:-1]
            yield body if first else b"," + body
            first = False
    yield (b"]}" if result.head is not None else b"]") + envelope_tail()


def use_case_endpoint(use_case: UseCase, path: str) -> Endpoint:
    """The endpoint of ``path`` that authenticates the caller and hands the request's parameters to ``use_case``
    (``{job_id}`` in the path becomes the parameter ``job_id``), answering the envelope."""
    if "{job_id}" in path:

        async def endpoint_with_job(
            job_id: JobIdPath, caller: CallerDep, params: ParamsDep, services: ServicesDep
        ) -> Response:
            refuse_nul(params)
            return respond(await use_case(services, caller, {**params, "job_id": job_id}))

        return endpoint_with_job

    async def endpoint_without_job(caller: CallerDep, params: ParamsDep, services: ServicesDep) -> Response:
        refuse_nul(params)
        return respond(await use_case(services, caller, params))

    return endpoint_without_job


def add_route(
    router: APIRouter,
    path: str,
    endpoint: Endpoint,
    *,
    operation_id: str,
    summary: str,
    methods: Sequence[str] = ("POST",),
    request: Contract | None = None,
    query: Contract | None = None,
    response: type[BaseModel] | None = None,
    tags: list[str] | None = None,
) -> None:
    """Route ``methods`` on ``path``, and hidden from the schema the same without its trailing slash (HEAD, when
    asked, is hidden too: one operation id per path in the schema). Every route answers the envelope, with
    ``response`` the model of its success; ``request`` is the contract of its JSON body, if any (``api.app`` puts
    each contract's schema in the components); ``query`` the contract of its query string, each of its fields
    described as a query parameter (but ``job_id``, the path's)."""
    ok: dict[str, Any] = {"description": "The envelope; errors too answer HTTP 200 with result false and a code."}
    if response is not None:
        ok["model"] = response
    body: dict[str, Any] | None = None
    if request is not None:
        schema = {"$ref": f"#/components/schemas/{request.name}"}
        body = {"requestBody": {"required": False, "content": {"application/json": {"schema": schema}}}}
    if query is not None:
        body = {
            **(body or {}),
            "parameters": [
                {"name": item.name, "in": "query", "required": item.required, "schema": field_schema(item)}
                for item in query.fields
                if item.name != "job_id"
            ],
        }
    listed = [method for method in methods if method != "HEAD"]
    router.add_api_route(
        path,
        endpoint,
        methods=listed,
        operation_id=operation_id,
        summary=summary,
        responses={200: ok},
        response_class=Response,
        openapi_extra=body,
        tags=tags,  # type: ignore[arg-type]
    )
    bare = path.rstrip("/")
    hidden = [(bare, listed, "no_slash")] if bare != path else []
    if "HEAD" in methods:
        hidden.append((path, ["HEAD"], "head"))
        if bare != path:
            hidden.append((bare, ["HEAD"], "head_no_slash"))
    for variant, variant_methods, suffix in hidden:
        router.add_api_route(
            variant,
            endpoint,
            methods=variant_methods,
            operation_id=f"{operation_id}_{suffix}",
            response_class=Response,
            include_in_schema=False,
        )
