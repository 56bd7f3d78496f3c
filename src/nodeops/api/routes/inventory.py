"""The inventory API, nodeops' own (Node Manager reads CMDB): import and export, host search, topology and
service instances, all POST under ``/api/inventory/``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter

from nodeops.api.deps import inventory_service
from nodeops.api.routing import add_route, use_case_endpoint
from nodeops.api.schemas import Envelope
from nodeops.domain.contract import Contract
from nodeops.service import inventory
from nodeops.service.auth import Caller
from nodeops.service.container import Services
from nodeops.service.inventory import InventoryService

router = APIRouter(tags=["inventory"])

PREFIX = "/api/inventory"
Action = Callable[[InventoryService, Caller, dict[str, Any]], Awaitable[Any]]
ACTIONS: tuple[tuple[str, Action, Contract, str], ...] = (
    ("import", InventoryService.import_inventory, inventory.IMPORT, "Import hosts, topology and services"),
    ("export", InventoryService.export, inventory.EXPORT, "Export the inventory as JSON or CSV"),
    ("hosts", InventoryService.search_hosts, inventory.HOST_SEARCH, "Search hosts, a page at a time"),
    ("topology", InventoryService.topology, inventory.BIZ, "The business → set → module tree"),
    ("service_instances", InventoryService.service_instances, inventory.BIZ, "Service instances"),
)


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
