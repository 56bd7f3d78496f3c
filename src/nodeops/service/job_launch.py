"""Launching jobs: ``JobLauncher`` creates install and operate jobs (through a one-off subscription), and
``launch`` is the one way any new task (a job's first, a retry, a subscription's run) gets its agent package
and reaches the engine.

The hosts of a request are parsed in ``host_requests``, then decided here one by one; a host refused up front
does not stop the others, it comes back in ``ip_filter`` with a reason (IGNORED: unknown, duplicated, missing
credentials, busy in another running job; FILTERED: the job type cannot handle its OS), as Node Manager's
``install_validate`` does (spec §6.3). A host whose access point does not exist is refused the same way
(IGNORED, ``unknown_ap``), so no record is created that the engine could not run. A job whose every host is
refused is not created: 3801018 with ``data.ip_filter``.

Proxies and P-Agents (network spec §13): every host of a job gets the node type the job makes it (``*_PROXY``:
PROXY; an agent job: AGENT in the direct area, PAGENT elsewhere). An agent of a cloud area whose area has no alive
proxy is refused (IGNORED, ``no_proxy``), except by RESTART_AGENT, as Node Manager; when that leaves no host,
the answer is 3801013 with the same ``data``. A proxy cannot be in the direct area (3801006). A host of an install
channel needs the channel to exist in its area (3801037) and each of its jump servers in the inventory with a
login (3801023); it is then reached through them, and needs no proxy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from nodeops.crypto import SecretBox
from nodeops.domain.instance_id import HostKey, host_instance_id
from nodeops.domain.plans import PROXY_JOB_TYPES, JobType, ScriptHook, plan_steps
from nodeops.domain.rollout import Rollout
from nodeops.domain.status import Status
from nodeops.engine import packages
from nodeops.engine.dispatch import Dispatcher
from nodeops.errors import ErrorCode, InstallChannelNotFound, InvalidInput, NodeopsError
from nodeops.service import cloud_areas
from nodeops.service.host_requests import HostRequest, proxy_problems
from nodeops.service.webhooks import default_webhook_url
from nodeops.settings import Settings
from nodeops.store import hosts as host_rows
from nodeops.store import jobs, proxies, webhooks
from nodeops.store import packages as package_rows
from nodeops.store.db import Database, Session
from nodeops.store.models import Host
from nodeops.store.pipelines import SCRIPT_HOOKS_PARAM

INSTALL_TYPES = frozenset(
    {
        JobType.INSTALL_AGENT,
        JobType.REINSTALL_AGENT,
        JobType.INSTALL_PROXY,
        JobType.REINSTALL_PROXY,
        JobType.REPLACE_PROXY,
    }
)
OPERATE_TYPES = frozenset(JobType) - INSTALL_TYPES
# the agent jobs Node Manager runs on a cloud area's hosts without an alive proxy (its install_validate skips
# RESTART): the step that reaches the host then fails saying so
NO_PROXY_EXEMPT = frozenset({JobType.RESTART_AGENT})
SUPPORTED_OS = frozenset({"LINUX"})
AGENT_VERSION_PARAM = "agent_version"  # in the subscription step's params: the package the job pushes


def hook_params(hooks: Sequence[ScriptHook]) -> dict[str, Any]:
    """The subscription step's params that keep a job's script hooks (none: no key, as before)."""
    if not hooks:
        return {}
    return {SCRIPT_HOOKS_PARAM: [{"name": h.name, "script": h.script, "when": h.when.value} for h in hooks]}


class AllHostsFiltered(NodeopsError):
    """All IPs were filtered (所有ip均被过滤)."""

    code = ErrorCode.ALL_FILTERED


class NoAliveProxy(NodeopsError):
    """不存在可用代理: every host was refused, some for want of an alive proxy in their cloud area
    (AliveProxyNotExistsError)."""

    code = ErrorCode.NO_ALIVE_PROXY


class ProxyInDirectArea(NodeopsError):
    """A proxy cannot be installed in the direct area (ProxyNotAvaliableError)."""

    code = ErrorCode.PROXY_IN_DIRECT_AREA


class JumpServerNotFound(NodeopsError):
    """A jump server of an install channel is not a host of the inventory with a login (HostNotExists)."""

    code = ErrorCode.HOST_NOT_EXISTS


Reason = tuple[Status, str, str]  # why a host is refused: its status, exception and msg in ip_filter
_BUSY: Reason = (Status.IGNORED, "running", "the host is busy in another running job")
_NO_PROXY: Reason = (Status.IGNORED, "no_proxy", "该「管控区域」下不存在代理")


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    host: Mapping[str, Any]
    status: Status
    exception: str
    msg: str

    @classmethod
    def because(cls, host: Mapping[str, Any], reason: Reason) -> Refused:
        status, exception, msg = reason
        return cls(host=host, status=status, exception=exception, msg=msg)

    def as_error_host(self) -> dict[str, Any]:
        return {**self.host, "status": self.status.value, "exception": self.exception, "msg": self.msg}


def _unknown_access_point(ap_id: int, hint: str) -> Reason:
    """The refusal of a host whose access point does not exist (Node Manager: 接入点(id:{ap_id})不存在)."""
    return Status.IGNORED, "unknown_ap", f"access point {ap_id} does not exist; {hint}"


def _summary(host: HostRequest) -> dict[str, Any]:
    return {
        "ip": host.ip,
        "inner_ip": host.inner_ip,
        "inner_ipv6": host.inner_ipv6,
        "bk_host_id": host.bk_host_id,
        "bk_cloud_id": host.bk_cloud_id,
        "bk_biz_id": host.bk_biz_id,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class StartedJob:
    job_id: int
    subscription_id: int
    task_id: int
    ip_filter: list[dict[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Decided:
    """A request's hosts, decided: the instances to run, the hosts refused (in the order decided), and the
    businesses of the job."""

    instances: list[jobs.NewInstance]
    refused: list[Refused]
    bk_biz_scope: set[int]


def _install_refusal(job_type: JobType, host: HostRequest, *, seen: set[tuple[int, str]]) -> Reason | None:
    """Why install_job refuses this host before registering it, or None to register it."""
    if (host.bk_cloud_id, host.ip) in seen:
        return Status.IGNORED, "duplicated", f"{host.ip} appears twice in this request"
    if host.os_type not in SUPPORTED_OS:
        return (
            Status.FILTERED,
            "os_not_supported",
            f"{job_type} supports {', '.join(sorted(SUPPORTED_OS))}, not {host.os_type}",
        )
    if host.transport == "ssh" and not host.is_manual and not (host.account and (host.password or host.key)):
        return Status.IGNORED, "no_credentials", "an ssh host needs account and password (or key)"
    return None


def _needs_alive_proxy(job_type: JobType, *, bk_cloud_id: int, install_channel_id: int | None) -> bool:
    """Whether the job reaches this host through an alive proxy of its area, which must exist when it starts."""
    return (
        not job_type.is_proxy
        and job_type not in NO_PROXY_EXEMPT
        and bk_cloud_id != proxies.DIRECT_AREA
        and install_channel_id is None
    )


def _node_type_refusal(job_type: JobType, host: Host) -> Reason | None:
    """A proxy is operated by the ``*_PROXY`` jobs, and only a proxy by them (Node Manager's wrong node type)."""
    is_proxy = host.node_type == proxies.PROXY
    if job_type.is_proxy == is_proxy:
        return None
    op = job_type.value.rpartition("_")[0]
    wanted = f"{op}_PROXY" if is_proxy else f"{op}_AGENT"
    return Status.IGNORED, "node_type", f"the host's node type is {host.node_type}: operate it with {wanted}"


def _operate_refusal(
    job_type: JobType,
    host_id: int,
    host: Host | None,
    *,
    seen: set[int],
    busy: set[int],
    access_points: set[int],
    alive_areas: set[int],
) -> Reason | None:
    """Why operate_job refuses this host up front, or None to run it."""
    if host_id in seen:
        return Status.IGNORED, "duplicated", f"bk_host_id {host_id} appears twice"
    if host is None:
        return Status.IGNORED, "unknown_host", f"no host with bk_host_id {host_id}; install it first"
    if (refusal := _node_type_refusal(job_type, host)) is not None:
        return refusal
    if host.bk_cloud_id not in alive_areas and _needs_alive_proxy(
        job_type, bk_cloud_id=host.bk_cloud_id, install_channel_id=host.install_channel_id
    ):
        return _NO_PROXY
    if host_id in busy:
        return _BUSY
    if host.agent_status == "NOT_INSTALLED" and job_type not in (JobType.UNINSTALL_AGENT, JobType.UNINSTALL_PROXY):
        return Status.IGNORED, "not_installed", "no agent is installed on this host"
    if host.os_type not in SUPPORTED_OS:
        return Status.FILTERED, "os_not_supported", f"{job_type} does not support {host.os_type}"
    if host.ap_id not in access_points:  # deleted since the host was installed, or imported with it
        return _unknown_access_point(
            host.ap_id, "reinstall the host with an existing ap_id, or -1 for the default access point"
        )
    return None


def _with_names(session: Session, refused: Sequence[Refused]) -> list[Refused]:
    """The refusals, those for want of an alive proxy with the names of their cloud area and business and an
    empty ``job_id``, as Node Manager's install_validate lists them (network spec §13.5)."""
    wanting = [r for r in refused if r.exception == _NO_PROXY[1]]
    if not wanting:
        return list(refused)
    clouds, bizs = proxies.names(
        session,
        bk_cloud_ids={r.host["bk_cloud_id"] for r in wanting},
        bk_biz_ids={r.host["bk_biz_id"] for r in wanting},
    )
    return [
        replace(
            r,
            host={
                **r.host,
                "bk_cloud_name": clouds.get(r.host["bk_cloud_id"], ""),
                "bk_biz_name": bizs.get(r.host["bk_biz_id"], ""),
                "job_id": "",
            },
        )
        if r.exception == _NO_PROXY[1]
        else r
        for r in refused
    ]


def _check_channel(session: Session, host: HostRequest) -> None:
    """A host's install channel must exist in its area, and each jump server be a host of it with a login."""
    assert host.install_channel_id is not None
    checked = proxies.check_channel(session, channel_id=host.install_channel_id, bk_cloud_id=host.bk_cloud_id)
    if checked is None:
        raise InstallChannelNotFound(
            channel_id=host.install_channel_id, bk_cloud_id=host.bk_cloud_id, host_index=host.index
        )
    if checked.missing_jump_servers:
        first = checked.missing_jump_servers[0]
        raise JumpServerNotFound(
            f"安装节点主机{first}不存在，请确认是否已安装AGENT (jump server {first} of install channel "
            f"「{checked.channel.name}」 is not a host of cloud area {checked.channel.bk_cloud_id} with a login)"
        )


class NewTask(Protocol):
    """What a launch created: a task of a job, for the engine to run."""

    @property
    def job_id(self) -> int: ...

    @property
    def task_id(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LaunchedTask:
    job_id: int
    task_id: int


Created = TypeVar("Created", bound=NewTask)
ChoosePackage = Callable[[str | None], str]


async def launch(db: Database, engine: Dispatcher, create: Callable[[ChoosePackage], Created]) -> Created:
    """Choose the agent package, create a task, then hand the task to the engine: how install, operate, retry,
    retry_node and a subscription's run all start work.

    ``create`` runs in a worker thread and writes the task in its own unit of work (a new job, the next attempt
    of some instances, a subscription's run). Before writing, it calls ``choose(version)`` once (None: the
    newest package), which raises InvalidInput if that version is not registered and returns the version
    chosen, for the job to remember.
    """
    chosen: list[packages.ChosenPackage] = []

    def choose(version: str | None) -> str:
        package = packages.choose(db, version)
        chosen.append(package)
        return package.version

    created = await db.call(lambda: create(choose))
    (package,) = chosen
    engine.submit(created.job_id, created.task_id, package)
    return created


class JobLauncher:
    """Creates install and operate jobs (hosts decided, the job and its first attempt written) and launches them."""

    def __init__(self, db: Database, engine: Dispatcher, settings: Settings, box: SecretBox) -> None:
        self.db = db
        self.engine = engine
        self.settings = settings
        self.box = box

    async def install(
        self,
        *,
        job_type: JobType,
        hosts: Sequence[HostRequest],
        created_by: str,
        from_system: str,
        rollout: Rollout | None = None,
        hooks: Sequence[ScriptHook] = (),
        webhook_url: str | None = None,
    ) -> StartedJob:
        """Register the hosts, refuse what cannot run, create the job and start it (in batches with a
        ``rollout``, each host running the script ``hooks``; its end notified at ``webhook_url``, else at the
        default of the settings). A proxy needs the address the service logs in to
        (3800001) and a cloud area (3801006)."""
        if job_type not in INSTALL_TYPES:
            raise InvalidInput.field("job_type", f"must be one of {', '.join(sorted(INSTALL_TYPES))}")
        if job_type in PROXY_JOB_TYPES:
            if problems := proxy_problems(hosts):
                raise InvalidInput(problems)
            direct = [host.ip for host in hosts if host.bk_cloud_id == proxies.DIRECT_AREA]
            if direct:
                raise ProxyInDirectArea(f"{', '.join(direct)} 是「直连区域」，不可以安装PROXY")
        return await self._start(
            job_type,
            created_by,
            from_system,
            None,
            lambda session: self._install_hosts(session, job_type, hosts),
            rollout=rollout,
            hooks=hooks,
            webhook_url=webhook_url,
        )

    async def operate(
        self,
        *,
        job_type: JobType,
        bk_host_ids: Sequence[int],
        created_by: str,
        from_system: str,
        version: str | None = None,
        rollout: Rollout | None = None,
        webhook_url: str | None = None,
    ) -> StartedJob:
        """Run an agent operation on known hosts (in batches with a ``rollout``); UPGRADE moves them to
        ``version`` (default the newest). Its end is notified at ``webhook_url``, else at the settings' default."""
        if job_type not in OPERATE_TYPES:
            raise InvalidInput.field("job_type", f"must be one of {', '.join(sorted(OPERATE_TYPES))}")
        if not bk_host_ids:
            raise InvalidInput.field("bk_host_id", "give at least one bk_host_id")
        return await self._start(
            job_type,
            created_by,
            from_system,
            version,
            lambda session: self._operate_hosts(session, job_type, bk_host_ids),
            rollout=rollout,
            webhook_url=webhook_url,
        )

    async def _start(
        self,
        job_type: JobType,
        created_by: str,
        from_system: str,
        version: str | None,
        decide: Callable[[Session], _Decided],
        *,
        rollout: Rollout | None,
        hooks: Sequence[ScriptHook] = (),
        webhook_url: str | None = None,
    ) -> StartedJob:
        """Create a job and launch it: the agent package of ``version`` (None: the newest) chosen, then, in one
        unit of work with the hosts locked, ``decide(session)`` decides the request's hosts and the job of those
        accepted is created (their first attempt, as its first task) with the refused ones in its ``ip_filter``.
        None accepted raises AllHostsFiltered (3801018) with ``data.ip_filter``, which rolls back whatever
        ``decide`` wrote (an install's host registrations)."""

        def create(choose: ChoosePackage) -> StartedJob:
            chosen = choose(version)
            with self.db.session() as session:
                host_rows.lock_hosts(session)
                decided = decide(session)
                ip_filter = [r.as_error_host() for r in _with_names(session, decided.refused)]
                if not decided.instances:
                    data = {"job_id": "", "ip_filter": ip_filter}
                    if any(r.exception == _NO_PROXY[1] for r in decided.refused):
                        raise NoAliveProxy(
                            "不存在可用代理: no alive proxy in the cloud area of the hosts refused with no_proxy "
                            "(see data.ip_filter); install a proxy there (INSTALL_PROXY) first",
                            data=data,
                        )
                    raise AllHostsFiltered("every host was refused; see data.ip_filter", data=data)
                created = jobs.create_job(
                    session,
                    job_type=job_type,
                    created_by=created_by,
                    from_system=from_system,
                    bk_biz_scope=sorted(decided.bk_biz_scope),
                    instances=decided.instances,
                    steps=plan_steps(job_type, hooks),
                    error_hosts=ip_filter,
                    # a retry pushes the same package and runs the same hooks (the steps name them)
                    step_params={AGENT_VERSION_PARAM: chosen, **hook_params(hooks)},
                    rollout=rollout,
                )
                notify_at = webhook_url or default_webhook_url(self.settings)
                if notify_at is not None:
                    webhooks.set_webhook_url(session, created.subscription_id, notify_at)
            return StartedJob(
                job_id=created.job_id,
                subscription_id=created.subscription_id,
                task_id=created.task_id,
                ip_filter=ip_filter,
            )

        return await launch(self.db, self.engine, create)

    @staticmethod
    def _operate_hosts(session: Session, job_type: JobType, bk_host_ids: Sequence[int]) -> _Decided:
        """operate_job's hosts: each known, idle, installed, of a supported OS and access point, or refused."""
        refused: list[Refused] = []
        known = host_rows.hosts_by_id(session, list(bk_host_ids))
        busy = host_rows.busy_host_ids(session, list(known))
        access_points = package_rows.existing_access_points(session, {host.ap_id for host in known.values()})
        alive_areas = proxies.areas_with_alive_proxy(session, {host.bk_cloud_id for host in known.values()})
        instances: list[jobs.NewInstance] = []
        seen: set[int] = set()
        for host_id in bk_host_ids:
            host = known.get(host_id)
            summary: dict[str, Any] = {"bk_host_id": host_id, "ip": host.inner_ip if host else ""}
            refusal = _operate_refusal(
                job_type,
                host_id,
                host,
                seen=seen,
                busy=busy,
                access_points=access_points,
                alive_areas=alive_areas,
            )
            if refusal is not None:
                if refusal is _NO_PROXY and host is not None:
                    summary.update(bk_cloud_id=host.bk_cloud_id, bk_biz_id=host.bk_biz_id)
                refused.append(Refused.because(summary, refusal))
            else:
                assert host is not None
                ip = host.inner_ip or host.inner_ipv6 or ""
                instances.append(
                    jobs.NewInstance(
                        instance_id=str(host_instance_id(bk_host_id=host_id)),
                        bk_host_id=host_id,
                        host_key=str(HostKey.of(ip, host.bk_cloud_id)),
                        instance_info={
                            "host": {
                                "bk_host_id": host_id,
                                "bk_host_innerip": host.inner_ip or "",
                                "bk_cloud_id": host.bk_cloud_id,
                                "bk_biz_id": host.bk_biz_id,
                            }
                        },
                    )
                )
            seen.add(host_id)
        scope = {known[i.bk_host_id].bk_biz_id for i in instances if i.bk_host_id in known}
        proxies.set_node_types(  # only the hosts the job runs on, as install_job
            session, [i.bk_host_id for i in instances if i.bk_host_id is not None], proxy_job=job_type.is_proxy
        )
        return _Decided(instances=instances, refused=refused, bk_biz_scope=scope)

    def _install_hosts(self, session: Session, job_type: JobType, hosts: Sequence[HostRequest]) -> _Decided:
        """install_job's hosts: each one of a supported OS, with credentials, an existing access point, and an
        alive proxy in its cloud area unless it has an install channel (which must be usable), registered (its
        login sealed, its node type set), then refused if busy in another running job. A host in a cloud area that
        does not exist refuses the request (InvalidInput) before anything is written."""
        hosts = cloud_areas.settle_hosts(session, hosts)  # ap_id -1 resolved with the host's area
        for host in hosts:
            if host.install_channel_id is not None:
                _check_channel(session, host)
        refused: list[Refused] = []
        accepted: list[HostRequest] = []
        seen: set[tuple[int, str]] = set()
        alive_areas = proxies.areas_with_alive_proxy(session, {host.bk_cloud_id for host in hosts})
        for host in hosts:
            refusal = _install_refusal(job_type, host, seen=seen)
            if (
                refusal is None
                and host.bk_cloud_id not in alive_areas
                and _needs_alive_proxy(
                    job_type, bk_cloud_id=host.bk_cloud_id, install_channel_id=host.install_channel_id
                )
            ):
                refusal = _NO_PROXY
            if refusal is not None:
                refused.append(Refused.because(_summary(host), refusal))
            else:
                accepted.append(host)
            seen.add((host.bk_cloud_id, host.ip))
        access_points = package_rows.existing_access_points(session, {host.ap_id for host in accepted})
        registered: list[tuple[HostRequest, int]] = []
        for host in accepted:
            if host.ap_id not in access_points:  # not registered: the engine could not run it
                hint = "give an existing ap_id, or -1 for the default access point"
                refused.append(Refused.because(_summary(host), _unknown_access_point(host.ap_id, hint)))
                continue
            host_id = host_rows.upsert_host(
                session,
                host_rows.HostLogin(
                    bk_biz_id=host.bk_biz_id,
                    bk_cloud_id=host.bk_cloud_id,
                    inner_ip=host.inner_ip,
                    inner_ipv6=host.inner_ipv6,
                    os_type=host.os_type,
                    login=host.sealed_login(self.box, retention_s=self.settings.credentials_retention_s),
                    bk_host_id=host.bk_host_id,
                ),
            )
            proxies.set_placement(
                session,
                host_id,
                install_channel_id=host.install_channel_id,
                outer_ip=host.outer_ip,
                login_ip=host.login_ip,
            )
            registered.append((host, host_id))
        busy = host_rows.busy_host_ids(session, [host_id for _h, host_id in registered])
        instances: list[jobs.NewInstance] = []
        for host, host_id in registered:
            if host_id in busy:
                refused.append(Refused.because({**_summary(host), "bk_host_id": host_id}, _BUSY))
                continue
            host_key = HostKey.of(host.ip, host.bk_cloud_id)
            # the ip form for a host the caller did not name by id, as Node Manager (spec §4)
            instance = host_instance_id(bk_host_id=host_id) if host.bk_host_id else host_instance_id(host_key=host_key)
            instances.append(
                jobs.NewInstance(
                    instance_id=str(instance),
                    bk_host_id=host_id,
                    host_key=str(host_key),
                    instance_info={
                        "host": {
                            "bk_host_id": host_id,
                            "bk_host_innerip": host.inner_ip or "",
                            "bk_host_innerip_v6": host.inner_ipv6 or "",
                            "bk_cloud_id": host.bk_cloud_id,
                            "bk_biz_id": host.bk_biz_id,
                        }
                    },
                )
            )
        # only the hosts the job runs on: one busy in another job keeps the node type that job gave it
        proxies.set_node_types(session, [i.bk_host_id for i in instances if i.bk_host_id], proxy_job=job_type.is_proxy)
        return _Decided(instances=instances, refused=refused, bk_biz_scope={h.bk_biz_id for h, _id in registered})
