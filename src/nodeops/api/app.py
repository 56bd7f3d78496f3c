"""``create_app(settings)``: the FastAPI application with the envelope handlers and the log fast path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

import nodeops
from nodeops.api.envelope import install_handlers
from nodeops.api.fastpath import wrap_app
from nodeops.api.fastpath.openapi import MODELS as LOG_MODELS
from nodeops.api.fastpath.openapi import REQUESTS as LOG_REQUESTS
from nodeops.api.fastpath.openapi import describe_log_api
from nodeops.api.fastpath.request_ids import RequestIds
from nodeops.api.headers import NoSniff
from nodeops.api.http_metrics import HttpMetrics
from nodeops.api.limits import BodyLimit
from nodeops.api.routes import (
    agents,
    health,
    inventory,
    jobs,
    log_reading,
    manual,
    metrics,
    network,
    session,
    subscriptions,
    timeline,
)
from nodeops.service import inventory as inventory_requests
from nodeops.service import subscriptions as subscription_requests
from nodeops.service.container import Services
from nodeops.service.metrics import MetricsReader
from nodeops.settings import Settings
from nodeops.web.viewer import mount_viewer

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    services: Services | None = None,
    *,
    on_started: Callable[[Services], Coroutine[Any, Any, None]] | None = None,
) -> RequestIds:
    """Build the ASGI application; ``services`` defaults to ones built from ``settings``.

    The result is the log fast path wrapped around the heartbeat fast path, wrapped around the FastAPI app:
    log requests and agent heartbeats never enter FastAPI, everything else does; outside them all, each request
    gets its id (``fastpath.request_ids``). Serve it with
    ``http=app.http_protocol``: on SQLite, that protocol answers the log API's GETs before ASGI (``api.fastpath``),
    and on every database it holds clients to the read timeouts and the connection cap.
    ``on_started`` runs in the background once the services have started (``nodeops serve --demo`` runs its
    demo jobs there).
    """
    services = services or Services.build(settings)

    metrics_reader = MetricsReader(services.db, settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        follow_up = asyncio.get_running_loop().create_task(on_started(services)) if on_started else None
        yield
        if follow_up is not None and not follow_up.done():
            follow_up.cancel()
        await metrics_reader.aclose()
        await services.aclose()

    app = FastAPI(
        title="nodeops",
        version=nodeops.__version__,
        description="Operational jobs on fleets of hosts, with the BlueKing Node Manager API.",
        lifespan=lifespan,
        docs_url=None,  # served by the viewer's module, from this package (``mount_viewer``)
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    install_handlers(app)
    app.include_router(health.router)
    app.include_router(agents.router)
    app.include_router(jobs.router)
    app.include_router(log_reading.router)
    app.include_router(session.router)
    app.include_router(subscriptions.router)
    app.include_router(inventory.router)
    app.include_router(network.router)
    app.include_router(manual.router)
    app.include_router(timeline.router)
    app.include_router(metrics.router)
    app.state.metrics = metrics_reader
    mount_viewer(app)  # the log viewer at /, the API's docs at /docs, /web/static/; after the API's routes
    app.add_middleware(BodyLimit)
    app.add_middleware(NoSniff)
    app.add_middleware(HttpMetrics)  # outermost: counts every answer, the other middlewares' too
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return wrap_app(app, services, settings)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the log API's three addresses, which the fast path serves outside the router."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in LOG_MODELS:
        definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(definition.pop("$defs", {}))
        components[model.__name__] = definition
    for contract in (
        *LOG_REQUESTS,
        *jobs.REQUESTS,
        *subscription_requests.REQUESTS,
        *inventory_requests.REQUESTS,
        *network.REQUESTS,
        *manual.REQUESTS,
    ):
        components.update(contract.component_schemas())
        components[contract.name] = contract.json_schema()
    schema["paths"].update(describe_log_api())
    app.openapi_schema = schema
    return schema
