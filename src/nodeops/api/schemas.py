"""Request and response models of the API, as they appear in the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nodeops.domain.status import Status


class CommonArgsModel(BaseModel):
    """The ESB common args; may instead come as JSON in the ``X-Bkapi-Authorization`` header."""

    bk_app_code: str | None = Field(default=None, description="Caller app code.")
    bk_app_secret: str | None = Field(default=None, description="Caller app secret.")
    bk_token: str | None = Field(default=None, description="Login ticket issued by `nodeops token issue`.")
    bk_username: str | None = Field(default=None, description="User name; only for apps allowed to pass it.")


class LogRequest(CommonArgsModel):
    """查询任务实例日志: the ESB form of the request (JSON body of a POST, or query parameters of a GET)."""

    model_config = ConfigDict(title="LogRequest")
    job_id: int = Field(description="任务ID: the job_id.", gt=0)
    instance_id: str | int = Field(
        description="任务实例ID: object_type|node_type|type|id, e.g. host|instance|host|127.0.0.1-0-0 or "
        "host|instance|host|35; a bare integer means that bk_host_id. Either host form finds the host."
    )
    attempt: int | None = Field(
        default=None,
        gt=0,
        description="Which run of the instance (1 = first, +1 per retry); default the newest.",
    )


class LogStep(BaseModel):
    """One step of the instance's plan."""

    step: str = Field(description="节点名称: the step's display name.")
    status: Status = Field(description="执行状态.")
    log: str = Field(description="执行日志: lines `[YYYY-MM-DD HH:MM:SS LEVEL] text` joined by newlines.")
    start_time: str | None = Field(
        description="启动时间, `YYYY-MM-DD HH:MM:SS` in the service's zone; null if PENDING."
    )
    finish_time: str | None = Field(description="完成时间; null until the step has finished.")


class LogResponse(BaseModel):
    """The envelope around the steps; on error ``result`` is false, ``data`` null and ``code`` says why."""

    result: bool
    code: int = Field(description="0 on success; see docs/compatibility.md for the error codes.")
    message: str
    data: list[LogStep] | None
    errors: Any | None = Field(default=None, description="Present (null) on error bodies, as Node Manager.")


class Envelope(BaseModel):
    """The envelope of answers whose data is free-form (or null)."""

    result: bool
    code: int
    message: str
    data: Any | None = None


class HealthResponse(BaseModel):
    result: bool
    code: int
    message: str
    data: dict[str, str]
