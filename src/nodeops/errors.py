"""The one exception tree of nodeops; each class carries the ESB/Node Manager code it answers with.

    NodeopsError                      3800500 (anything we did not foresee)
    ├── InvalidInput                  3800001 validation, naming each bad field
    ├── NotFound
    │   ├── JobNotFound               3801012
    │   ├── SubscriptionNotFound      3800001 (Node Manager's SubscriptionNotExist shares the validation code)
    │   ├── TaskNotFound              3800003 (SubscriptionTaskNotExist)
    │   ├── InstanceNotFound          3800007
    │   ├── RecordNotFound            3800007 (SubscriptionInstanceRecordNotExist)
    │   ├── NoFailedStep              3800007 (retry_node: 无法获取失败任务节点)
    │   ├── RouteNotFound             3800404
    │   ├── CloudAreaNotFound         3801001 (不存在ID为: {id} 的管控区域)
    │   ├── AccessPointNotFound       3801007 (接入点(id:{id})不存在)
    │   └── InstallChannelNotFound    3801037 (安装通道不存在)
    ├── MethodNotAllowed              3800405
    ├── BodyTooLarge                  3800413
    ├── RequestTimeout                3800408 (headers or body too slow; HTTP 408, then the connection closes)
    ├── TooManyConnections            3800503 (past NODEOPS_MAX_CONNECTIONS; HTTP 503, then the connection closes)
    ├── AuthError                     ESB layer (spec §1.1)
    │   ├── MissingAppCredentials     1306406
    │   ├── AppAuthFailed             1306403
    │   ├── UserAuthFailed            1306000
    │   └── AuthThrottled             1306429 (too many failed authentications: refused until a time)
    ├── PermissionDenied              9900403
    │   └── LocalTransportDenied      9900403 (transport local, superusers only)
    ├── AgentTokenRejected            3800403
    ├── MetricsUnauthorized           3800401 (/metrics without its bearer token; HTTP 401)
    ├── Forbidden                     3800403 (a network object the caller may not change: Node Manager without IAM)
    ├── DuplicateAccessPointName      3800028 (接入点名称重复)
    ├── Conflict                      3800003
    │   ├── InstanceTaskIsRunning     3800003 (run while the last run is unfinished)
    │   ├── NothingRunning            3800016 (revoke)
    │   ├── CloudAreaInUse            3801003 (该区域已存在主机)
    │   └── AccessPointInUse          3801019 (default, or used by areas or hosts)
    ├── StoreError                    3800500
    │   └── TransientStoreError       3800500 (a deadlock, a serialization failure, a lock or statement timeout, a lost
    │                                          connection: the same transaction may succeed if tried again)
    ├── LeaseLost                     3800500 (a cluster worker past its lease: its writes are refused)
    ├── PackageUnavailable            3800500 (a push step's failure: the package's bytes are not in the database)
    └── TransportError                (a step's failure on a host; becomes the step's log, not an answer)
        ├── AuthFailed
        ├── HostUnreachable
        ├── CommandTimeout
        └── CommandFailed

Codes follow spec/domain.md §2: Node Manager's own codes are 3800000 + module + error, a 3-digit HTTP code is
widened to 3800000 + code, and ESB's own errors are 1306xxx. Messages say what was wrong and what is accepted,
and never carry a secret. This module imports nothing from nodeops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import Any, ClassVar


class ErrorCode(IntEnum):
    SUCCESS = 0
    VALIDATION = 3800001
    CONFLICT = 3800003
    INSTANCE_NOT_FOUND = 3800007
    NOTHING_RUNNING = 3800016
    ROUTE_NOT_FOUND = 3800404
    METHOD_NOT_ALLOWED = 3800405
    REQUEST_TIMEOUT = 3800408
    BODY_TOO_LARGE = 3800413
    INTERNAL = 3800500
    TOO_MANY_CONNECTIONS = 3800503
    DUPLICATE_AP_NAME = 3800028
    CLOUD_NOT_FOUND = 3801001
    CLOUD_IN_USE = 3801003
    AP_NOT_FOUND = 3801007
    PROXY_IN_DIRECT_AREA = 3801006
    JOB_NOT_FOUND = 3801012
    NO_ALIVE_PROXY = 3801013
    ALL_FILTERED = 3801018
    AP_IN_USE = 3801019
    HOST_NOT_EXISTS = 3801023
    MIXED_MANUAL_HOSTS = 3801024
    INSTALL_CHANNEL_NOT_FOUND = 3801037
    PERMISSION_DENIED = 9900403
    UNAUTHORIZED = 3800401  # /metrics without its bearer token (HTTP 401)
    FORBIDDEN = 3800403
    ESB_USER_AUTH_FAILED = 1306000
    ESB_APP_PERMISSION = 1306403
    ESB_ARGUMENT = 1306406
    ESB_RATE_LIMITED = 1306429


# Which error codes Node Manager itself emits (and so gets the "（code）" suffix on its message, spec §1.2);
# the 1306xxx codes come from ESB, which never appends it.
ESB_CODES = frozenset(
    {
        ErrorCode.ESB_USER_AUTH_FAILED,
        ErrorCode.ESB_APP_PERMISSION,
        ErrorCode.ESB_ARGUMENT,
        ErrorCode.ESB_RATE_LIMITED,
    }
)


class NodeopsError(Exception):
    """Internal error, please contact the administrator."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

    def __init__(self, message: str | None = None, *, data: Any = None) -> None:
        self.message = message or (self.__doc__ or type(self).__name__).strip()
        self.data = data
        super().__init__(self.message)


class InvalidInput(NodeopsError):
    """Parameter validation failed."""

    code = ErrorCode.VALIDATION

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in self.problems.items()))

    @classmethod
    def field(cls, name: str, problem: str) -> InvalidInput:
        """A validation error about one field."""
        return cls({name: problem})


class NotFound(NodeopsError):
    """The requested object does not exist."""


class JobNotFound(NotFound):
    """No job with this job_id."""

    code = ErrorCode.JOB_NOT_FOUND

    def __init__(self, *, job_id: int) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} does not exist")


class SubscriptionNotFound(NotFound):
    """订阅不存在: no subscription with this id (Node Manager's SubscriptionNotExist, code 3800001)."""

    code = ErrorCode.VALIDATION

    def __init__(self, *, subscription_ids: list[int]) -> None:
        self.subscription_ids = subscription_ids
        ids = ", ".join(str(i) for i in subscription_ids)
        super().__init__(
            f"订阅({ids})不存在: no subscription with subscription_id {ids} (deleted ones are gone too); "
            "create one with /backend/api/subscription/create/"
        )


class TaskNotFound(NotFound):
    """订阅任务不存在: the subscription has no such task (SubscriptionTaskNotExist)."""

    code = ErrorCode.CONFLICT

    def __init__(self, *, subscription_id: int, task_ids: list[int]) -> None:
        self.task_ids = task_ids
        if task_ids:
            detail = f"task {', '.join(str(t) for t in task_ids)} is not a task of subscription {subscription_id}"
        else:
            detail = f"subscription {subscription_id} has not run yet; run it with /backend/api/subscription/run/"
        super().__init__(f"订阅任务不存在: {detail}")


class RecordNotFound(NotFound):
    """订阅任务实例不存在: no record of this instance in these tasks (SubscriptionInstanceRecordNotExist)."""

    code = ErrorCode.INSTANCE_NOT_FOUND

    def __init__(self, *, subscription_id: int, instance_id: str) -> None:
        super().__init__(
            f"订阅任务实例不存在: subscription {subscription_id} has no instance {instance_id!r} in these tasks"
        )


class InstanceNotFound(NotFound):
    """No host instance with this instance_id in this job."""

    code = ErrorCode.INSTANCE_NOT_FOUND

    def __init__(self, *, job_id: int, instance_id: str, detail: str = "") -> None:
        self.job_id = job_id
        self.instance_id = instance_id
        message = f"job {job_id} has no instance {instance_id!r}"
        super().__init__(f"{message}: {detail}" if detail else message)


class AttachmentNotFound(NotFound):
    """No attachment with this id on the instance's records (collect_log answers the ids)."""

    code = ErrorCode.INSTANCE_NOT_FOUND

    def __init__(self, *, job_id: int, instance_id: str, attachment_id: int) -> None:
        super().__init__(
            f"instance {instance_id!r} of job {job_id} has no attachment {attachment_id}; "
            "collect_log answers the attachment_id of the agent log it fetched"
        )


class NoFailedStep(NotFound):
    """无法获取失败任务节点: the instance has no failed step to retry."""

    code = ErrorCode.INSTANCE_NOT_FOUND

    def __init__(self, *, job_id: int, instance_id: str, status: str) -> None:
        self.job_id = job_id
        self.instance_id = instance_id
        super().__init__(
            f"无法获取失败任务节点: instance {instance_id!r} of job {job_id} has no FAILED step "
            f"(its latest attempt is {status}); retry_node re-runs a failed step, use retry for the rest"
        )


class RouteNotFound(NotFound):
    """No API at this path."""

    code = ErrorCode.ROUTE_NOT_FOUND

    def __init__(self, *, path: str) -> None:
        super().__init__(f"no API at {path!r}; see /docs for the list")


class MethodNotAllowed(NodeopsError):
    """This API does not accept this HTTP method."""

    code = ErrorCode.METHOD_NOT_ALLOWED

    def __init__(self, *, method: str, allowed: tuple[str, ...]) -> None:
        self.allowed = allowed
        super().__init__(f"method {method} is not allowed here; use {' or '.join(allowed)}")


class BodyTooLarge(NodeopsError):
    """The request body is too large."""

    code = ErrorCode.BODY_TOO_LARGE

    def __init__(self, *, limit_bytes: int) -> None:
        super().__init__(f"request body exceeds {limit_bytes} bytes")


class RequestTimeout(NodeopsError):
    """The request did not arrive in time."""

    code = ErrorCode.REQUEST_TIMEOUT

    def __init__(self, *, part: str, timeout_s: float) -> None:
        self.part = part
        self.timeout_s = timeout_s
        if part == "body":
            detail = (
                f"the request's body did not all arrive within {timeout_s:g} s of its headers "
                "(NODEOPS_BODY_TIMEOUT_S); send as many bytes as Content-Length says, without pausing"
            )
        else:
            detail = (
                f"the request's line and headers did not all arrive within {timeout_s:g} s "
                "(NODEOPS_HEADER_TIMEOUT_S); send them at once, ending with an empty line"
            )
        super().__init__(detail)


class TooManyConnections(NodeopsError):
    """The server has as many connections open as it accepts."""

    code = ErrorCode.TOO_MANY_CONNECTIONS

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"the server already has {limit} connections open, its limit (NODEOPS_MAX_CONNECTIONS); retry in a "
            "moment, and keep one connection alive for many requests"
        )


class AuthError(NodeopsError):
    """Authentication failed."""


class MissingAppCredentials(AuthError):
    """bk_app_code and bk_app_secret are required."""

    code = ErrorCode.ESB_ARGUMENT

    def __init__(self, *, missing: list[str]) -> None:
        super().__init__(
            f"Parameters error, {', '.join(missing)} required: pass them as parameters or in the "
            "X-Bkapi-Authorization header"
        )


class AppAuthFailed(AuthError):
    """App authentication failed."""

    code = ErrorCode.ESB_APP_PERMISSION

    def __init__(self, *, app_code: str, disabled: bool = False) -> None:
        if disabled:
            super().__init__(
                f"App authentication failed: app {app_code!r} is disabled (`nodeops app enable` restores it)"
            )
        else:
            super().__init__(
                f"App authentication failed: bk_app_code {app_code!r} with this bk_app_secret is not a registered app"
            )


class UserAuthFailed(AuthError):
    """User authentication failed, please provide a valid user identity, such as bk_token, bk_username."""

    code = ErrorCode.ESB_USER_AUTH_FAILED


class AuthThrottled(AuthError):
    """Too many failed authentications: try again later."""

    code = ErrorCode.ESB_RATE_LIMITED

    def __init__(self, *, app_code: str, client: str, until: str, retry_after_s: int) -> None:
        super().__init__(
            f"Too many failed authentications of bk_app_code {app_code!r} from {client}: refused until {until}; "
            f"retry in {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s


MAX_NAMED_ROWS = 5  # rows a PermissionDenied names; it counts the rest


class PermissionDenied(NodeopsError):
    """You do not have permission to view this task's history."""

    code = ErrorCode.PERMISSION_DENIED

    def __init__(
        self,
        *,
        username: str,
        job_id: int | None,
        missing_biz_ids: list[int],
        action: str = "task_history_view",
        rows: Sequence[str] = (),
    ) -> None:
        self.missing_biz_ids = missing_biz_ids
        bizs = ", ".join(str(b) for b in missing_biz_ids)
        where = f" of job {job_id}" if job_id is not None else ""
        if rows:  # the rows of a request that touch those businesses, the first few of them
            named = ", ".join(rows[:MAX_NAMED_ROWS])
            more = f" and {len(rows) - MAX_NAMED_ROWS} more" if len(rows) > MAX_NAMED_ROWS else ""
            where += f" (rows: {named}{more})"
        super().__init__(
            f"user {username!r} has no [{action}] permission on business {bizs}{where}; "
            f"ask an administrator for `nodeops user grant {username} --biz <id>`",
            data={
                "permission": {"action": action, "bk_biz_ids": missing_biz_ids},
                "apply_url": "",
            },
        )


class LocalTransportDenied(PermissionDenied):
    """Only superusers may run jobs on the service's own machine (transport local)."""

    def __init__(self, *, username: str) -> None:
        self.missing_biz_ids = []
        NodeopsError.__init__(
            self,
            f"user {username!r} may not use transport 'local': it runs commands on the service's own machine, "
            "which only superusers may do; reach the host over ssh",
            data={"permission": {"action": "local_transport"}, "apply_url": ""},
        )


class AgentTokenRejected(NodeopsError):
    """The heartbeat's token is not this host's agent token."""

    code = ErrorCode.FORBIDDEN

    def __init__(self, *, bk_host_id: int) -> None:
        super().__init__(f"heartbeat refused: wrong token for host {bk_host_id} (reinstall the agent to renew it)")


class MetricsUnauthorized(NodeopsError):
    """Metrics need the header 'Authorization: Bearer <NODEOPS_METRICS_TOKEN>'; the token given is missing or wrong."""

    code = ErrorCode.UNAUTHORIZED


class Forbidden(NodeopsError):
    """您没有该操作的权限: the caller may not act on this object."""

    code = ErrorCode.FORBIDDEN


class DuplicateAccessPointName(NodeopsError):
    """接入点名称重复: another access point has this name."""

    code = ErrorCode.DUPLICATE_AP_NAME

    def __init__(self, *, name: str) -> None:
        super().__init__(f"接入点名称重复: access point name {name!r} is taken; choose another")


class CloudAreaNotFound(NotFound):
    """No cloud area with this id."""

    code = ErrorCode.CLOUD_NOT_FOUND

    def __init__(self, *, bk_cloud_id: int) -> None:
        super().__init__(f"不存在ID为: {bk_cloud_id} 的管控区域 (list them with GET /api/cloud/)")


class AccessPointNotFound(NotFound):
    """No access point with this id."""

    code = ErrorCode.AP_NOT_FOUND

    def __init__(self, *, ap_id: int) -> None:
        super().__init__(f"接入点(id:{ap_id})不存在 (list them with GET /api/ap/)")


class InstallChannelNotFound(NotFound):
    """No install channel with this id (in this cloud area)."""

    code = ErrorCode.INSTALL_CHANNEL_NOT_FOUND

    def __init__(self, *, channel_id: int, bk_cloud_id: int | None = None, host_index: int | None = None) -> None:
        where = "" if bk_cloud_id is None else f" in cloud area {bk_cloud_id}"
        listed = "list them with GET /api/install_channel/"
        if host_index is None:  # the channel APIs
            message = f"安装通道不存在: no install channel {channel_id}{where} ({listed})"
        else:  # a host of install_job naming it: Node Manager's words first
            message = (
                f"主机的安装通道不存在，请重新选择 (hosts[{host_index}]: no install channel {channel_id}{where}; "
                f"{listed})"
            )
        super().__init__(message)


class Conflict(NodeopsError):
    """The object is in a state that does not allow this operation."""

    code = ErrorCode.CONFLICT


class InstanceTaskIsRunning(Conflict):
    """实例存在运行中任务: the subscription's last run has not finished."""

    def __init__(self, *, subscription_id: int, task_id: int) -> None:
        super().__init__(
            f"实例存在运行中任务: task {task_id} of subscription {subscription_id} still has PENDING or RUNNING "
            "instances; wait for it to end, or revoke it first"
        )


class InstanceStillActive(Conflict):
    """The instance's newest attempt has not finished: its agent log is collected once it has."""

    def __init__(self, *, job_id: int, instance_id: str, status: str) -> None:
        super().__init__(
            f"instance {instance_id!r} of job {job_id} is {status}; collect its agent log once it has finished "
            "(or revoke it first)"
        )


class AgentLogUnavailable(Conflict):
    """The agent's log could not be fetched from the host (unreachable, refused, no log there)."""

    def __init__(self, *, ip: str, reason: str) -> None:
        super().__init__(f"the agent log of host {ip} could not be fetched: {reason}")


class NothingRunning(Conflict):
    """No instance of the job is pending or running."""

    code = ErrorCode.NOTHING_RUNNING

    def __init__(self, *, job_id: int, subscription_id: int) -> None:
        super().__init__(
            f"订阅[id:{subscription_id}]不存在运行中的任务，请确认: job {job_id} has no PENDING or RUNNING "
            "instance to revoke"
        )


class CloudAreaInUse(Conflict):
    """该区域已存在主机: a cloud area that holds hosts cannot be deleted."""

    code = ErrorCode.CLOUD_IN_USE

    def __init__(self, *, bk_cloud_id: int, hosts: int) -> None:
        super().__init__(
            f"该区域已存在主机: cloud area {bk_cloud_id} holds {hosts} host(s) (proxies included); "
            "uninstall and remove them first"
        )


class AccessPointInUse(Conflict):
    """The access point cannot be deleted: it is the default, or areas or hosts use it."""

    code = ErrorCode.AP_IN_USE


class StoreError(NodeopsError):
    """The database failed to answer; try again later."""

    code = ErrorCode.INTERNAL


class TransientStoreError(StoreError):
    """The database gave up on this transaction for a passing reason; try again later."""


class LeaseLost(NodeopsError):
    """A cluster worker's lease is gone (it was paused or cut off past it, and reaped): it may write nothing more."""

    code = ErrorCode.INTERNAL

    def __init__(self, worker_id: str) -> None:
        super().__init__(f"worker {worker_id} no longer holds its lease; it writes nothing more and stops")


class PackageUnavailable(NodeopsError):
    """The agent package cannot be read from the database."""


class TransportError(NodeopsError):
    """The host could not be reached or the command did not succeed."""

    def __init__(self, message: str | None = None, *, host: str = "") -> None:
        self.host = host
        super().__init__(message)


class AuthFailed(TransportError):
    """The host refused the login: check the account, password or key."""


class PrivilegeRefused(TransportError):
    """The account may not install: it is not root, may not ``sudo -n``, and cannot write the install path."""


class AccessPointUnreachable(TransportError):
    """The host cannot reach the URL its agent will report to."""


class HostUnreachable(TransportError):
    """The host did not answer on its SSH port."""


class CommandTimeout(TransportError):
    """The command did not finish in time and was stopped."""

    def __init__(self, *, host: str = "", timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(f"command timed out after {timeout_s:g} s and was stopped", host=host)


class CommandFailed(TransportError):
    """The command exited with a non-zero status."""

    def __init__(self, *, host: str = "", exit_status: int, detail: str = "") -> None:
        self.exit_status = exit_status
        message = f"command exited with status {exit_status}"
        super().__init__(f"{message}: {detail}" if detail else message, host=host)


class MixedManualHosts(NodeopsError):
    """不允许混合操作【手动安装】和【自动安装】的主机"""

    code = ErrorCode.MIXED_MANUAL_HOSTS


class HostNotExists(NotFound):
    """主机不存在"""

    code = ErrorCode.HOST_NOT_EXISTS


class InstallTokenRefused(NodeopsError):
    """A manual install's token that is unknown, already used, expired, or whose step has ended."""

    code = ErrorCode.FORBIDDEN
