"""The web viewer's sign-in (docs/log-reading.md, "Sign-in"): ``POST /web/session/`` with a JSON body holding a
bk_token sets an HttpOnly, SameSite=Strict cookie holding a session token minted for it; ``DELETE
/web/session/`` ends that session for good (``service.web_session``) and clears the cookie.

The sign-in takes only ``Content-Type: application/json``, which a cross-site form cannot send: no other site
can sign a browser in as someone else (login CSRF). The cookie is the whole identity of the viewer's requests
(``CommonArgs.gather``); it lives as long as the token, and is not marked Secure because the service speaks
plain HTTP on its own address.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from nodeops.api.deps import ServicesDep, client_address, request_params
from nodeops.api.envelope import json_response, success_body
from nodeops.api.routing import add_route
from nodeops.errors import InvalidInput
from nodeops.service.auth import SESSION_COOKIE, WEB_HEADER, session_token
from nodeops.service.web_session import close_session, open_session

router = APIRouter(tags=["web"])
PATH = "/web/session/"


def require_json(request: Request) -> None:
    """Refuse a sign-in whose body is not declared JSON (a form's, or none): 3800001 naming Content-Type."""
    declared = request.headers.get("content-type", "")
    if declared.split(";", 1)[0].strip().lower() != "application/json":
        shown = declared[:60] or "none"
        raise InvalidInput.field(
            "Content-Type",
            f'must be application/json (was {shown}): send the bk_token as a JSON body, {{"bk_token": "..."}}',
        )


async def sign_in(request: Request, services: ServicesDep) -> Response:
    require_json(request)  # before the body is read: a form's body is refused for what it is
    params = await request_params(request)
    session = await open_session(services, params, client=client_address(request))
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


async def sign_out(request: Request, services: ServicesDep) -> Response:
    token = session_token(request.headers.get("cookie", ""))
    if token:
        await close_session(services, token, client=client_address(request))
    response = json_response(success_body(None))
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


add_route(
    router,
    PATH,
    sign_in,
    operation_id="web_session_open",
    summary='Sign in to the web viewer: a JSON body {"bk_token": …} (Content-Type: application/json only) sets '
    f"an HttpOnly SameSite=Strict session cookie; POSTs with it need the header {WEB_HEADER}: 1",
)
add_route(
    router,
    PATH,
    sign_out,
    methods=["DELETE"],
    operation_id="web_session_close",
    summary="Sign out of the web viewer: ends the session for good and clears its cookie",
)
