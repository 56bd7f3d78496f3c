"""``GET /healthz``: the service is up and can reach its database."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from nodeops.api.schemas import HealthResponse
from nodeops.service.container import Services
from nodeops.store.db import select_one

router = APIRouter(tags=["service"])


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]


@router.get("/healthz", response_model=HealthResponse)
async def healthz(services: ServicesDep) -> dict[str, Any]:
    """Answer once the database answers."""
    await services.db.read(select_one)
    return {"result": True, "code": 0, "message": "success", "data": {"status": "ok"}}
