"""``POST /api/agent/heartbeat/``: what installed agents call (token in the body, no ESB app).

The fast path answers it outside FastAPI (``api.fastpath.heartbeat.HeartbeatPath``); the route below is the
same endpoint for the OpenAPI schema (and for an app mounted without the fast path); both hand the body to
``Services.heartbeat_groups``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from nodeops.api.envelope import json_response, success_body
from nodeops.api.fastpath.heartbeat import HEARTBEAT_PATH
from nodeops.api.routing import add_route
from nodeops.api.schemas import Envelope
from nodeops.service.container import Services

router = APIRouter(tags=["agent"])


async def heartbeat(request: Request, body: Annotated[dict[str, Any], Body()]) -> Response:
    """An agent reports it is running, with its version; a wrong token answers 3800403."""
    services: Services = request.app.state.services
    await services.heartbeat_groups.receive(body)
    return json_response(success_body(None))


add_route(
    router,
    HEARTBEAT_PATH,
    heartbeat,
    operation_id="heartbeat_api_agent_heartbeat__post",
    summary="Heartbeat",
    response=Envelope,
)
