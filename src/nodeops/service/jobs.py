"""Job use cases: install_job and operate_job create a job (through a one-off subscription) and run it.

Hosts are validated one by one; a host refused up front does not stop the others, it comes back in
``ip_filter`` with a reason (IGNORED: unknown, duplicated, missing credentials, busy in another running job;
FILTERED: the job type cannot handle its OS), as Node Manager's ``install_validate`` does (spec §6.3). A host
whose access point does not exist is refused the same way (IGNORED, ``unknown_ap``), so no record is created
that the engine could not run; ``ap_id`` -1 (Node Manager's 自动选择接入点) is the default access point. A job
whose every host is refused is not created: 3801018 with ``data.ip_filter``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from nodeops.crypto import SecretBox
from nodeops.domain.instance_id import MAX_HOST_ID, HostKey, host_instance_id
from nodeops.domain.params import int_value
from nodeops.domain.plans import JobType, plan_steps
from nodeops.domain.status import Status
from nodeops.engine import packages
from nodeops.engine.runner import Engine
from nodeops.engine.transports.ssh import login_name_problem
from nodeops.errors import ErrorCode, InvalidInput, NodeopsError
from nodeops.settings import Settings
from nodeops.store import hosts as host_rows
from nodeops.store import jobs
from nodeops.store import packages as package_rows
from nodeops.store.db import Database
from nodeops.store.models import Host, utcnow

INSTALL_TYPES = frozenset({JobType.INSTALL_AGENT, JobType.REINSTALL_AGENT})
OPERATE_TYPES = frozenset({JobType.UPGRADE_AGENT, JobType.RESTART_AGENT, JobType.RELOAD_AGENT, JobType.UNINSTALL_AGENT})
SUPPORTED_OS = frozenset({"LINUX"})
TRANSPORTS = frozenset({"ssh", "local"})
AUTH_TYPES = frozenset({"PASSWORD", "KEY"})
MAX_ACCOUNT_CHARS = 64  # the hosts.account column
MAX_INT32 = 2**31 - 1  # bk_biz_id, bk_cloud_id, ap_id and port are 32-bit columns
AGENT_VERSION_PARAM = "agent_version"  # in the subscription step's params: the package the job pushes
AUTO_AP_ID = -1  # Node Manager's 自动选择接入点 (network spec §15.3); nodeops has one default to choose


class AllHostsFiltered(NodeopsError):
    """All IPs were filtered (所有ip均被过滤)."""

    code = ErrorCode.ALL_FILTERED


@dataclass(frozen=True, slots=True, kw_only=True)
class HostRequest:
    """One host of an install request, validated; ``password``/``key`` stay in memory only until sealed."""

    index: int
    bk_biz_id: int
    bk_cloud_id: int
    inner_ip: str | None
    inner_ipv6: str | None
    os_type: str
    transport: str
    port: int
    account: str | None
    auth_type: str
    password: str | None = field(repr=False)
    key: str | None = field(repr=False)
    ap_id: int
    setup_path: str | None
    bk_host_id: int | None

    @property
    def ip(self) -> str:
        return self.inner_ip or self.inner_ipv6 or ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    host: Mapping[str, Any]
    status: Status
    exception: str
    msg: str

    def as_error_host(self) -> dict[str, Any]:
        return {**self.host, "status": self.status.value, "exception": self.exception, "msg": self.msg}


def parse_hosts(raw: object) -> list[HostRequest]:
    """Validate ``hosts``: every problem is named ``hosts[i].field``. Secrets never appear in messages."""
    if not isinstance(raw, list) or not raw:
        raise InvalidInput.field("hosts", "must be a non-empty list of hosts")
    problems: dict[str, str] = {}
    parsed: list[HostRequest] = []
    for index, item in enumerate(raw):
        where = f"hosts[{index}]"
        if not isinstance(item, dict):
            problems[where] = "must be an object"
            continue
        bad = len(problems)
        biz = _int(item, "bk_biz_id", where, problems, required=True)
        cloud = _int(item, "bk_cloud_id", where, problems, default=0)
        port = _int(item, "port", where, problems, default=22)
        ap_id = _ap_id(item, where, problems)
        host_id = _int(item, "bk_host_id", where, problems, default=None, maximum=MAX_HOST_ID)
        inner_ip = _ip(item, "inner_ip", 4, where, problems)
        inner_ipv6 = _ip(item, "inner_ipv6", 6, where, problems)
        if inner_ip is None and inner_ipv6 is None and f"{where}.inner_ip" not in problems:
            problems[f"{where}.inner_ip"] = "inner_ip or inner_ipv6 is required"
        os_type = str(item.get("os_type") or "LINUX").upper()
        transport = str(item.get("transport") or "ssh").lower()
        if transport not in TRANSPORTS:
            problems[f"{where}.transport"] = f"{transport!r} must be one of {', '.join(sorted(TRANSPORTS))}"
        auth_type = str(item.get("auth_type") or "PASSWORD").upper()
        if auth_type not in AUTH_TYPES:
            problems[f"{where}.auth_type"] = f"must be one of {', '.join(sorted(AUTH_TYPES))}"
        setup_path = item.get("setup_path")
        if setup_path is not None and (problem := _setup_path_problem(setup_path)):
            problems[f"{where}.setup_path"] = problem
        if port is not None and not 0 < port < 65536:
            problems[f"{where}.port"] = "must be 1-65535"
        account = _text(item.get("account"))
        if account is not None and (problem := _account_problem(account)):
            problems[f"{where}.account"] = f"the account of host {inner_ip or inner_ipv6 or '?'} {problem}"
        if len(problems) > bad or biz is None or cloud is None or port is None or ap_id is None:
            continue
        parsed.append(
            HostRequest(
                index=index,
                bk_biz_id=biz,
                bk_cloud_id=cloud,
                inner_ip=inner_ip,
                inner_ipv6=inner_ipv6,
                os_type=os_type,
                transport=transport,
                port=port,
                account=account,
                auth_type=auth_type,
                password=_text(item.get("password")),
                key=_text(item.get("key")),
                ap_id=ap_id,
                setup_path=setup_path,
                bk_host_id=host_id,
            )
        )
    if problems:
        raise InvalidInput(problems)
    return parsed


def _ap_id(item: Mapping[str, object], where: str, problems: dict[str, str]) -> int | None:
    """The host's access point id: none given, or -1, is the default access point. Whether it exists is
    checked when the job is created, where an unknown one refuses the host (``unknown_ap``)."""
    value = item.get("ap_id")
    if (isinstance(value, int) and not isinstance(value, bool) and value == AUTO_AP_ID) or value == str(AUTO_AP_ID):
        return package_rows.DEFAULT_AP_ID
    ap_id = _int(item, "ap_id", where, problems, default=package_rows.DEFAULT_AP_ID)
    if f"{where}.ap_id" in problems:
        problems[f"{where}.ap_id"] += "; give an access point id, or -1 for the default access point"
    return ap_id


def _unknown_access_point(ap_id: int, hint: str) -> tuple[Status, str, str]:
    """The refusal of a host whose access point does not exist (Node Manager: 接入点(id:{ap_id})不存在)."""
    return Status.IGNORED, "unknown_ap", f"access point {ap_id} does not exist; {hint}"


def _account_problem(account: str) -> str | None:
    """Why ``account`` cannot be a host's login: longer than its column, or refused by SSH's SASLprep."""
    if len(account) > MAX_ACCOUNT_CHARS:
        return f"must be at most {MAX_ACCOUNT_CHARS} characters"
    return login_name_problem(account)


def _setup_path_problem(value: object) -> str | None:
    """Why ``value`` cannot be an install path: it must be absolute, normalised and at least two levels deep,
    so an agent never lands in (or is uninstalled from) ``/`` or a system folder like ``/usr``."""
    if not isinstance(value, str) or not value.startswith("/"):
        return "must be an absolute path such as /usr/local/nodeops-agent"
    parts = value.rstrip("/").split("/")[1:]
    if len(value) > 255 or any(part in ("", ".", "..") for part in parts) or not value.isprintable():
        return "must be a normalised absolute path (no '.', '..' or empty parts), at most 255 characters"
    if len(parts) < 2:
        return f"{value!r} is too shallow: give a folder of its own, e.g. /opt/nodeops-agent"
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(
    item: Mapping[str, object],
    name: str,
    where: str,
    problems: dict[str, str],
    *,
    required: bool = False,
    default: int | None = None,
    maximum: int = MAX_INT32,
) -> int | None:
    value = item.get(name)
    if value is None or value == "":
        if required:
            problems[f"{where}.{name}"] = "is required (an integer)"
        return default
    number = int_value(value, f"{where}.{name}", problems, minimum=0, maximum=maximum)  # what the columns hold
    return default if number is None else number


def _ip(item: Mapping[str, object], name: str, family: int, where: str, problems: dict[str, str]) -> str | None:
    value = item.get(name)
    if value is None or value == "":
        return None
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        problems[f"{where}.{name}"] = f"{value!r} is not an IPv{family} address"
        return None
    if address.version != family:
        problems[f"{where}.{name}"] = f"{value!r} is not an IPv{family} address"
        return None
    return address.compressed


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


def _operate_refusal(
    job_type: JobType, host_id: int, host: Host | None, *, seen: set[int], busy: set[int], access_points: set[int]
) -> tuple[Status, str, str] | None:
    """Why operate_job refuses this host up front (status, exception, msg), or None to run it."""
    if host_id in seen:
        return Status.IGNORED, "duplicated", f"bk_host_id {host_id} appears twice"
    if host is None:
        return Status.IGNORED, "unknown_host", f"no host with bk_host_id {host_id}; install it first"
    if host_id in busy:
        return Status.IGNORED, "running", "the host is busy in another running job"
    if host.agent_status == "NOT_INSTALLED" and job_type != JobType.UNINSTALL_AGENT:
        return Status.IGNORED, "not_installed", "no agent is installed on this host"
    if host.os_type not in SUPPORTED_OS:
        return Status.FILTERED, "os_not_supported", f"{job_type} does not support {host.os_type}"
    if host.ap_id not in access_points:  # deleted since the host was installed, or imported with it
        return _unknown_access_point(
            host.ap_id, "reinstall the host with an existing ap_id, or -1 for the default access point"
        )
    return None


class JobRunner:
    """Creates jobs in the store and hands them to the engine."""

    def __init__(self, db: Database, engine: Engine, settings: Settings, box: SecretBox) -> None:
        self.db = db
        self.engine = engine
        self.settings = settings
        self.box = box

    async def install(
        self, *, job_type: JobType, hosts: Sequence[HostRequest], created_by: str, from_system: str
    ) -> StartedJob:
        """Register the hosts, refuse what cannot run, create the job and start it."""
        if job_type not in INSTALL_TYPES:
            raise InvalidInput.field("job_type", f"must be one of {', '.join(sorted(INSTALL_TYPES))}")
        package = await self.db.call(lambda: packages.choose(self.db))
        started = await self.db.call(
            lambda: self._create_install(job_type, hosts, created_by, from_system, package.version)
        )
        self.engine.submit(started.job_id, started.task_id, package)
        return started

    async def operate(
        self,
        *,
        job_type: JobType,
        bk_host_ids: Sequence[int],
        created_by: str,
        from_system: str,
        version: str | None = None,
    ) -> StartedJob:
        """Run an agent operation on known hosts; UPGRADE moves them to ``version`` (default the newest)."""
        if job_type not in OPERATE_TYPES:
            raise InvalidInput.field("job_type", f"must be one of {', '.join(sorted(OPERATE_TYPES))}")
        if not bk_host_ids:
            raise InvalidInput.field("bk_host_id", "give at least one bk_host_id")
        package = await self.db.call(lambda: packages.choose(self.db, version))
        started = await self.db.call(
            lambda: self._create_operate(job_type, bk_host_ids, created_by, from_system, package.version)
        )
        self.engine.submit(started.job_id, started.task_id, package)
        return started

    def _create_operate(
        self, job_type: JobType, bk_host_ids: Sequence[int], created_by: str, from_system: str, version: str
    ) -> StartedJob:
        refused: list[Refused] = []
        with self.db.session() as session:
            host_rows.lock_hosts(session)
            known = host_rows.hosts_by_id(session, list(bk_host_ids))
            busy = host_rows.busy_host_ids(session, list(known))
            access_points = package_rows.existing_access_points(session, {host.ap_id for host in known.values()})
            instances: list[jobs.NewInstance] = []
            seen: set[int] = set()
            for host_id in bk_host_ids:
                host = known.get(host_id)
                summary: dict[str, Any] = {"bk_host_id": host_id, "ip": host.inner_ip if host else ""}
                refusal = _operate_refusal(job_type, host_id, host, seen=seen, busy=busy, access_points=access_points)
                if refusal is not None:
                    refused.append(Refused(host=summary, status=refusal[0], exception=refusal[1], msg=refusal[2]))
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
            ip_filter = [r.as_error_host() for r in refused]
            if not instances:
                raise AllHostsFiltered(
                    "every host was refused; see data.ip_filter", data={"job_id": "", "ip_filter": ip_filter}
                )
            scope = sorted({known[i.bk_host_id].bk_biz_id for i in instances if i.bk_host_id in known})
            created = jobs.create_job(
                session,
                job_type=job_type,
                created_by=created_by,
                from_system=from_system,
                bk_biz_scope=scope,
                instances=instances,
                steps=plan_steps(job_type),
                error_hosts=ip_filter,
                step_params={AGENT_VERSION_PARAM: version},  # a retry pushes the same package
            )
        return StartedJob(
            job_id=created.job_id, subscription_id=created.subscription_id, task_id=created.task_id, ip_filter=ip_filter
        )

    def _create_install(
        self, job_type: JobType, hosts: Sequence[HostRequest], created_by: str, from_system: str, version: str
    ) -> StartedJob:
        refused: list[Refused] = []
        accepted: list[HostRequest] = []
        seen: set[tuple[int, str]] = set()
        for host in hosts:
            key = (host.bk_cloud_id, host.ip)
            if key in seen:
                refused.append(
                    Refused(
                        host=_summary(host),
                        status=Status.IGNORED,
                        exception="duplicated",
                        msg=f"{host.ip} appears twice in this request",
                    )
                )
            elif host.os_type not in SUPPORTED_OS:
                refused.append(
                    Refused(
                        host=_summary(host),
                        status=Status.FILTERED,
                        exception="os_not_supported",
                        msg=f"{job_type} supports {', '.join(sorted(SUPPORTED_OS))}, not {host.os_type}",
                    )
                )
            elif host.transport == "ssh" and not (host.account and (host.password or host.key)):
                refused.append(
                    Refused(
                        host=_summary(host),
                        status=Status.IGNORED,
                        exception="no_credentials",
                        msg="an ssh host needs account and password (or key)",
                    )
                )
            else:
                accepted.append(host)
            seen.add(key)
        expire = (
            utcnow() + timedelta(seconds=self.settings.credentials_retention_s)
            if self.settings.credentials_retention_s
            else None
        )
        with self.db.session() as session:
            host_rows.lock_hosts(session)
            access_points = package_rows.existing_access_points(session, {host.ap_id for host in accepted})
            registered: list[tuple[HostRequest, int]] = []
            for host in accepted:
                if host.ap_id not in access_points:  # not registered: the engine could not run it
                    status, exception, msg = _unknown_access_point(
                        host.ap_id, "give an existing ap_id, or -1 for the default access point"
                    )
                    refused.append(Refused(host=_summary(host), status=status, exception=exception, msg=msg))
                    continue
                host_id = host_rows.upsert_host(
                    session,
                    host_rows.HostLogin(
                        bk_biz_id=host.bk_biz_id,
                        bk_cloud_id=host.bk_cloud_id,
                        inner_ip=host.inner_ip,
                        inner_ipv6=host.inner_ipv6,
                        os_type=host.os_type,
                        transport=host.transport,
                        ssh_port=host.port,
                        account=host.account,
                        auth_type=host.auth_type,
                        password_enc=self.box.seal(host.password) if host.password else None,
                        key_enc=self.box.seal(host.key) if host.key else None,
                        credentials_expire_at=expire,
                        ap_id=host.ap_id,
                        setup_path=host.setup_path,
                        bk_host_id=host.bk_host_id,
                    ),
                )
                registered.append((host, host_id))
            busy = host_rows.busy_host_ids(session, [host_id for _h, host_id in registered])
            instances: list[jobs.NewInstance] = []
            for host, host_id in registered:
                if host_id in busy:
                    refused.append(
                        Refused(
                            host={**_summary(host), "bk_host_id": host_id},
                            status=Status.IGNORED,
                            exception="running",
                            msg="the host is busy in another running job",
                        )
                    )
                    continue
                host_key = HostKey.of(host.ip, host.bk_cloud_id)
                # the ip form for a host the caller did not name by id, as Node Manager (spec §4)
                instance = (
                    host_instance_id(bk_host_id=host_id) if host.bk_host_id else host_instance_id(host_key=host_key)
                )
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
            ip_filter = [r.as_error_host() for r in refused]
            if not instances:  # raising rolls the registrations back with the rest
                raise AllHostsFiltered(
                    "every host was refused; see data.ip_filter", data={"job_id": "", "ip_filter": ip_filter}
                )
            created = jobs.create_job(
                session,
                job_type=job_type,
                created_by=created_by,
                from_system=from_system,
                bk_biz_scope=sorted({h.bk_biz_id for h, _id in registered}),
                instances=instances,
                steps=plan_steps(job_type),
                error_hosts=ip_filter,
                step_params={AGENT_VERSION_PARAM: version},  # a retry pushes the same package
            )
        return StartedJob(
            job_id=created.job_id, subscription_id=created.subscription_id, task_id=created.task_id, ip_filter=ip_filter
        )
