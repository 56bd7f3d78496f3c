"""The response envelope ``{result, code, message, data, request_id}`` and the only exception handlers (spec §1.2).

Every envelope ends with ``request_id``, as ESB adds it to every body it forwards: the id of the request being
answered (``nodeops.request_context``), which its log records carry too. Bodies built outside any request (a
test, the connection guard's refusals before a request exists) get a fresh one.

HTTP status is 200 for business errors, as the original. Node Manager appends its code to every error message
in full-width parentheses (``"…（3801012）"``); ESB's own 1306xxx errors do not. Anything unforeseen is logged
with its traceback and answered with 3800500, never a 500 page. A message is in the language the request asked
for (``api.language``): in English, its Chinese phrases are replaced and its facts kept; the code suffix is the
same in both. A client that goes away before its body has
arrived is no error of ours: it is logged in one line, without a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from nodeops.api.bodies import log_client_gone
from nodeops.api.headers import NOSNIFF
from nodeops.api.language import request_language
from nodeops.domain.i18n import DEFAULT_LANGUAGE, Language, translate_message
from nodeops.errors import (
    ESB_CODES,
    ErrorCode,
    InvalidInput,
    MethodNotAllowed,
    NodeopsError,
    RouteNotFound,
)
from nodeops.request_context import current_request_id, new_request_id

log = logging.getLogger(__name__)
# the headers of the answers written outside the framework, whose own answers get NOSNIFF from ``NoSniff``
JSON_HEADERS = [(b"content-type", b"application/json"), NOSNIFF]
INTERNAL_MESSAGE = "系统错误，请联系管理员 (internal error; the server log has the details)"


SUCCESS_HEAD = b'{"result":true,"code":0,"message":"success","data":'
_TAIL_HEAD = b',"request_id":"'


def request_id() -> str:
    """The id the envelope being built carries: the current request's, or a fresh one outside any request."""
    return current_request_id() or new_request_id()


def envelope_tail() -> bytes:
    """The envelope's last member, ``"request_id"``, with the closing brace: spliced after ``data`` (or
    ``errors``) into bodies encoded in parts, so that nothing already encoded is encoded again."""
    return _TAIL_HEAD + request_id().encode() + b'"}'


def success_body(data: Any) -> bytes:
    return orjson.dumps({"result": True, "code": 0, "message": "success", "data": data, "request_id": request_id()})


def success_body_encoded(data_json: bytes) -> bytes:
    """The success envelope around ``data`` that is already JSON (the log API's cached bodies)."""
    return SUCCESS_HEAD + data_json + envelope_tail()


def error_payload(exc: NodeopsError, language: Language = DEFAULT_LANGUAGE) -> dict[str, Any]:
    """The envelope of an error, its message in ``language`` (``domain.i18n.translate_message``)."""
    code = exc.code
    text = translate_message(exc.message, language)
    message = text if code in ESB_CODES else f"{text}（{int(code)}）"
    return _error(int(code), message, exc.data)


def _error(code: int, message: str, data: Any) -> dict[str, Any]:
    return {"result": False, "code": code, "message": message, "data": data, "errors": None, "request_id": request_id()}


def error_body(exc: NodeopsError, language: Language = DEFAULT_LANGUAGE) -> bytes:
    return orjson.dumps(error_payload(exc, language))


def internal_error_body(language: Language = DEFAULT_LANGUAGE) -> bytes:
    message = f"{translate_message(INTERNAL_MESSAGE, language)}（{int(ErrorCode.INTERNAL)}）"
    return orjson.dumps(_error(int(ErrorCode.INTERNAL), message, None))


def json_response(body: bytes) -> Response:
    return Response(content=body, media_type="application/json")


def install_handlers(app: FastAPI) -> None:
    """Register the envelope handlers on the FastAPI app."""

    async def on_nodeops_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NodeopsError)
        return json_response(error_body(exc, request_language(request)))

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems: dict[str, str] = {}
        for error in exc.errors():
            field = ".".join(str(part) for part in error.get("loc", ())[1:]) or "body"
            problems.setdefault(field, str(error.get("msg", "invalid")))
        return json_response(error_body(InvalidInput(problems), request_language(request)))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error: NodeopsError
        if exc.status_code == 404:
            error = RouteNotFound(path=request.url.path)
        elif exc.status_code == 405:
            allowed = tuple((exc.headers or {}).get("Allow", "GET").split(", "))
            error = MethodNotAllowed(method=request.method, allowed=allowed)
        else:
            widened = 3800000 + exc.status_code
            return json_response(orjson.dumps(_error(widened, f"{exc.detail}（{widened}）", None)))
        return json_response(error_body(error, request_language(request)))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error(
            "unhandled error on %s %s",
            request.method,
            request.url.path,
            exc_info=exc,
            extra={"action": "unhandled_error"},
        )
        return json_response(internal_error_body(request_language(request)))

    async def on_client_gone(request: Request, _exc: Exception) -> Response:
        log_client_gone(request.method, request.url.path)
        return Response(status_code=204)  # sent nowhere: uvicorn drops what is sent to a closed connection

    app.add_exception_handler(NodeopsError, on_nodeops_error)
    app.add_exception_handler(ClientDisconnect, on_client_gone)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
