"""The web viewer's sign-in (docs/log-reading.md, "Sign-in"): ``POST /web/session/`` with a bk_token sets an
HttpOnly, SameSite=Strict cookie holding it; ``DELETE /web/session/`` clears it.

The cookie is the whole identity of the viewer's requests (``CommonArgs.gather``); it lives as long as the
token, and is not marked Secure because the service speaks plain HTTP on its own address.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from nodeops.api.deps import ParamsDep, ServicesDep
from nodeops.api.envelope import json_response, success_body
from nodeops.service.auth import SESSION_COOKIE, WEB_HEADER
from nodeops.service.web_session import open_session

router = APIRouter(tags=["web"])
PATH = "/web/session/"


async def sign_in(request: Request, params: ParamsDep, services: ServicesDep) -> Response:
    session = await open_session(services, params)
    response = json_response(success_body({"username": session.username, "expires_at": session.expires_at}))
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=session.max_age_s,
        path="/",
        httponly=True,
        samesite="strict",
    )
    return response


async def sign_out() -> Response:
    response = json_response(success_body(None))
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


for _path, _listed in ((PATH, True), (PATH.rstrip("/"), False)):
    router.add_api_route(
        _path,
        sign_in,
        methods=["POST"],
        response_class=Response,
        include_in_schema=_listed,
        operation_id="web_session_open" + ("" if _listed else "_no_slash"),
        summary='Sign in to the web viewer: {"bk_token": …} sets an HttpOnly SameSite=Strict session cookie; '
        f"POSTs with it need the header {WEB_HEADER}: 1",
    )
    router.add_api_route(
        _path,
        sign_out,
        methods=["DELETE"],
        response_class=Response,
        include_in_schema=_listed,
        operation_id="web_session_close" + ("" if _listed else "_no_slash"),
        summary="Sign out of the web viewer: clears the session cookie",
    )
