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


# --- the job APIs (api/routes/jobs.py); bodies are read by the use cases, these models document them ---


class InstallHost(BaseModel):
    """One host of install_job; nodeops adds ``transport`` and ``setup_path``."""

    bk_biz_id: int = Field(description="Business of the host.", ge=0, le=2**31 - 1)
    bk_cloud_id: int = Field(default=0, description="Cloud area (管控区域).", ge=0, le=2**31 - 1)
    inner_ip: str | None = Field(default=None, description="Inner IPv4; inner_ip or inner_ipv6 is required.")
    inner_ipv6: str | None = Field(default=None, description="Inner IPv6.")
    bk_host_id: int | None = Field(default=None, description="The host's id when known (reinstall).", ge=1)
    os_type: str = Field(default="LINUX", description="Only LINUX hosts are installed; others are FILTERED.")
    ap_id: int = Field(
        default=1,
        description="Access point the agent reports to; -1 (自动选择接入点) is the default one, 1. A host whose "
        "access point does not exist is refused in ip_filter (unknown_ap).",
        ge=-1,
        le=2**31 - 1,
    )
    account: str | None = Field(default=None, description="SSH login account.")
    auth_type: str = Field(default="PASSWORD", description="PASSWORD or KEY.")
    password: str | None = Field(default=None, description="SSH password (stored encrypted, never shown).")
    key: str | None = Field(default=None, description="SSH private key (stored encrypted, never shown).")
    port: int = Field(default=22, description="SSH port.", ge=1, le=65535)
    transport: str = Field(default="ssh", description="nodeops: ssh, or local (run on the service's machine).")
    setup_path: str | None = Field(default=None, description="nodeops: absolute install path on the host.")


class InstallJobRequest(CommonArgsModel):
    """install_job (安装类任务): install or reinstall agents on hosts given with their login."""

    model_config = ConfigDict(title="InstallJobRequest")
    job_type: str = Field(description="INSTALL_AGENT or REINSTALL_AGENT.")
    hosts: list[InstallHost] = Field(description="The hosts, at least one.", min_length=1)


class OperateJobRequest(CommonArgsModel):
    """operate_job (操作类任务): an agent operation on hosts known by their bk_host_id."""

    model_config = ConfigDict(title="OperateJobRequest")
    job_type: str = Field(description="UPGRADE_AGENT, RESTART_AGENT, RELOAD_AGENT or UNINSTALL_AGENT.")
    bk_host_id: list[int] = Field(description="The hosts, at least one.", min_length=1)
    version: str | None = Field(
        default=None, description="nodeops, UPGRADE_AGENT only: the agent version to push (default the newest)."
    )


class DetailsCondition(BaseModel):
    """One filter of details_job; several of one key match any of their values, different keys all."""

    key: str = Field(description="ip (part of an IP), instance_id, status (a list) or exclude_instance_ids.")
    value: Any = Field(description="A value or a list of values.")


class DetailsJobRequest(CommonArgsModel):
    """details_job (查询任务详情) at nodeman's address: job_id is in the path."""

    model_config = ConfigDict(title="DetailsJobRequest")
    page: int = Field(default=1, ge=1, description="Page number, from 1.")
    pagesize: int = Field(default=10, ge=-1, description="Instances per page; -1 for all of them.")
    conditions: list[DetailsCondition] = Field(default_factory=list, description="Filters of the instances.")


class EsbDetailsJobRequest(DetailsJobRequest):
    """details_job at the ESB address: job_id is in the body."""

    model_config = ConfigDict(title="EsbDetailsJobRequest")
    job_id: int = Field(description="任务ID.", gt=0)


class JobInstancesRequest(CommonArgsModel):
    """retry / revoke: the instances to act on, default all (FAILED ones for retry, running ones for revoke)."""

    model_config = ConfigDict(title="JobInstancesRequest")
    instance_id_list: list[str | int] | None = Field(
        default=None, description="instance_ids (object_type|node_type|type|id, or bk_host_ids)."
    )


class RetryNodeRequest(CommonArgsModel):
    """retry_node (原子粒度重试): re-run one instance from its failed step."""

    model_config = ConfigDict(title="RetryNodeRequest")
    instance_id: str | int = Field(description="The instance (object_type|node_type|type|id, or a bk_host_id).")


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


class JobListSort(BaseModel):
    head: str = Field(default="id", description="id, job_type, status, created_by, start_time or end_time.")
    sort_type: str = Field(default="DEC", description="ASC or DEC.")


class JobListRequest(CommonArgsModel):
    """job_list (任务历史): the jobs the caller may view, filtered, sorted and paged."""

    model_config = ConfigDict(title="JobListRequest")
    page: int = Field(default=1, ge=1)
    pagesize: int = Field(default=10, description="-1: every job; at most 1000.")
    job_id: list[int] | None = None
    job_type: list[str] | None = None
    status: list[str] | None = None
    created_by: list[str] | None = None
    bk_biz_id: list[int] | None = None
    inner_ip_list: list[str] | None = None
    start_time: str | None = Field(default=None, description="Jobs started at or after (YYYY-MM-DD HH:MM:SS).")
    end_time: str | None = Field(default=None, description="Jobs started at or before (YYYY-MM-DD HH:MM:SS).")
    sort: JobListSort | None = None
    hide_auto_trigger_job: bool = False


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


# --- subscriptions (api/routes/subscriptions.py): Node Manager's backend API, read by the use cases ---


class ScopeModel(BaseModel):
    """What a subscription covers; nodes are hosts, service instances, or topology / template nodes."""

    bk_biz_id: int | None = Field(default=None, description="The business the scope is in.")
    object_type: str = Field(description="HOST or SERVICE.")
    node_type: str = Field(description="INSTANCE, TOPO, SERVICE_TEMPLATE or SET_TEMPLATE.")
    nodes: list[dict[str, Any]] = Field(
        description="INSTANCE HOST: {bk_host_id} or {ip, bk_cloud_id}; INSTANCE SERVICE: {id}; TOPO: {bk_obj_id: "
        "biz|set|module, bk_inst_id}; SERVICE_TEMPLATE / SET_TEMPLATE: {bk_obj_id: service_template|set_template, "
        "bk_inst_id}."
    )


class StepModel(BaseModel):
    id: str = Field(description="Step name, e.g. agent.")
    type: str = Field(default="AGENT", description="AGENT (the only type run here).")
    config: dict[str, Any] = Field(description='{"job_type": "INSTALL_AGENT" | "UPGRADE_AGENT" | ...}.')
    params: dict[str, Any] = Field(default_factory=dict, description="nodeops reads agent_version (a version).")


class CreateSubscriptionRequest(CommonArgsModel):
    """create: a subscription of a scope, with one agent step; run_immediately also runs it."""

    model_config = ConfigDict(title="CreateSubscriptionRequest")
    name: str | None = None
    scope: ScopeModel
    steps: list[StepModel] = Field(min_length=1, max_length=1)
    run_immediately: bool = False


class SubscriptionIdRequest(CommonArgsModel):
    """delete: the subscription."""

    model_config = ConfigDict(title="SubscriptionIdRequest")
    subscription_id: int = Field(gt=0)


class SwitchSubscriptionRequest(SubscriptionIdRequest):
    model_config = ConfigDict(title="SwitchSubscriptionRequest")
    action: str = Field(description="enable or disable.")


class SubscriptionInfoRequest(CommonArgsModel):
    model_config = ConfigDict(title="SubscriptionInfoRequest")
    subscription_id_list: list[int] = Field(min_length=1)
    show_deleted: bool = False


class UpdateSubscriptionRequest(SubscriptionIdRequest):
    model_config = ConfigDict(title="UpdateSubscriptionRequest")
    name: str | None = None
    scope: ScopeModel
    steps: list[dict[str, Any]] = Field(default_factory=list, description="[{id, params[, config]}].")
    run_immediately: bool = False


class RunSubscriptionRequest(SubscriptionIdRequest):
    model_config = ConfigDict(title="RunSubscriptionRequest")
    scope: dict[str, Any] | None = Field(default=None, description="{node_type, nodes}: run only these.")
    actions: dict[str, str] | None = Field(default=None, description='{"agent": "RESTART_AGENT"}: this run only.')


class SubscriptionInstancesRequest(SubscriptionIdRequest):
    """revoke / retry: the instances to act on (default every running / failed one)."""

    model_config = ConfigDict(title="SubscriptionInstancesRequest")
    instance_id_list: list[str | int] | None = None
    task_id_list: list[int] | None = Field(default=None, description="retry: only instances of these tasks.")


class TaskResultRequest(SubscriptionIdRequest):
    """task_result: the latest record of each instance over the tasks (default the newest task)."""

    model_config = ConfigDict(title="TaskResultRequest")
    task_id_list: list[int] | None = None
    page: int = Field(default=1, ge=1)
    pagesize: int = Field(default=-1, ge=-1, description="-1: every instance, as a bare list unless return_all.")
    start: int | None = Field(default=None, ge=1, description="Position of the first row; wins over page.")
    statuses: list[str] | None = None
    instance_id_list: list[str | int] | None = None
    exclude_instance_ids: list[str | int] | None = None
    return_all: bool = False
    need_detail: bool = False
    need_aggregate_all_tasks: bool = False
    need_out_of_scope_snapshots: bool = True


class TaskResultDetailRequest(SubscriptionIdRequest):
    model_config = ConfigDict(title="TaskResultDetailRequest")
    instance_id: str | int
    task_id: int | None = None
    task_id_list: list[int] | None = None


class InstanceStatusRequest(CommonArgsModel):
    model_config = ConfigDict(title="InstanceStatusRequest")
    subscription_id_list: list[int] = Field(min_length=1)
    show_task_detail: bool = False
    need_detail: bool = False


# --- inventory (api/routes/inventory.py): nodeops' own ---


class InventoryImportRequest(CommonArgsModel):
    """Import an inventory: ``inventory`` (JSON form) or ``csv`` (CSV text); see docs/compatibility.md."""

    model_config = ConfigDict(title="InventoryImportRequest")
    inventory: dict[str, Any] | None = Field(default=None, description="{topology, hosts, service_instances}.")
    csv: str | None = Field(default=None, description="CSV text, header row first, one row per host and module.")


class InventoryExportRequest(CommonArgsModel):
    model_config = ConfigDict(title="InventoryExportRequest")
    format: str = Field(default="json", description="json or csv.")
    bk_biz_id: int | None = None


class HostSearchRequest(CommonArgsModel):
    model_config = ConfigDict(title="HostSearchRequest")
    page: int = Field(default=1, ge=1)
    pagesize: int = Field(default=20, ge=-1)
    bk_biz_id: int | None = None
    bk_cloud_id: int | None = None
    ip: str | None = Field(default=None, description="Part of an inner or outer IP.")
    os_type: str | None = None
    bk_set_id: int | None = None
    bk_module_id: int | None = None
    bk_host_id: list[int] | None = None


class BizRequest(CommonArgsModel):
    model_config = ConfigDict(title="BizRequest")
    bk_biz_id: int | None = None
