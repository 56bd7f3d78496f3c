"""What the engine reads and writes around a run: the work of a task, job aggregation, recovery.

A host's agent state (heartbeats, status, version, token) is written in ``store.agents``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nodeops.domain.rollout import Rollout
from nodeops.domain.status import ACTIVE, JobStatistics, Status, aggregate_job_status
from nodeops.store import proxies, webhooks
from nodeops.store.db import ReadHandle, session_cursor, stored_utc
from nodeops.store.models import InstanceRecord, Job, RecordStep, SubscriptionStep, SubscriptionTask, utcnow
from nodeops.store.proxies import Route, RouteChooser

SCRIPT_HOOKS_PARAM = "script_hooks"  # the subscription step's params that keep a job's hooks (service.job_launch)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedRun:
    """One step of a record as the engine will run it."""

    index: int
    code: str
    name: str
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HostWork:
    """Everything one host pipeline needs: its record, its host (credentials still sealed), its steps, and for
    a host not reached directly the route chosen when the work was read (``store.proxies``)."""

    record_id: int
    job_id: int
    instance_id: str
    bk_host_id: int
    ip: str
    bk_cloud_id: int
    os_type: str
    transport: str
    ssh_port: int
    account: str | None
    auth_type: str
    password_enc: bytes | None
    key_enc: bytes | None
    credentials_expire_at: datetime | None
    setup_path: str
    server_url: str
    agent_version: str | None
    steps: tuple[PlannedRun, ...]
    # the SSH host keys trusted for address:ssh_port when the work was read ("algorithm base64"); None: not read
    host_keys: tuple[str, ...] | None = None
    address: str = ""  # where the service logs in to the host (network spec §13.1); empty: ``ip``
    node_type: str = proxies.AGENT
    outer_server_url: str | None = None  # the access point's URL as seen from outside (a proxy reports there)
    owned_path: bool = False  # no root, no sudo: the account installs as itself into setup_path (§18)
    route: Route | None = None  # None: reached directly
    batch: int | None = None  # its rolling batch (None: the job has none, or this is a retry's record)
    is_manual: bool = False  # installed by someone running get_job_commands' command on it (network spec §16)
    job_type: str = ""  # its job's (INSTALL_AGENT, ...): the label of its steps' durations (``nodeops.metrics``)

    @property
    def ssh_address(self) -> str:
        return self.address or self.ip


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockedWork:
    """A PENDING record of a task that cannot run: its host, or the host's access point, no longer exists."""

    record_id: int
    job_id: int
    instance_id: str
    bk_host_id: int | None
    ap_id: int | None  # the access point that does not exist; None when the host itself is gone
    step_index: int  # the first step not yet SUCCESS: where the engine says why the record did not run


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskWork:
    """Every PENDING record of a task, in record order: the ones to run, and the ones that cannot run, with the
    job's rollout when its records have batches (None: every host at once, no threshold)."""

    runnable: list[HostWork]
    blocked: list[BlockedWork]
    rollout: Rollout | None = None


def pending_work(session: Session, *, task_id: int) -> TaskWork:
    """The PENDING records of a task with their hosts and steps. A record whose host or access point is
    missing is in ``blocked``, never left out: it must still be ended, or its job would never finish."""
    work = _work(session, "r.task_id = {p} AND r.status = 'PENDING'", task_id)
    if any(item.batch is not None for item in work.runnable):
        stored = session.scalar(
            select(Job.rollout)
            .join(SubscriptionTask, SubscriptionTask.job_id == Job.id)
            .where(SubscriptionTask.id == task_id)
        )
        work = replace(work, rollout=Rollout.stored(stored))
    return work


def record_work(session: Session, *, record_id: int) -> HostWork | BlockedWork | None:
    """One record's work, whatever its status (a cluster worker reads it once it has claimed it)."""
    work = _work(session, "r.id = {p}", record_id)
    return (work.runnable or work.blocked or [None])[0]


# the address a host is known by, as HostWork.ip has it: its IPv4 address, else its IPv6 one
_ADDRESS = proxies.inner_address_sql("h")
_SSH_ADDRESS = proxies.ssh_address_sql("h")


def _work(session: Session, where: str, value: int) -> TaskWork:
    """Three statements on the session's driver cursor (records with host and access point, their steps, the
    host keys of their addresses), whatever the number of records: a worker reads this once per host. Hosts
    reached through a proxy or a jump server get their route, which reads the candidates of each area or
    channel once."""
    cur, p = session_cursor(session)
    where = where.format(p=p)
    cur.execute(
        "SELECT r.id, r.job_id, r.instance_id, r.bk_host_id, h.bk_host_id, h.ap_id, a.id, "
        f"{_ADDRESS}, h.bk_cloud_id, h.os_type, h.transport, h.ssh_port, h.account, h.auth_type, h.password_enc, "
        "h.key_enc, h.credentials_expire_at, COALESCE(NULLIF(h.setup_path, ''), a.linux_setup_path), a.server_url, "
        f"h.agent_version, {_SSH_ADDRESS}, h.node_type, h.install_channel_id, a.outer_server_url, r.batch, "
        "h.is_manual, h.owned_path, j.job_type "
        "FROM instance_records r LEFT JOIN hosts h ON h.bk_host_id = r.bk_host_id "
        "LEFT JOIN jobs j ON j.id = r.job_id "
        f"LEFT JOIN access_points a ON a.id = h.ap_id WHERE {where} ORDER BY r.id",
        (value,),
    )
    rows = cur.fetchall()
    steps: dict[int, list[PlannedRun]] = {}
    keys: dict[tuple[str, int], list[str]] = {}
    if rows:
        cur.execute(
            "SELECT s.record_id, s.step_index, s.code, s.name, s.status FROM record_steps s "
            f"JOIN instance_records r ON r.id = s.record_id WHERE {where} ORDER BY s.record_id, s.step_index",
            (value,),
        )
        for record_id, index, code, name, status in cur.fetchall():
            steps.setdefault(record_id, []).append(PlannedRun(index=index, code=code, name=name, status=status))
        cur.execute(
            "SELECT DISTINCT k.host, k.port, k.algorithm, k.key FROM host_keys k "
            f"JOIN hosts h ON k.host = {_SSH_ADDRESS} AND k.port = h.ssh_port "
            f"JOIN instance_records r ON r.bk_host_id = h.bk_host_id WHERE {where} ORDER BY k.host, k.port",
            (value,),
        )
        for host, port, algorithm, key in cur.fetchall():
            keys.setdefault((host, port), []).append(f"{algorithm} {key}")
    runnable: list[HostWork] = []
    blocked: list[BlockedWork] = []
    routes = RouteChooser(cur, p)
    for row in rows:
        record_id, job_id, instance_id, record_host_id, host_id, ap_id, found_ap, ip = row[:8]
        planned = tuple(steps.get(record_id, ()))
        if host_id is None or found_ap is None:
            first = next((step for step in planned if step.status != Status.SUCCESS.value), None)
            blocked.append(
                BlockedWork(
                    record_id=record_id,
                    job_id=job_id or 0,
                    instance_id=instance_id,
                    bk_host_id=record_host_id,
                    ap_id=None if host_id is None else ap_id,
                    step_index=first.index if first else (planned[0].index if planned else 0),
                )
            )
            continue
        cloud, os_type, transport, port, account, auth_type, password, key, expire, path, url, version = row[8:20]
        address, node_type, channel_id, outer_url, batch, is_manual, owned_path, job_type = row[20:]
        route = None
        if transport != "local" and proxies.needs_route(
            node_type=node_type, bk_cloud_id=cloud, install_channel_id=channel_id
        ):
            route = routes.route(bk_cloud_id=cloud, install_channel_id=channel_id)
        runnable.append(
            HostWork(
                record_id=record_id,
                job_id=job_id or 0,
                instance_id=instance_id,
                bk_host_id=host_id,
                ip=ip,
                bk_cloud_id=cloud,
                os_type=os_type,
                transport=transport,
                ssh_port=port,
                account=account,
                auth_type=auth_type,
                password_enc=None if password is None else bytes(password),
                key_enc=None if key is None else bytes(key),
                credentials_expire_at=stored_utc(expire),
                setup_path=path,
                server_url=url,
                agent_version=version,
                steps=planned,
                host_keys=tuple(keys.get((address, port), ())),
                address=address,
                node_type=node_type,
                outer_server_url=outer_url,
                route=route,
                batch=batch,
                is_manual=bool(is_manual),
                owned_path=bool(owned_path),
                job_type=job_type or "",
            )
        )
    return TaskWork(runnable=runnable, blocked=blocked)


def script_hook(session: Session, *, job_id: int, name: str) -> str | None:
    """The sh script of the job's script hook ``name``, kept in its subscription step's params (None: none)."""
    params = session.scalar(
        select(SubscriptionStep.params)
        .join(Job, Job.subscription_id == SubscriptionStep.subscription_id)
        .where(Job.id == job_id)
        .order_by(SubscriptionStep.index)
        .limit(1)
    )
    for hook in (params or {}).get(SCRIPT_HOOKS_PARAM) or ():
        if isinstance(hook, dict) and hook.get("name") == name and isinstance(hook.get("script"), str):
            return str(hook["script"])
    return None


def refresh_job(session: Session, *, job_id: int) -> Status:
    """Recount the job's latest record per instance (plus hosts refused up front) and store its status.

    On PostgreSQL the job's row is locked first (``FOR UPDATE``), so two processes ending a job's last hosts at
    once recount one after the other: the second reads the records after the first has committed, and the job
    cannot be left RUNNING by a recount that read before the other host ended. Call it in its own short
    transaction, after the records' changes are committed.

    The recount that finds the job ended with none of its records active any more (the end of its first run, of
    a retry, of a revoke once its running hosts stopped) also records the webhook delivery of that end, in the
    same transaction (``store.webhooks.record_end``): a job never ends without it.
    """
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None:
        return Status.PENDING
    latest = (
        select(InstanceRecord.instance_id, func.max(InstanceRecord.attempt).label("attempt"))
        .where(InstanceRecord.job_id == job_id)
        .group_by(InstanceRecord.instance_id)
        .subquery()
    )
    statuses = [
        Status(s)
        for s in session.scalars(
            select(InstanceRecord.status)
            .join(
                latest,
                (latest.c.instance_id == InstanceRecord.instance_id) & (latest.c.attempt == InstanceRecord.attempt),
            )
            .where(InstanceRecord.job_id == job_id)
        )
    ]
    statuses += [Status(h.get("status") or Status.IGNORED) for h in job.error_hosts]
    stats = JobStatistics.count(statuses)
    status = aggregate_job_status(stats, Status(job.status))
    job.status = status.value
    job.statistics = stats.as_dict()
    if status not in ACTIVE and job.end_at is None:
        job.end_at = utcnow()
    if status not in ACTIVE:
        cur, p = session_cursor(session)
        if not job_has_active_records(cur, p, job_id=job_id):
            webhooks.record_end(session, job)
    return status


def refresh_job_if_settled(session: Session, *, job_id: int) -> bool:
    """Recount the job (``refresh_job``) only if none of its records is PENDING or RUNNING any more; returns
    whether it did. What a cluster worker calls after each host: a recount reads every record of the job, and
    while some still run its status stays RUNNING anyway. Of two workers ending a job's last records at once,
    each checks after its own commit, so at least one finds nothing active and recounts."""
    cur, p = session_cursor(session)
    if job_has_active_records(cur, p, job_id=job_id):
        return False
    refresh_job(session, job_id=job_id)
    return True


def job_has_active_records(cur: ReadHandle, paramstyle: str, *, job_id: int) -> bool:
    """Whether a record of the job is still PENDING or RUNNING (one short read, on any driver cursor)."""
    active = ", ".join(f"'{status.value}'" for status in sorted(ACTIVE))
    cur.execute(
        "SELECT 1 FROM instance_records r JOIN subscription_tasks t ON t.id = r.task_id "
        f"WHERE t.job_id = {paramstyle} AND r.status IN ({active}) LIMIT 1",
        (job_id,),
    )
    return cur.fetchone() is not None


def interrupted_records(session: Session) -> list[tuple[int, int, int]]:
    """``(record_id, job_id, running step index or -1)`` of every record left PENDING or RUNNING: at start-up
    no pipeline runs yet, so these were interrupted by the end of a previous process (crash recovery)."""
    rows = session.execute(
        select(InstanceRecord.id, InstanceRecord.job_id).where(
            InstanceRecord.status.in_([Status.PENDING.value, Status.RUNNING.value])
        )
    ).all()
    result: list[tuple[int, int, int]] = []
    for record_id, job_id in rows:
        step = session.scalar(
            select(RecordStep.step_index).where(
                RecordStep.record_id == record_id, RecordStep.status == Status.RUNNING.value
            )
        )
        result.append((record_id, job_id or 0, -1 if step is None else step))
    return result
