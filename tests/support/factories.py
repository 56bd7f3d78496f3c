"""Builders of test data through the project's own store and service functions."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from nodeops.domain.answer import AnswerRenderer
from nodeops.domain.instance_id import HostKey, host_instance_id
from nodeops.domain.plans import JobType, PlannedStep, StepCode, plan_steps
from nodeops.domain.status import Status
from nodeops.service import admin
from nodeops.service.container import Services
from nodeops.store import agents as agent_rows
from nodeops.store import answers, hosts, jobs
from nodeops.store.log_reads import LogReads

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class AppCredentials:
    code: str
    secret: str


def make_app(services: Services, code: str = "esb_test", *, allow_username: bool = True) -> AppCredentials:
    new = admin.add_app(services.db, code=code, allow_username=allow_username)
    return AppCredentials(code=new.code, secret=new.secret)


def make_user(services: Services, name: str, *, superuser: bool = False, biz: Sequence[int] = ()) -> str:
    admin.add_user(services.db, username=name, is_superuser=superuser)
    if biz:
        admin.grant(services.db, username=name, bk_biz_ids=list(biz))
    return name


@dataclass(frozen=True)
class Agent:
    """A host whose agent is installed: what its heartbeat sends."""

    bk_host_id: int
    token: str

    def heartbeat(self, version: str = "1.0.0", **changes: object) -> dict[str, object]:
        return {"bk_host_id": self.bk_host_id, "token": self.token, "version": version, **changes}


def make_agents(services: Services, count: int) -> list[Agent]:
    """``count`` hosts (127.0.30.1 and on), each with an installed agent and its own token, set as the steps set it
    (``store.agents.set_agent``, which stores its SHA-256)."""
    with services.db.session() as session:
        host_ids = [
            hosts.upsert_host(
                session,
                hosts.HostLogin(
                    bk_biz_id=2,
                    bk_cloud_id=0,
                    inner_ip=f"127.0.{30 + n // 250}.{1 + n % 250}",
                    inner_ipv6=None,
                    os_type="LINUX",
                    login=hosts.Login(transport="local", setup_path="/tmp/nodeops-test/agent"),
                ),
            )
            for n in range(count)
        ]
    agents = [Agent(bk_host_id=host_id, token=f"token-of-agent-{host_id}") for host_id in host_ids]
    for agent in agents:
        token_hash = hashlib.sha256(agent.token.encode()).digest()
        agent_rows.set_agent(services.db, bk_host_id=agent.bk_host_id, status="INSTALLED", token_hash=token_hash)
    return agents


@dataclass(frozen=True)
class StepRun:
    """How one step of a made-up record ran: status, local (UTC+8) times, log lines."""

    status: Status
    start: str | None = None  # "YYYY-MM-DD HH:MM:SS" in Asia/Shanghai
    finish: str | None = None
    log: str = ""


@dataclass(frozen=True)
class MadeJob:
    job_id: int
    instance_id: str
    record_id: int
    bk_host_id: int | None
    host_key: str | None


def local_login(ip: str, setup_path: str, *, ap_id: int = 1) -> hosts.HostLogin:
    """A host of business 2 reached with the local transport (no credentials), installed at ``setup_path``."""
    return hosts.HostLogin(
        bk_biz_id=2,
        bk_cloud_id=0,
        inner_ip=ip,
        inner_ipv6=None,
        os_type="LINUX",
        login=hosts.Login(transport="local", ap_id=ap_id, setup_path=setup_path),
    )


def _at(local: str | None) -> datetime | None:
    return None if local is None else datetime.strptime(local, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)


def write_runs(
    services: Services,
    session: Session,
    record_id: int,
    plan: Sequence[PlannedStep],
    runs: Sequence[StepRun],
    *,
    record_status: Status | None = None,
) -> None:
    """Write how the record's steps ran (``runs``, in plan order) through ``jobs.write_progress``, as the
    engine writes progress; ``record_status`` also sets the record's status."""
    ran = list(zip(plan, runs, strict=False))
    jobs.write_progress(
        services.db,
        session,
        chunks=[(record_id, step.index, run.log) for step, run in ran if run.log],
        steps=[
            jobs.StepProgress(record_id, step.index, run.status, _at(run.start), _at(run.finish)) for step, run in ran
        ],
        records=[] if record_status is None else [jobs.RecordProgress(record_id, record_status, None, None)],
    )


def make_job(
    services: Services,
    *,
    runs: Sequence[StepRun],
    steps: Sequence[PlannedStep] | None = None,
    job_type: JobType = JobType.UPGRADE_AGENT,
    bk_biz_scope: Sequence[int] = (2,),
    bk_host_id: int | None = 1,
    ip: str = "127.0.0.1",
    bk_cloud_id: int = 0,
    keyed_by: str = "bk_host_id",
    record_status: Status | None = None,
    sealed: bool = False,
) -> MadeJob:
    """A job with one host instance whose steps ran as ``runs`` say (missing runs stay PENDING).

    ``keyed_by`` chooses the instance_id form the job is created with: ``bk_host_id`` or ``host_key``.
    ``sealed``: when the record finished, seal its answer in the same transaction, as the engine does.
    """
    plan = tuple(steps) if steps is not None else plan_steps(job_type)
    key = str(HostKey.of(ip, bk_cloud_id))
    if keyed_by == "bk_host_id":
        assert bk_host_id is not None
        instance_id = str(host_instance_id(bk_host_id=bk_host_id))
    else:
        instance_id = str(host_instance_id(host_key=HostKey.of(ip, bk_cloud_id)))
    with services.db.session() as session:
        created = jobs.create_job(
            session,
            job_type=job_type,
            created_by="admin",
            from_system="esb_test",
            bk_biz_scope=list(bk_biz_scope),
            instances=[jobs.NewInstance(instance_id=instance_id, bk_host_id=bk_host_id, host_key=key)],
            steps=plan,
        )
        record_id = created.record_ids[instance_id]
        write_runs(services, session, record_id, plan, runs, record_status=record_status)
        if sealed:
            answers.seal(session, LogReads(services.db), AnswerRenderer(services.settings.tz), [record_id])
    return MadeJob(
        job_id=created.job_id, instance_id=instance_id, record_id=record_id, bk_host_id=bk_host_id, host_key=key
    )


# The seed's response example (shared/seed/log_job.md), with its malformed times written as the original
# system really formats them (spec §11.4): "2021-09-1615: 06: 45" is 2021-09-16 15:06:45.
SEED_STEPS = (
    (
        "更新任务状态",
        "SUCCESS",
        "[2021-09-16 15:06:04 INFO] 开始更新任务状态",
        "2021-09-16 15:06:04",
        "2021-09-16 15:06:04",
    ),
    (
        "批量下发升级包",
        "SUCCESS",
        "[2021-09-16 15:06:04 INFO] 开始下发升级包......",
        "2021-09-16 15:06:04",
        "2021-09-16 15:06:39",
    ),
    (
        "执行升级脚本",
        "SUCCESS",
        "[2021-09-16 15:06:39 INFO] 开始执行升级脚本\n[2021-09-16 15:06:39 INFO]...........",
        "2021-09-16 15:06:39",
        "2021-09-16 15:06:45",
    ),
    (
        "查询Agent状态",
        "SUCCESS",
        "[2021-09-16 15:06:45 INFO] 开始查询 GSE 状态期望的GSE主机状态为RUNNING......",
        "2021-09-16 15:06:45",
        "2021-09-16 15:07:20",
    ),
    (
        "更新任务状态",
        "SUCCESS",
        "[2021-09-16 15:07:20 INFO]开始更新任务状态",
        "2021-09-16 15:07:20",
        "2021-09-16 15:07:20",
    ),
)
# the seed's step names as the API gives them in English (bk_language=en), in the same order
SEED_STEPS_EN = (
    "Update task status",
    "Transfer upgrade package",
    "Run upgrade script",
    "Query Agent Status",
    "Update task status",
)


def make_seed_job(services: Services, *, sealed: bool = True) -> MadeJob:
    """Job 1 with host 1 (127.0.0.1, cloud 0): the UPGRADE_AGENT record the seed's example shows, finished
    (and by default sealed, as the engine leaves a finished record)."""
    plan = plan_steps(JobType.UPGRADE_AGENT)
    assert [s.name for s in plan] == [row[0] for row in SEED_STEPS]
    assert plan[1].code == StepCode.PUSH_UPGRADE_PACKAGE
    runs = [
        StepRun(status=Status(st), start=start, finish=finish, log=log) for _n, st, log, start, finish in SEED_STEPS
    ]
    return make_job(services, runs=runs, record_status=Status.SUCCESS, sealed=sealed)


def restart_job(services: Services, instances: Sequence[jobs.NewInstance]) -> jobs.CreatedJob:
    """A RESTART_AGENT job of business 2 on ``instances``, created in the store as the API creates jobs."""
    with services.db.session() as session:
        return jobs.create_job(
            session,
            job_type=JobType.RESTART_AGENT,
            created_by="admin",
            from_system="test",
            bk_biz_scope=[2],
            instances=list(instances),
            steps=plan_steps(JobType.RESTART_AGENT),
        )


def ssh_host(session: Session, ip: str, *, port: int = 22) -> int:
    """A host of business 2 reached over SSH as root at ``ip:port``, installed in /opt/nodeops; its bk_host_id."""
    return hosts.upsert_host(
        session,
        hosts.HostLogin(
            bk_biz_id=2,
            bk_cloud_id=0,
            inner_ip=ip,
            inner_ipv6=None,
            os_type="LINUX",
            login=hosts.Login(ssh_port=port, account="root", setup_path="/opt/nodeops"),
        ),
    )
