"""Node Manager's backend subscription API at ``/backend/api/subscription/<action>/`` and at its ESB address
``/api/c/compapi/v2/nodeman/backend/api/subscription/<action>/`` (spec §1.3, §8), all POST.

Routes only pass the request's parameters to ``SubscriptionService``, which reads them by its contracts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter

from nodeops.api.deps import subscription_service
from nodeops.api.routing import add_route, use_case_endpoint
from nodeops.api.schemas import Envelope
from nodeops.domain.contract import Contract
from nodeops.service import subscriptions
from nodeops.service.auth import Caller
from nodeops.service.container import Services
from nodeops.service.subscriptions import SubscriptionService

router = APIRouter(tags=["subscription"])

BACKEND = "/backend/api/subscription"
ESB_BACKEND = "/api/c/compapi/v2/nodeman/backend/api/subscription"
Action = Callable[[SubscriptionService, Caller, dict[str, Any]], Awaitable[Any]]

ACTIONS: tuple[tuple[str, Action, Contract, str], ...] = (
    ("create", SubscriptionService.create, subscriptions.CREATE, "创建订阅: a scope and one agent step"),
    ("info", SubscriptionService.info, subscriptions.INFO, "订阅详情: scope, steps and state"),
    ("update", SubscriptionService.update, subscriptions.UPDATE, "更新订阅: new scope and step params"),
    ("delete", SubscriptionService.delete, subscriptions.DELETE, "删除订阅"),
    ("switch", SubscriptionService.switch, subscriptions.SWITCH, "启停订阅: enable or disable"),
    ("run", SubscriptionService.run, subscriptions.RUN, "执行订阅: a new task over the scope as it is now"),
    ("revoke", SubscriptionService.revoke, subscriptions.REVOKE, "终止订阅任务"),
    ("retry", SubscriptionService.retry, subscriptions.RETRY, "重试失败的实例"),
    (
        "task_result",
        SubscriptionService.task_result,
        subscriptions.TASK_RESULT,
        "任务执行结果 (task_result_subscription)",
    ),
    ("task_result_detail", SubscriptionService.task_result_detail, subscriptions.TASK_RESULT_DETAIL, "实例执行详情"),
    ("instance_status", SubscriptionService.instance_status, subscriptions.INSTANCE_STATUS, "实例状态"),
)


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
