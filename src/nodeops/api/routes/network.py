"""The network APIs (network spec §12, §14, §15): cloud areas, access points and install channels, at Node
Manager's SaaS addresses (``/api/cloud/``, ``/api/ap/``, ``/api/install_channel/``, with their verbs) and the ESB
names the legacy ESB publishes (``cloud_list``, ``list_cloud_area``, ``create_cloud_area``, ``ap_list``).

An object's id in the path (``{bk_cloud_id}``, ``{ap_id}``, ``{channel_id}``) is read by the use case's contract
like any parameter, so a bad one is a 3800001 naming it. Fixed paths (``/api/ap/ap_is_using/``) are routed before
the ``{ap_id}`` they would otherwise match.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response

from nodeops.api.bodies import refuse_nul
from nodeops.api.deps import CallerDep, ParamsDep, ServicesDep
from nodeops.api.routing import Endpoint, add_route, respond
from nodeops.api.schemas import Envelope
from nodeops.domain.contract import Contract
from nodeops.service import access_points, cloud_areas, install_channels
from nodeops.service.access_points import AccessPointService
from nodeops.service.auth import Caller
from nodeops.service.cloud_areas import CloudAreaService
from nodeops.service.container import Services
from nodeops.service.install_channels import InstallChannelService

router = APIRouter(tags=["network"])

ESB_API = "/api/c/compapi/v2/nodeman/api"
REQUESTS: tuple[Contract, ...] = (
    *cloud_areas.REQUESTS,
    *access_points.REQUESTS,
    *install_channels.REQUESTS,
)
Call = Callable[[Services, Caller, dict[str, Any]], Awaitable[Any]]
IdPath = Annotated[str, Path(description="The object's id.", json_schema_extra={"type": "integer", "minimum": 0})]


def _areas(method: Callable[[CloudAreaService, Caller, dict[str, Any]], Awaitable[Any]]) -> Call:
    return lambda services, caller, params: method(CloudAreaService(services.db), caller, params)


def _aps(method: Callable[[AccessPointService, Caller, dict[str, Any]], Awaitable[Any]]) -> Call:
    def call(services: Services, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
        return method(AccessPointService(services.db, services.settings, services.jobs.box), caller, params)

    return call


def _channels(method: Callable[[InstallChannelService, Caller, dict[str, Any]], Awaitable[Any]]) -> Call:
    return lambda services, caller, params: method(InstallChannelService(services.db), caller, params)


def _endpoint(call: Call, id_name: str | None) -> Endpoint:
    """The endpoint handing the request's parameters (with the path's ``id_name``, if any) to ``call``. The path's
    id is declared under its own name (the signature says so to FastAPI, for the schema) and read as text: the use
    case's contract reads it, so a bad one is named like any other field."""

    async def endpoint(caller: CallerDep, params: ParamsDep, services: ServicesDep, **path: str) -> Response:
        refuse_nul(params)
        return respond(await call(services, caller, {**params, **path}))

    listed = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation)
        for name, annotation in (("caller", CallerDep), ("params", ParamsDep), ("services", ServicesDep))
    ]
    if id_name is not None:
        listed.append(inspect.Parameter(id_name, inspect.Parameter.KEYWORD_ONLY, annotation=IdPath))
    endpoint.__signature__ = inspect.Signature(listed, return_annotation=Response)  # type: ignore[attr-defined]
    return endpoint


CLOUD = "/api/cloud/{bk_cloud_id}/"
AP = "/api/ap/{ap_id}/"
CHANNEL = "/api/install_channel/{channel_id}/"
# path, methods, operation id, summary, use case, the request's contract (its body)
Route = tuple[str, tuple[str, ...], str, str, Call, Contract | None]
ROUTES: tuple[Route, ...] = (
    (
        "/api/cloud/",
        ("GET",),
        "cloud_list",
        "管控区域列表 (cloud_list): ?with_default_area=",
        _areas(CloudAreaService.list_areas),
        None,
    ),
    (
        "/api/cloud/",
        ("POST",),
        "cloud_create",
        "创建管控区域",
        _areas(CloudAreaService.create),
        cloud_areas.CLOUD_CREATE,
    ),
    (CLOUD, ("GET",), "cloud_retrieve", "管控区域详情", _areas(CloudAreaService.retrieve), None),
    (CLOUD, ("PUT",), "cloud_update", "编辑管控区域", _areas(CloudAreaService.update), cloud_areas.CLOUD_UPDATE),
    (CLOUD, ("DELETE",), "cloud_destroy", "删除管控区域", _areas(CloudAreaService.destroy), None),
    (
        "/api/cloud/{bk_cloud_id}/biz/",
        ("GET",),
        "cloud_biz",
        "管控区域下主机的业务",
        _areas(CloudAreaService.biz),
        None,
    ),
    (f"{ESB_API}/cloud/", ("GET",), "esb_cloud_list", "cloud_list (ESB)", _areas(CloudAreaService.list_areas), None),
    (
        f"{ESB_API}/cloud/list_cloud_area/",
        ("GET",),
        "esb_list_cloud_area",
        "list_cloud_area (ESB)",
        _areas(CloudAreaService.list_areas),
        None,
    ),
    (
        f"{ESB_API}/cloud/create_cloud_area/",
        ("POST",),
        "esb_create_cloud_area",
        "create_cloud_area (ESB)",
        _areas(CloudAreaService.create),
        cloud_areas.CLOUD_CREATE,
    ),
    ("/api/ap/", ("GET",), "ap_list", "接入点列表 (ap_list)", _aps(AccessPointService.list_access_points), None),
    (
        "/api/ap/",
        ("POST",),
        "ap_create",
        "创建接入点 (superusers)",
        _aps(AccessPointService.create),
        access_points.AP_CREATE,
    ),
    ("/api/ap/ap_is_using/", ("GET",), "ap_is_using", "管控区域使用中的接入点", _aps(AccessPointService.in_use), None),
    (
        "/api/ap/test/",
        ("POST",),
        "ap_test",
        "接入点可用性测试 (superusers)",
        _aps(AccessPointService.test),
        access_points.AP_TEST,
    ),
    (AP, ("GET",), "ap_retrieve", "接入点详情", _aps(AccessPointService.retrieve), None),
    (AP, ("PUT",), "ap_update", "编辑接入点 (superusers)", _aps(AccessPointService.update), access_points.AP_UPDATE),
    (AP, ("DELETE",), "ap_destroy", "删除接入点 (superusers)", _aps(AccessPointService.destroy), None),
    (f"{ESB_API}/ap/", ("GET",), "esb_ap_list", "ap_list (ESB)", _aps(AccessPointService.list_access_points), None),
    (
        "/api/install_channel/",
        ("GET",),
        "install_channel_list",
        "安装通道列表: ?with_hidden=",
        _channels(InstallChannelService.list_channels),
        None,
    ),
    (
        "/api/install_channel/",
        ("POST",),
        "install_channel_create",
        "创建安装通道",
        _channels(InstallChannelService.create),
        install_channels.CHANNEL_CREATE,
    ),
    (
        CHANNEL,
        ("PUT",),
        "install_channel_update",
        "编辑安装通道",
        _channels(InstallChannelService.update),
        install_channels.CHANNEL_UPDATE,
    ),
    (
        CHANNEL,
        ("DELETE",),
        "install_channel_destroy",
        "删除安装通道",
        _channels(InstallChannelService.destroy),
        install_channels.CHANNEL_DELETE,
    ),
)
_IDS = {"{bk_cloud_id}": "bk_cloud_id", "{ap_id}": "ap_id", "{channel_id}": "channel_id"}
for _path, _methods, _id, _summary, _call, _request in ROUTES:
    _id_name = next((name for marker, name in _IDS.items() if marker in _path), None)
    add_route(
        router,
        _path,
        _endpoint(_call, _id_name),
        operation_id=_id,
        summary=_summary,
        methods=_methods,
        request=_request,
        response=Envelope,
    )
