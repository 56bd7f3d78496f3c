"""The OpenAPI description of what the fast path serves outside the router: the log API's three addresses.

``api.app`` adds these path items, and the models they refer to (``MODELS``), to FastAPI's schema. The
heartbeat needs none: its FastAPI route (``api.routes.agents``) describes it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from nodeops.api.fastpath.log import APIGW_PATH, ESB_PATH, NODEMAN_PATH
from nodeops.api.schemas import LogResponse
from nodeops.domain.contract import Contract
from nodeops.service.instance_log import LOG

# the schema components the path items refer to
MODELS: tuple[type[BaseModel], ...] = (LogResponse,)
REQUESTS: tuple[Contract, ...] = (LOG,)


def describe_log_api() -> dict[str, Any]:
    """OpenAPI path items of the log API (see ``api.fastpath.log``)."""
    ok = {
        "200": {
            "description": "The envelope; errors too answer HTTP 200 with result false.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LogResponse"}}},
        }
    }
    common = [
        _param("bk_app_code", {"type": "string"}),
        _param("bk_app_secret", {"type": "string"}),
        _param("bk_token", {"type": "string"}),
        _param("bk_username", {"type": "string"}),
        {
            "name": "X-Bkapi-Authorization",
            "in": "header",
            "required": False,
            "description": "JSON object with the common args; wins over parameters.",
            "schema": {"type": "string"},
        },
    ]
    instance = _param("instance_id", {"anyOf": [{"type": "string"}, {"type": "integer"}]}, required=True)
    attempt = _param("attempt", {"type": "integer", "minimum": 1})
    job_in_path = {
        "name": "job_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
    summary = "查询任务实例日志 (query the log of one host instance of a job)"
    by_path = {
        "summary": summary,
        "tags": ["job"],
        "parameters": [job_in_path, instance, attempt, *common],
        "responses": ok,
    }
    return {
        ESB_PATH: {
            "get": {
                "summary": summary + " — ESB form",
                "tags": ["job"],
                "operationId": "esb_log_job_get",
                "parameters": [
                    _param("job_id", {"type": "integer", "minimum": 1}, required=True),
                    instance,
                    attempt,
                    *common,
                ],
                "responses": ok,
            },
            "post": {
                "summary": summary + " — ESB form",
                "tags": ["job"],
                "operationId": "esb_log_job_post",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LogRequest"}}},
                },
                "responses": ok,
            },
        },
        NODEMAN_PATH: {"get": {**by_path, "operationId": "job_get_job_log"}},
        APIGW_PATH: {"get": {**by_path, "operationId": "apigw_job_get_job_log"}},
    }


def _param(name: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}
