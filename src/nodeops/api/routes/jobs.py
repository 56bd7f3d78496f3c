"""The job APIs at their ESB and nodeman addresses (spec §1.3, §8), all POST and all answering the envelope.

- ESB: ``/api/c/compapi/v2/nodeman/api/job/{install,operate,details}/`` (details: job_id in the body)
- nodeman: ``/api/job/install/``, ``/api/job/operate/``,
  ``/api/job/{job_id}/{details,retry,revoke,retry_node,collect_log}/``

Routes only pass the request's parameters to ``JobCommands`` (the commands) or ``JobDetails`` and wrap its
answer; the body is read by the use case through its contract (``domain.contract``), which also describes it in
the OpenAPI schema, so a request is validated and documented from one declaration.
A missing trailing slash is accepted, as on the log API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from nodeops.api.deps import make_job_commands
from nodeops.api.routing import UseCase, add_route, use_case_endpoint
from nodeops.api.schemas import (
    CollectLogResponse,
    JobDetailsResponse,
    JobListResponse,
    JobTasksResponse,
    RetryNodeResponse,
    StartedJobResponse,
)
from nodeops.domain.contract import Contract
from nodeops.service import agent_logs, job_commands, job_details, job_list
from nodeops.service.auth import Caller
from nodeops.service.container import Services
from nodeops.service.job_commands import JobCommands
from nodeops.service.job_details import JobDetails

router = APIRouter(tags=["job"])

ESB_JOB = "/api/c/compapi/v2/nodeman/api/job"
# request bodies the use cases read themselves; app._openapi puts them into the schema's components
REQUESTS: tuple[Contract, ...] = (
    *job_commands.REQUESTS,
    job_details.DETAILS,
    job_details.ESB_DETAILS,
    job_list.JOB_LIST,
    agent_logs.COLLECT_LOG,
)


def _job_use_case(use_case: Callable[[JobCommands, Caller, dict[str, Any]], Awaitable[Any]]) -> UseCase:
    """A job use case called with the JobCommands built from the services."""

    def call(services: Services, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
        return use_case(make_job_commands(services), caller, params)

    return call


def _details(jobs: JobCommands, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
    return JobDetails(jobs.db, jobs.tz).details(caller, params)


def _collect_log(jobs: JobCommands, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
    return agent_logs.AgentLogs(jobs.db, jobs.settings, jobs.launcher.box).collect(caller, params)


def _job_list(jobs: JobCommands, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
    return job_list.list_jobs(jobs.db, jobs.tz, caller, params)


INSTALL = "安装类任务 (install_job): install or reinstall agents"
OPERATE = "操作类任务 (operate_job): upgrade, restart, reload or uninstall agents"
DETAILS = "查询任务详情 (details_job): the job, its statistics and a page of its instances"
RETRY = "重试任务 (retry): run the failed instances again as a new attempt"
REVOKE = "终止任务 (revoke): stop the pending and running instances; the job ends TERMINATED"
RETRY_NODE = "原子粒度重试 (retry_node): re-run one instance from its failed step"
COLLECT_LOG = "采集日志 (collect_log): fetch the agent's own log of a finished instance from its host"
JOB_LIST = "任务历史 (job_list): the jobs the caller may view, filtered, sorted and paged"
Route = tuple[str, str, Callable[[JobCommands, Caller, dict[str, Any]], Awaitable[Any]], str, Contract, type[BaseModel]]
ROUTES: tuple[Route, ...] = (
    (f"{ESB_JOB}/install/", "esb_install_job", JobCommands.install, INSTALL, job_commands.INSTALL, StartedJobResponse),
    ("/api/job/install/", "job_install_job", JobCommands.install, INSTALL, job_commands.INSTALL, StartedJobResponse),
    (f"{ESB_JOB}/operate/", "esb_operate_job", JobCommands.operate, OPERATE, job_commands.OPERATE, StartedJobResponse),
    ("/api/job/operate/", "job_operate_job", JobCommands.operate, OPERATE, job_commands.OPERATE, StartedJobResponse),
    (f"{ESB_JOB}/details/", "esb_details_job", _details, DETAILS, job_details.ESB_DETAILS, JobDetailsResponse),
    ("/api/job/{job_id}/details/", "job_retrieve_job", _details, DETAILS, job_details.DETAILS, JobDetailsResponse),
    (
        "/api/job/{job_id}/retry/",
        "job_retry_job",
        JobCommands.retry,
        RETRY,
        job_commands.JOB_INSTANCES,
        JobTasksResponse,
    ),
    (
        "/api/job/{job_id}/revoke/",
        "job_revoke_job",
        JobCommands.revoke,
        REVOKE,
        job_commands.JOB_INSTANCES,
        JobTasksResponse,
    ),
    (
        "/api/job/{job_id}/retry_node/",
        "job_retry_node",
        JobCommands.retry_node,
        RETRY_NODE,
        job_commands.RETRY_NODE,
        RetryNodeResponse,
    ),
    (
        "/api/job/{job_id}/collect_log/",
        "job_collect_job_log",
        _collect_log,
        COLLECT_LOG,
        agent_logs.COLLECT_LOG,
        CollectLogResponse,
    ),
    (f"{ESB_JOB}/job_list/", "esb_job_list", _job_list, JOB_LIST, job_list.JOB_LIST, JobListResponse),
    ("/api/job/job_list/", "job_list_job", _job_list, JOB_LIST, job_list.JOB_LIST, JobListResponse),
)
for _path, _id, _use_case, _summary, _request, _response in ROUTES:
    add_route(
        router,
        _path,
        use_case_endpoint(_job_use_case(_use_case), _path),
        operation_id=_id,
        summary=_summary,
        request=_request,
        response=_response,
    )
