"""Node Manager's backend subscription API at ``/backend/api/subscription/<action>/`` and at its ESB address
``/api/c/compapi/v2/nodeman/backend/api/subscription/<action>/`` (spec §1.3, §8), all POST.

Routes only pass the request's parameters to ``SubscriptionService``; its models here document the bodies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from nodeops.api.deps import subscription_service
from nodeops.api.routing import add_route, use_case_endpoint
from nodeops.api.schemas import (
    CreateSubscriptionRequest,
    Envelope,
    InstanceStatusRequest,
    RunSubscriptionRequest,
    SubscriptionIdRequest,
    SubscriptionInfoRequest,
    SubscriptionInstancesRequest,
    SwitchSubscriptionRequest,
    TaskResultDetailRequest,
    TaskResultRequest,
    UpdateSubscriptionRequest,
)
from nodeops.service.auth import Caller
from nodeops.service.container import Services
from nodeops.service.subscriptions import SubscriptionService

router = APIRouter(tags=["subscription"])

BACKEND = "/backend/api/subscription"
ESB_BACKEND = "/api/c/compapi/v2/nodeman/backend/api/subscription"
Action = Callable[[SubscriptionService, Caller, dict[str, Any]], Awaitable[Any]]

ACTIONS: tuple[tuple[str, Action, type[BaseModel], str], ...] = (
    ("create", SubscriptionService.create, CreateSubscriptionRequest, "创建订阅: a scope and one agent step"),
    ("info", SubscriptionService.info, SubscriptionInfoRequest, "订阅详情: scope, steps and state"),
    ("update", SubscriptionService.update, UpdateSubscriptionRequest, "更新订阅: new scope and step params"),
    ("delete", SubscriptionService.delete, SubscriptionIdRequest, "删除订阅"),
    ("switch", SubscriptionService.switch, SwitchSubscriptionRequest, "启停订阅: enable or disable"),
    ("run", SubscriptionService.run, RunSubscriptionRequest, "执行订阅: a new task over the scope as it is now"),
    ("revoke", SubscriptionService.revoke, SubscriptionInstancesRequest, "终止订阅任务"),
    ("retry", SubscriptionService.retry, SubscriptionInstancesRequest, "重试失败的实例"),
    ("task_result", SubscriptionService.task_result, TaskResultRequest, "任务执行结果 (task_result_subscription)"),
    ("task_result_detail", SubscriptionService.task_result_detail, TaskResultDetailRequest, "实例执行详情"),
    ("instance_status", SubscriptionService.instance_status, InstanceStatusRequest, "实例状态"),
)
REQUEST_MODELS: tuple[type[BaseModel], ...] = tuple(dict.fromkeys(model for _a, _f, model, _s in ACTIONS))


def _call(action: Action) -> Callable[[Services, Caller, dict[str, Any]], Awaitable[Any]]:
    def call(services: Services, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
        return action(subscription_service(services), caller, params)

    return call


for _name, _action, _request, _summary in ACTIONS:
    for _prefix, _kind in ((BACKEND, "backend"), (ESB_BACKEND, "esb")):
        add_route(
            router,
            f"{_prefix}/{_name}/",
            use_case_endpoint(_call(_action), f"{_prefix}/{_name}/"),
            operation_id=f"{_kind}_subscription_{_name}",
            summary=_summary,
            request=_request,
            response=Envelope,
        )
