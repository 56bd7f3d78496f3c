"""The agent and host APIs:

- ``POST /api/agent/heartbeat/``: what installed agents call (token in the body, no ESB app). The fast path
  answers it outside FastAPI (``api.fastpath.heartbeat.HeartbeatPath``); the route below is the same endpoint
  for the OpenAPI schema (and for an app mounted without the fast path); both hand the body to
  ``Services.heartbeat_groups``.
- ``POST /api/agent/ping/``: what the 安装 step calls from the host before it starts the agent, to learn whether
  the URL the agent will report to answers (a POST under ``/api/agent/`` so a proxy's relay forwards it too).
- ``POST /api/v2/host/agent_status/`` and ``/api/v2/host/node_statistic/``: the agent statuses, and the hosts,
  of businesses, sets and modules counted (network spec §17).
- ``GET /api/host/proxies/?bk_cloud_id=`` and ``/api/host/biz_proxies/?bk_biz_id=``, also at their ESB addresses
  (``list_cloud_proxies``, ``list_biz_proxies``): the proxy lists (network spec §13.6).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from nodeops.api.deps import ParamsDep, inventory_service
from nodeops.api.envelope import json_response, success_body
from nodeops.api.fastpath.heartbeat import HEARTBEAT_PATH
from nodeops.api.routing import add_route, use_case_endpoint
from nodeops.api.schemas import Envelope
from nodeops.service import inventory
from nodeops.service.auth import Caller
from nodeops.service.container import Services
from nodeops.service.inventory import InventoryService
from nodeops.service.proxies import ProxyService
from nodeops.settings import PING_PATH

router = APIRouter(tags=["agent"])

ESB_HOST = "/api/c/compapi/v2/nodeman/api/host"


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


async def ping(params: ParamsDep) -> Response:
    """The access point answers: the body (a JSON object, ``{}``) is read as every body is, and nothing else is
    checked, so it tells only that the service is reachable."""
    return json_response(success_body({"pong": True}))


add_route(
    router,
    PING_PATH,
    ping,
    operation_id="ping_api_agent_ping__post",
    summary="Reachability check of an access point from a host",
    response=Envelope,
)

Counts = Callable[[InventoryService, Caller, dict[str, Any]], Awaitable[Any]]
COUNTS: tuple[tuple[str, Counts, str], ...] = (
    ("agent_status", InventoryService.agent_status, "Agent statuses of the hosts of each node, counted"),
    ("node_statistic", InventoryService.node_statistic, "Hosts of each node, counted"),
)


def _counts(action: Counts) -> Callable[[Services, Caller, dict[str, Any]], Awaitable[Any]]:
    def call(services: Services, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
        return action(inventory_service(services), caller, params)

    return call


for _name, _count, _summary in COUNTS:
    add_route(
        router,
        f"/api/v2/host/{_name}/",
        use_case_endpoint(_counts(_count), f"/api/v2/host/{_name}/"),
        operation_id=f"host_{_name}",
        summary=_summary,
        request=inventory.NODE_COUNTS,
        response=Envelope,
        tags=["host"],
    )

Proxies = Callable[[ProxyService, Caller, dict[str, Any]], Awaitable[Any]]
PROXIES: tuple[tuple[str, Proxies, str], ...] = (
    ("proxies", ProxyService.cloud_proxies, "The proxies of a cloud area (bk_cloud_id)"),
    ("biz_proxies", ProxyService.biz_proxies, "The proxies of the cloud areas of a business (bk_biz_id)"),
)


def _proxies(action: Proxies) -> Callable[[Services, Caller, dict[str, Any]], Awaitable[Any]]:
    def call(services: Services, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
        return action(ProxyService(services.db), caller, params)

    return call


for _name, _list, _summary in PROXIES:
    for _prefix, _kind in (("/api/host", "nodeman"), (ESB_HOST, "esb")):
        add_route(
            router,
            f"{_prefix}/{_name}/",
            use_case_endpoint(_proxies(_list), f"{_prefix}/{_name}/"),
            operation_id=f"host_{_name}_{_kind}",
            summary=_summary,
            methods=("GET",),
            response=Envelope,
            tags=["host"],
        )
