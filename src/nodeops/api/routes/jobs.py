"""The job APIs at their ESB and nodeman addresses (spec §1.3, §8), all POST and all answering the envelope.

- ESB: ``/api/c/compapi/v2/nodeman/api/job/{install,operate,details}/`` (details: job_id in the body)
- nodeman: ``/api/job/install/``, ``/api/job/operate/``, ``/api/job/{job_id}/{details,retry,revoke,retry_node}/``

Routes only pass the request's parameters to ``JobService`` (the commands) or ``JobDetails`` and wrap its
answer; the body is read by the use case (so validation names fields the way the rest of the API does), and its
models here only document it.
A missing trailing slash is accepted, as on the log API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from nodeops.api.deps import job_service
from nodeops.api.routing import add_post
from nodeops.api.schemas import (
    DetailsJobRequest,
    EsbDetailsJobRequest,
    InstallJobRequest,
    JobDetailsResponse,
    JobInstancesRequest,
    JobListRequest,
    JobListResponse,
    JobTasksResponse,
    OperateJobRequest,
    RetryNodeRequest,
    RetryNodeResponse,
    StartedJobResponse,
)
from nodeops.service.auth import Caller
from nodeops.service.container import Services
from nodeops.service.job_commands import JobService
from nodeops.service.job_details import JobDetails
from nodeops.service.job_list import list_jobs

router = APIRouter(tags=["job"])

ESB_JOB = "/api/c/compapi/v2/nodeman/api/job"
# request bodies the use cases read themselves; app._openapi puts them into the schema's components
REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    InstallJobRequest,
    OperateJobRequest,
    DetailsJobRequest,
    EsbDetailsJobRequest,
    JobInstancesRequest,
    RetryNodeRequest,
    JobListRequest,
)


def _add(path: str, use_case: Callable[[JobService, Caller, dict[str, Any]], Awaitable[Any]], **route: Any) -> None:
    """Route POST ``path`` to a job use case (see ``api.routing.add_post``)."""

    def call(services: Services, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
        return use_case(job_service(services), caller, params)

    add_post(router, path, call, **route)


def _install(jobs: JobService, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
    return jobs.install(caller, params)


def _operate(jobs: JobService, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
    return jobs.operate(caller, params)


def _details(jobs: JobService, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
    return JobDetails(jobs.db, jobs.tz).details(caller, params)


def _retry(jobs: JobService, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
    return jobs.retry(caller, params)


def _revoke(jobs: JobService, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
    return jobs.revoke(caller, params)


def _retry_node(jobs: JobService, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
    return jobs.retry_node(caller, params)


def _job_list(jobs: JobService, caller: Caller, params: dict[str, Any]) -> Awaitable[Any]:
    return list_jobs(jobs.db, jobs.tz, caller, params)


INSTALL = "安装类任务 (install_job): install or reinstall agents"
OPERATE = "操作类任务 (operate_job): upgrade, restart, reload or uninstall agents"
DETAILS = "查询任务详情 (details_job): the job, its statistics and a page of its instances"
for _path, _id in ((f"{ESB_JOB}/install/", "esb_install_job"), ("/api/job/install/", "job_install_job")):
    _add(_path, _install, operation_id=_id, summary=INSTALL, request=InstallJobRequest, response=StartedJobResponse)
for _path, _id in ((f"{ESB_JOB}/operate/", "esb_operate_job"), ("/api/job/operate/", "job_operate_job")):
    _add(_path, _operate, operation_id=_id, summary=OPERATE, request=OperateJobRequest, response=StartedJobResponse)
_add(
    f"{ESB_JOB}/details/",
    _details,
    operation_id="esb_details_job",
    summary=DETAILS,
    request=EsbDetailsJobRequest,
    response=JobDetailsResponse,
)
_add(
    "/api/job/{job_id}/details/",
    _details,
    operation_id="job_retrieve_job",
    summary=DETAILS,
    request=DetailsJobRequest,
    response=JobDetailsResponse,
)
_add(
    "/api/job/{job_id}/retry/",
    _retry,
    operation_id="job_retry_job",
    summary="重试任务 (retry): run the failed instances again as a new attempt",
    request=JobInstancesRequest,
    response=JobTasksResponse,
)
_add(
    "/api/job/{job_id}/revoke/",
    _revoke,
    operation_id="job_revoke_job",
    summary="终止任务 (revoke): stop the pending and running instances; the job ends TERMINATED",
    request=JobInstancesRequest,
    response=JobTasksResponse,
)
_add(
    "/api/job/{job_id}/retry_node/",
    _retry_node,
    operation_id="job_retry_node",
    summary="原子粒度重试 (retry_node): re-run one instance from its failed step",
    request=RetryNodeRequest,
    response=RetryNodeResponse,
)
JOB_LIST = "任务历史 (job_list): the jobs the caller may view, filtered, sorted and paged"
for _path, _id in ((f"{ESB_JOB}/job_list/", "esb_job_list"), ("/api/job/job_list/", "job_list_job")):
    _add(_path, _job_list, operation_id=_id, summary=JOB_LIST, request=JobListRequest, response=JobListResponse)
