"""Response models of the API, as they appear in the OpenAPI schema; a request is described by its use case's
contract (``domain.contract``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nodeops.domain.status import Status


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
    request_id: str = Field(
        description="This answer's id, as ESB adds it (spec §1.2); also in the X-Request-Id header, and on the "
        "service's log lines written while answering."
    )


class Envelope(BaseModel):
    """The envelope of answers whose data is free-form (or null)."""

    result: bool
    code: int
    message: str
    data: Any | None = None
    request_id: str = Field(
        description="This answer's id, as ESB adds it (spec §1.2); also in the X-Request-Id header, and on the "
        "service's log lines written while answering."
    )


class HealthResponse(BaseModel):
    result: bool
    code: int
    message: str
    data: dict[str, str]
    request_id: str = Field(
        description="This answer's id, as ESB adds it (spec §1.2); also in the X-Request-Id header, and on the "
        "service's log lines written while answering."
    )


# --- the job APIs (api/routes/jobs.py); their requests are the use cases' contracts (``domain.contract``) ---


class StartedJobData(BaseModel):
    job_id: int
    job_url: str = Field(description="The job's page: {public_url}/#/task-list/detail/{job_id}.")
    ip_filter: list[dict[str, Any]] = Field(description="Hosts refused up front, with status, exception and msg.")
    subscription_id: int
    task_id_list: list[int]


class StartedJobResponse(Envelope):
    data: StartedJobData | None = None


class JobMeta(BaseModel):
    type: str
    step_type: str
    op_type: str
    op_type_display: str
    step_type_display: str


class JobInstanceRow(BaseModel):
    """One instance of the job (its latest attempt), or a host refused up front (``filter_host``)."""

    model_config = ConfigDict(extra="allow")
    instance_id: str | None = None
    ip: str | None = None
    inner_ip: str | None = None
    inner_ipv6: str | None = None
    bk_host_id: int | None = None
    bk_cloud_id: int | None = None
    bk_biz_id: int | None = None
    status: str
    status_display: str | None = Field(default=None, description="正在 X / X 失败 / 执行成功 / 等待执行.")
    step: str = Field(description="The current (or last) step's name.")
    start_time: str | None = None
    end_time: str | None = None
    cost_time: float | None = Field(default=None, description="Seconds.")
    attempt: int | None = Field(default=None, description="nodeops: the run of the instance (1, +1 per retry).")
    filter_host: bool | None = None


class JobDetailsData(BaseModel):
    job_id: int
    created_by: str
    job_type: str
    job_type_display: str
    ip_filter_list: list[str]
    total: int = Field(description="Instances matching the conditions (refused hosts not counted).")
    instances: list[JobInstanceRow] = Field(
        alias="list", description="One page of instances, then the hosts refused up front."
    )
    statistics: dict[str, int]
    status: Status
    start_time: str | None
    end_time: str | None
    cost_time: str = Field(description="Whole seconds since the start, until the end if it has ended.")
    meta: JobMeta
    subscription_id: int
    task_id_list: list[int]


class JobDetailsResponse(Envelope):
    data: JobDetailsData | None = None


class JobTasksData(BaseModel):
    job_id: int
    task_id_list: list[int] = Field(description="The job's tasks: its first run, then one per retry.")


class JobTasksResponse(Envelope):
    data: JobTasksData | None = None


class RetryNodeData(BaseModel):
    retry_node_id: str = Field(description="The re-run step: {record_id}-{step index}.")
    retry_node_name: str = Field(description="Its name, e.g. 安装.")


class RetryNodeResponse(Envelope):
    data: RetryNodeData | None = None


class CollectLogData(BaseModel):
    job_id: int
    instance_id: str
    attachment_id: int
    name: str
    size_bytes: int
    host_size_bytes: int
    truncated: bool
    download_url: str


class CollectLogResponse(Envelope):
    data: CollectLogData | None = None


class JobListRow(BaseModel):
    id: int
    job_type: str
    job_type_display: str
    status: str
    statistics: dict[str, int]
    created_by: str
    bk_biz_scope: list[int]
    start_time: str
    end_time: str | None
    cost_time: str = Field(description="Whole seconds, as a string.")


class JobListData(BaseModel):
    total: int
    list: list[JobListRow]


class JobListResponse(Envelope):
    data: JobListData | None = None


# --- the job timeline (ours) ---------------------------------------------------------------------------------


class TimelineStep(BaseModel):
    """One step of a host's latest attempt: as the log API shows it, plus its exact instants for drawing."""

    index: int = Field(description="Its place in the plan, from 0.")
    step: str = Field(description="节点名称, as the log API names it.")
    status: Status = Field(description="As the log API's (steps before a RUNNING or FAILED one read SUCCESS).")
    start_time: str | None = Field(description="`YYYY-MM-DD HH:MM:SS` in the service's zone, as the log API's.")
    finish_time: str | None = Field(description="Null until the step has finished, as the log API's.")
    start_ms: int | None = Field(description="The start, in milliseconds since the epoch.")
    finish_ms: int | None = Field(description="The finish, in milliseconds since the epoch; null with finish_time.")


class TimelineHost(BaseModel):
    instance_id: str
    ip: str | None
    bk_host_id: int | None
    status: Status
    attempt: int = Field(description="The attempt shown: the instance's latest.")
    start_time: str | None
    end_time: str | None
    start_ms: int | None
    end_ms: int | None
    steps: list[TimelineStep]


class TimelinePoint(BaseModel):
    time: str = Field(description="`YYYY-MM-DD HH:MM:SS%z` in the service's zone.")
    time_ms: int
    done: int = Field(description="Hosts whose latest attempt had succeeded by then.")
    failed: int = Field(description="Hosts whose latest attempt had failed or been terminated by then.")
    running: int = Field(description="Hosts whose latest attempt was running then.")


class TimelineSeries(BaseModel):
    interval_s: float = Field(description="Seconds between two points.")
    points: list[TimelinePoint] = Field(description="From the job's start to its end (or now), evenly spread.")


class JobTimelineData(BaseModel):
    job_id: int
    job_type: str
    status: Status = Field(description="As details_job's.")
    statistics: dict[str, int]
    start_time: str | None
    end_time: str | None
    start_ms: int | None
    end_ms: int | None
    now_ms: int = Field(description="The service's clock when it answered: running steps last until then.")
    total: int = Field(description="Hosts of the job (their latest attempts); refused hosts are not counted.")
    page: int
    pagesize: int
    hosts: list[TimelineHost] = Field(alias="list", description="One page of hosts, in details_job's order.")
    series: TimelineSeries


class JobTimelineResponse(Envelope):
    data: JobTimelineData | None = None
