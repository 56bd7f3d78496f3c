"""``POST /api/agent/heartbeat/``: what installed agents call (token in the body, no ESB app)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from nodeops.api.schemas import Envelope
from nodeops.service.agents import accept_heartbeat
from nodeops.service.container import Services

router = APIRouter(tags=["agent"])


@router.post("/api/agent/heartbeat/", response_model=Envelope)
async def heartbeat(request: Request, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """An agent reports it is running, with its version; a wrong token answers 3800403."""
    services: Services = request.app.state.services
    await services.db.call(lambda: accept_heartbeat(services.db, body))
    return {"result": True, "code": 0, "message": "success", "data": None}
