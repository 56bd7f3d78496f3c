"""``GET /healthz``: the service is up and can reach its database."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from nodeops.api.envelope import json_response, success_body
from nodeops.api.routing import add_route
from nodeops.api.schemas import HealthResponse
from nodeops.service.container import Services
from nodeops.store.db import select_one

router = APIRouter(tags=["service"])


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]


async def healthz(services: ServicesDep) -> Response:
    """Answer once the database answers."""
    await services.db.read(select_one)
    return json_response(success_body({"status": "ok"}))


add_route(
    router,
    "/healthz",
    healthz,
    methods=["GET"],
    operation_id="healthz_healthz_get",
    summary="Healthz",
    response=HealthResponse,
)
