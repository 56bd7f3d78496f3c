"""Helpers of the subscription tests: the backend API's addresses, an inventory builder, polling of task results."""

from __future__ import annotations

import time
from typing import Any

from tests.support.jobs import JobApi

BACKEND = "/backend/api/subscription"
ESB_BACKEND = "/api/c/compapi/v2/nodeman/backend/api/subscription"
INVENTORY = "/api/inventory"
ACTIVE = ("PENDING", "RUNNING")


def topology(biz: int = 2) -> list[dict[str, Any]]:
    """Business ``biz`` with set 10 (modules 100 nginx, 101 db; set template 5) and set 11 (module 110)."""
    return [
        {
            "bk_biz_id": biz,
            "bk_biz_name": f"biz-{biz}",
            "sets": [
                {
                    "bk_set_id": 10 + 100 * (biz - 2),
                    "bk_set_name": "web",
                    "set_template_id": 5,
                    "modules": [
                        {"bk_module_id": 100 + 1000 * (biz - 2), "bk_module_name": "nginx", "service_template_id": 7},
                        {"bk_module_id": 101 + 1000 * (biz - 2), "bk_module_name": "db"},
                    ],
                },
                {
                    "bk_set_id": 11 + 100 * (biz - 2),
                    "bk_set_name": "batch",
                    "modules": [{"bk_module_id": 110 + 1000 * (biz - 2), "bk_module_name": "cron"}],
                },
            ],
        }
    ]


def wait_result(api: JobApi, subscription_id: int, timeout_s: float = 120, **body: Any) -> dict[str, Any]:
    """Poll task_result (page 1 of 100) until no instance is PENDING or RUNNING."""
    deadline = time.monotonic() + timeout_s
    while True:
        data: dict[str, Any] = api.ok(
            f"{BACKEND}/task_result/", {"subscription_id": subscription_id, "page": 1, "pagesize": 100, **body}
        )
        if not any(row["status"] in ACTIVE for row in data["list"]):
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"subscription {subscription_id} still running after {timeout_s} s: {data}")
        time.sleep(0.2)
