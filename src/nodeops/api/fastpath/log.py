"""The log API (查询任务实例日志) at its three addresses, served as a bare ASGI path (spec §1.3).

- ESB:       ``GET|POST /api/c/compapi/v2/nodeman/api/job/log/`` (job_id in the query or JSON body)
- nodeman:   ``GET /api/job/{job_id}/log/?instance_id=…``
- API gateway: ``GET /api/bk-nodeman/prod/api/job/{job_id}/log/`` (identity in ``X-Bkapi-Authorization``)

With our ``cursor`` parameter the same addresses answer a tail answer (``LogService.instance_tail``); without
it nothing else is done. The web viewer's session cookie is accepted as on every API (``CommonArgs.gather``).
The language of the answer (``api.language``) is read along with the headers; a request that asks nothing costs
no more than before and gets the seed's Chinese step names.

This is the hottest path of the service, so it does not go through FastAPI's per-request machinery
(routing, dependency injection, response models): ``LogFastPath`` is a pure ASGI middleware that answers these
paths itself and passes every other request on. It still shares its validation (``parse_log_query``) and
use case (``LogService``) with everything else, and ``fastpath.openapi.describe_log_api`` puts it in the OpenAPI
schema.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from starlette.requests import ClientDisconnect

from nodeops import metrics
from nodeops.api.bodies import log_client_gone, read_json_body
from nodeops.api.envelope import error_body, internal_error_body, success_body_encoded
from nodeops.api.fastpath.respond import send_answer
from nodeops.api.language import resolve_language
from nodeops.domain.i18n import DEFAULT_LANGUAGE, LANGUAGE_PARAM, Language
from nodeops.errors import MethodNotAllowed, NodeopsError
from nodeops.service.auth import AUTH_HEADER, WEB_HEADER, CommonArgs
from nodeops.service.container import Services

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ESB_PATH = "/api/c/compapi/v2/nodeman/api/job/log/"
NODEMAN_PATH = "/api/job/{job_id}/log/"
APIGW_PATH = "/api/bk-nodeman/prod/api/job/{job_id}/log/"
_JOB_PATH = re.compile(r"^(?:/api/bk-nodeman/prod)?/api/job/([^/]+)/log/?$")
_ESB_PATHS = frozenset({ESB_PATH, ESB_PATH.rstrip("/")})
_AUTH_HEADER = AUTH_HEADER.encode()
_WEB_HEADER = WEB_HEADER.encode()


class LogFastPath:
    """ASGI app answering the log API's addresses itself; every other request (and lifespan) goes to ``app``.

    It catches its own errors and always answers in the envelope, so it sits outside the framework entirely.
    ``nodeops serve`` on SQLite answers most log requests even before ASGI, in ``api.fastpath.lane``; this is the
    path of everything the lane leaves (POST, HEAD, PostgreSQL, any other server).
    """

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (address := log_address(scope["path"])) is not None:
            started = time.perf_counter()
            methods, path_job_id = address
            body = await self._answer(scope, receive, methods, path_job_id)
            if body is not None:
                await send_answer(send, body)
                route = log_route(scope["path"], path_job_id)
                metrics.http_answered(
                    route, scope["method"], 200, metrics.envelope_code(body), time.perf_counter() - started
                )
            return
        await self.app(scope, receive, send)

    async def _answer(
        self, scope: Scope, receive: Receive, methods: tuple[str, ...], path_job_id: str | None
    ) -> bytes | None:
        """The envelope to answer, or None when the client went away before sending its whole body."""
        language = DEFAULT_LANGUAGE  # until the request is read
        try:
            method = scope["method"]
            if method not in methods and not (method == "HEAD" and "GET" in methods):
                raise MethodNotAllowed(method=method, allowed=methods)
            body = await read_json_body(receive, scope["headers"]) if method == "POST" else None
            client = scope.get("client")
            args, params, language = prepare(
                method, scope["query_string"], scope["headers"], path_job_id, body, client=client[0] if client else ""
            )
            outcome: bytes | Exception = await self.services.logs.answer(args, params, language)
        except ClientDisconnect:
            log_client_gone(scope["method"], scope["path"])
            return None
        except Exception as exc:
            outcome = exc
        return envelope(outcome, scope.get("method"), scope.get("path"), language)


def log_address(path: str) -> tuple[tuple[str, ...], str | None] | None:
    """The methods ``path`` takes and the job id it carries, when it is one of the log API's addresses."""
    if path in _ESB_PATHS:
        return ("GET", "POST"), None
    if path.startswith(("/api/job/", "/api/bk-nodeman/")) and (match := _JOB_PATH.match(path)):
        return ("GET",), match.group(1)
    return None


def log_route(path: str, path_job_id: str | None) -> str:
    """The address template of a log API path (``log_address``'s), the route label of its metrics."""
    if path_job_id is None:
        return ESB_PATH
    return APIGW_PATH if path.startswith("/api/bk-nodeman/") else NODEMAN_PATH


def prepare(
    method: str,
    query_string: bytes,
    headers: Iterable[tuple[bytes, bytes]],
    path_job_id: str | None,
    body: Mapping[str, object] | None,
    *,
    client: str,
) -> tuple[CommonArgs, dict[str, object], Language]:
    """The caller's common args, the request's parameters (the query, then the JSON body's fields, then the job
    id of the path) and the language it asked for (``api.language``); ``client`` is the peer's address. Raises
    NodeopsError (a bad ``X-Bkapi-Authorization`` header)."""
    params: dict[str, object] = parse_query(query_string)
    if body is not None:
        params.update(body)
    auth_header = cookie = web_header = accept_language = None
    for name, value in headers:
        if name == _AUTH_HEADER:
            auth_header = value.decode("latin-1")
        elif name == b"cookie":
            cookie = value.decode("latin-1")
        elif name == _WEB_HEADER:
            web_header = value.decode("latin-1")
        elif name == b"accept-language":
            accept_language = value.decode("latin-1")
    if path_job_id is not None:
        params["job_id"] = path_job_id
    language = DEFAULT_LANGUAGE  # the common case, asked nothing: no call at all
    if cookie is not None or accept_language is not None or LANGUAGE_PARAM in params:
        language = resolve_language(params.get(LANGUAGE_PARAM), cookie, accept_language)
    args = CommonArgs.gather(params, auth_header, cookie=cookie, method=method, web_header=web_header, client=client)
    return args, params, language


def envelope(outcome: bytes | Exception, method: object, path: object, language: Language = DEFAULT_LANGUAGE) -> bytes:
    """The envelope of one answer: its ``data`` JSON, or its error in ``language``; anything unforeseen is logged
    with its traceback and answered 3800500."""
    if isinstance(outcome, bytes):
        return success_body_encoded(outcome)
    if isinstance(outcome, NodeopsError):
        return error_body(outcome, language)
    log.error("unhandled error on %s %s", method, path, exc_info=outcome, extra={"action": "unhandled_error"})
    return internal_error_body(language)


# callers repeat the same encoded values (secrets, instance_ids) on every request
_unquote = lru_cache(maxsize=4096)(unquote)


def parse_query(raw: bytes) -> dict[str, object]:
    """Query parameters as a dict (last value wins); percent-decoding only where a part needs it."""
    params: dict[str, object] = {}
    if not raw:
        return params
    for part in raw.decode("latin-1").split("&"):
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            name, value = _decode(name), _decode(value)
        if name:
            params[name] = value
    return params


def _decode(text: str) -> str:
    """``unquote_plus``, with the escape of instance_ids' ``|`` decoded at once (most parts have no other)."""
    if "+" in text:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    if "%7" in text:
        text = text.replace("%7C", "|").replace("%7c", "|")
    return _unquote(text) if "%" in text else text
