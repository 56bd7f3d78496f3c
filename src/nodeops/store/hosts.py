"""The host inventory as jobs use it: register or update a host, look hosts up, find busy ones."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from nodeops.domain.status import Status
from nodeops.store.db import follow_explicit_id, lock_for_update
from nodeops.store.models import Host, HostModule, InstanceRecord, ServiceInstance


@dataclass(frozen=True, slots=True, kw_only=True)
class Login:
    """How the engine reaches a host and where it installs: transport, port, account, the credentials sealed (and
    when they are forgotten), the access point and the install path."""

    transport: str = "ssh"
    ssh_port: int = 22
    account: str | None = None
    auth_type: str = "PASSWORD"
    password_enc: bytes | None = field(default=None, repr=False)
    key_enc: bytes | None = field(default=None, repr=False)
    credentials_expire_at: datetime | None = None
    ap_id: int = 1
    setup_path: str | None = None
    is_manual: bool = False  # installed by someone running get_job_commands' command (network spec §16)
    owned_path: bool = False  # the account installs as itself into setup_path (no root, no sudo)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostLogin:
    """What a job knows about a host: identity, placement, how to reach it."""

    bk_biz_id: int
    bk_cloud_id: int
    inner_ip: str | None
    inner_ipv6: str | None
    os_type: str
    login: Login
    bk_host_id: int | None = None


def find_host_id(session: Session, *, bk_cloud_id: int, inner_ip: str | None, inner_ipv6: str | None) -> int | None:
    query = select(Host.bk_host_id).where(Host.bk_cloud_id == bk_cloud_id)
    query = query.where(Host.inner_ip == inner_ip) if inner_ip else query.where(Host.inner_ipv6 == inner_ipv6)
    return session.scalar(query)


def claim_host(session: Session, host_id: int | None, *, bk_host_id: int | None, bk_biz_id: int) -> tuple[Host, bool]:
    """The host ``host_id``, or a new one (with ``bk_host_id`` when given), in business ``bk_biz_id``: a host that
    changes business leaves its old one's modules. Returns the host and whether it is new."""
    host = session.get(Host, host_id) if host_id is not None else None
    created = host is None
    if host is None:
        host = Host(bk_host_id=bk_host_id) if bk_host_id else Host()
        session.add(host)
        if bk_host_id:
            follow_explicit_id(session, Host.__tablename__, "bk_host_id", bk_host_id)
    elif host.bk_biz_id != bk_biz_id:
        leave_business(session, host.bk_host_id)
    host.bk_biz_id = bk_biz_id
    return host, created


def upsert_host(session: Session, login: HostLogin) -> int:
    """Register the host (or update the one with this bk_host_id / cloud + IP); returns its bk_host_id."""
    host_id = login.bk_host_id or find_host_id(
        session, bk_cloud_id=login.bk_cloud_id, inner_ip=login.inner_ip, inner_ipv6=login.inner_ipv6
    )
    host, _created = claim_host(session, host_id, bk_host_id=login.bk_host_id, bk_biz_id=login.bk_biz_id)
    host.bk_cloud_id = login.bk_cloud_id
    host.inner_ip = login.inner_ip
    host.inner_ipv6 = login.inner_ipv6
    host.os_type = login.os_type
    copy_login(host, login.login)
    session.flush()
    return host.bk_host_id


def copy_login(host: Host, login: Login) -> None:
    """Set the host's way in from ``login``."""
    for column in fields(Login):
        setattr(host, column.name, getattr(login, column.name))


def leave_business(session: Session, bk_host_id: int) -> None:
    """A host moving to another business leaves its modules and service instances behind (as CMDB's transfer
    to another business does)."""
    session.execute(delete(HostModule).where(HostModule.bk_host_id == bk_host_id))
    session.execute(delete(ServiceInstance).where(ServiceInstance.bk_host_id == bk_host_id))


def hosts_by_id(session: Session, host_ids: list[int]) -> dict[int, Host]:
    return {h.bk_host_id: h for h in session.scalars(select(Host).where(Host.bk_host_id.in_(host_ids)))}


def lock_hosts(session: Session) -> None:
    """Until ``session`` ends, be the only session registering hosts or starting jobs on them: what it then
    reads of hosts (is this address known? is this host busy?) stays true until it commits. Two installs of one
    new address would otherwise both create it, and two jobs on one host both find it idle."""
    lock_for_update(session, "hosts")


def busy_host_ids(session: Session, host_ids: list[int]) -> set[int]:
    """Hosts with an instance PENDING or RUNNING in some job (Node Manager refuses them)."""
    rows = session.scalars(
        select(InstanceRecord.bk_host_id).where(
            InstanceRecord.bk_host_id.in_(host_ids),
            InstanceRecord.status.in_([Status.PENDING.value, Status.RUNNING.value]),
        )
    )
    return {int(r) for r in rows if r is not None}


def forget_expired_credentials(session: Session, *, now: datetime) -> int:
    """Drop sealed passwords and keys whose retention has passed (spec §9.4); returns how many hosts."""
    result = session.execute(
        update(Host)
        .where(Host.credentials_expire_at.is_not(None), Host.credentials_expire_at <= now)
        .where((Host.password_enc.is_not(None)) | (Host.key_enc.is_not(None)))
        .values(password_enc=None, key_enc=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)
