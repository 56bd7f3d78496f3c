"""The inventory API, nodeops' own (Node Manager reads CMDB): import and export, host search, topology and
service instances, all POST under ``/api/inventory/``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from nodeops.api.deps import inventory_service
from nodeops.api.routing import add_route, use_case_endpoint
from nodeops.api.schemas import (
    BizRequest,
    Envelope,
    HostSearchRequest,
    InventoryExportRequest,
    InventoryImportRequest,
)
from nodeops.service.auth import Caller
from nodeops.service.container import Services
from nodeops.service.inventory import InventoryService

router = APIRouter(tags=["inventory"])

PREFIX = "/api/inventory"
Action = Callable[[InventoryService, Caller, dict[str, Any]], Awaitable[Any]]
ACTIONS: tuple[tuple[str, Action, type[BaseModel], str], ...] = (
    ("import", InventoryService.import_inventory, InventoryImportRequest, "Import hosts, topology and services"),
    ("export", InventoryService.export, InventoryExportRequest, "Export the inventory as JSON or CSV"),
    ("hosts", InventoryService.search_hosts, HostSearchRequest, "Search hosts, a page at a time"),
    ("topology", InventoryService.topology, BizRequest, "The business → set → module tree"),
    ("service_instances", InventoryService.service_instances, BizRequest, "Service instances"),
)
REQUEST_MODELS: tuple[type[BaseModel], ...] = tuple(dict.fromkeys(model for _a, _f, model, _s in ACTIONS))


def _call(action: Action) -> Callable[[Services, Caller, dict[str, Any]], Awaitable[Any]]:
    def call(services: Services, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
        return action(inventory_service(services), caller, params)

    return call


for _name, _action, _request, _summary in ACTIONS:
    add_route(
        router,
        f"{PREFIX}/{_name}/",
        use_case_endpoint(_call(_action), f"{PREFIX}/{_name}/"),
        operation_id=f"inventory_{_name}",
        summary=_summary,
        request=_request,
        response=Envelope,
    )
