"""The commands on jobs (spec §8): install_job and operate_job (validation and permission before
``JobLauncher``), and retry, revoke and retry_node on a job.

Order inside a request as Node Manager (spec §10): the caller is authenticated first (``api.deps``), then the
parameters are validated (every bad field named at once), then the job is looked up (3801012), then the
caller's right on every business of the job is checked (9900403), then the command runs. ``instance_id``
values take every form the log API takes (``parse_instance_id``), and both host forms find the same instance.

A retry never rewrites history: it runs the chosen instances again as a new task whose records are the next
``attempt`` (``store.attempts.add_attempts``), started through ``job_launch.launch`` like a new job; earlier
attempts stay readable through the log API's ``attempt`` parameter (spec §11.11).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nodeops.domain import rollout, script_hooks, webhook
from nodeops.domain.contract import Contract, Field, Kind, Values
from nodeops.domain.instance_id import MAX_HOST_ID, InstanceId, parse_instance_ids
from nodeops.domain.plans import HookWhen, JobType
from nodeops.domain.status import ACTIVE, Status
from nodeops.engine.dispatch import Dispatcher
from nodeops.errors import (
    Conflict,
    InstanceNotFound,
    InvalidInput,
    JobNotFound,
    LocalTransportDenied,
    MixedManualHosts,
    NoFailedStep,
    NothingRunning,
    PermissionDenied,
)
from nodeops.service.auth import Caller
from nodeops.service.host_requests import HOSTS, HostRequest, read_hosts
from nodeops.service.job_details import job_access, parse_job_id
from nodeops.service.job_launch import (
    AGENT_VERSION_PARAM,
    INSTALL_TYPES,
    OPERATE_TYPES,
    ChoosePackage,
    JobLauncher,
    StartedJob,
    launch,
)
from nodeops.settings import Settings
from nodeops.store import attempts, job_reads
from nodeops.store import instances as store_instances
from nodeops.store.db import Database
from nodeops.store.job_reads import Instance, JobInfo, StepState

# A local host is the machine that runs its pipeline: with workers that is whichever worker claims it, not a host.
LOCAL_IN_CELERY = (
    "'local' runs on the machine that runs the job, which with NODEOPS_EXECUTOR=celery is whichever worker takes "
    "it: give the host with transport 'ssh' (its address and login), or run the service with NODEOPS_EXECUTOR=embedded"
)
OPERATE_ACTION = "agent_operate"  # the IAM action install/operate need, on every business of the hosts

# --- the requests (job_id of retry, revoke and retry_node is in the path) ------------------------------------

# nodeops: rolling batches and the failure threshold of install_job and operate_job (domain.rollout)
ROLLOUT_FIELDS = (
    Field(
        name="batch_size",
        kind=Kind.VALUE,
        schema={"type": "integer", "minimum": 1, "maximum": rollout.MAX_BATCH_SIZE},
        description="nodeops: hosts per batch, in the order given; batch n+1 starts once every host of batch n "
        "has ended (default: every host at once).",
    ),
    Field(
        name="max_fail_percentage",
        kind=Kind.VALUE,
        schema={"type": "number", "minimum": 0, "maximum": 100},
        description="nodeops: once more than this share of the hosts started so far failed, no other host "
        "starts; those not started end IGNORED (default: no threshold).",
    ),
    Field(
        name="batch_interval_s",
        kind=Kind.VALUE,
        schema={"type": "number", "minimum": 0, "maximum": rollout.MAX_BATCH_INTERVAL_S},
        description="nodeops: seconds between the end of a batch and the start of the next (default 0).",
    ),
)
SCRIPT_HOOKS = Field(
    name="script_hooks",
    kind=Kind.VALUE,
    schema={
        "type": "array",
        "maxItems": script_hooks.MAX_HOOKS,
        "items": {
            "type": "object",
            "required": ["name", "script"],
            "properties": {
                "name": {"type": "string", "maxLength": script_hooks.MAX_NAME_CHARS},
                "script": {"type": "string", "description": f"sh, at most {script_hooks.MAX_SCRIPT_BYTES} bytes"},
                "when": {"type": "string", "enum": [w.value for w in HookWhen], "default": "before_start"},
            },
        },
    },
    description="Scripts run on each host as steps of their own (执行脚本钩子: name), with the login account's "
    "rights: before_start just before 安装, after_start once the agent reported. nodeops: each hook carries its sh "
    "script (Node Manager's named hooks are Windows built-ins).",
)

# nodeops: where the job's end is notified (service.webhooks); also a subscription's (create, update)
WEBHOOK_URL = Field(
    name="webhook_url",
    kind=Kind.VALUE,
    schema={"type": "string", "maxLength": webhook.MAX_URL_CHARS, "format": "uri"},
    description="nodeops: an http(s) URL POSTed a signed JSON notification when the job ends (each end: its run, "
    "each retry); no user:password in it. Default: NODEOPS_WEBHOOK_URL.",
)

INSTALL = Contract(
    "InstallJobRequest",
    "install_job (安装类任务): install or reinstall agents on hosts given with their login.",
    (
        Field(
            name="job_type",
            kind=Kind.CHOICE,
            required=True,
            choices=tuple(sorted(INSTALL_TYPES)),
            description="INSTALL_AGENT, REINSTALL_AGENT, INSTALL_PROXY, REINSTALL_PROXY or REPLACE_PROXY.",
        ),
        HOSTS,
        Field(
            name="replace_host_id",
            kind=Kind.INT,
            maximum=MAX_HOST_ID,
            description="REPLACE_PROXY: the bk_host_id of the proxy replaced (required, then unused, as in Node "
            "Manager: the old proxy is left as it is).",
        ),
        SCRIPT_HOOKS,
        *ROLLOUT_FIELDS,
        WEBHOOK_URL,
    ),
)
REPLACE_HOST_REQUIRED = "替换PROXY必须填写replace_host_id"
OPERATE = Contract(
    "OperateJobRequest",
    "operate_job (操作类任务): an agent operation on hosts known by their bk_host_id.",
    (
        Field(
            name="job_type",
            kind=Kind.CHOICE,
            required=True,
            choices=tuple(sorted(OPERATE_TYPES)),
            description="UPGRADE_AGENT, RESTART_AGENT, RELOAD_AGENT, UNINSTALL_AGENT, or the same of a proxy "
            "(UPGRADE_PROXY ...).",
        ),
        Field(
            name="bk_host_id",
            kind=Kind.INT_LIST,
            required=True,
            noun="bk_host_ids",
            maximum=MAX_HOST_ID,
            description="The hosts, at least one.",
        ),
        Field(
            name="version",
            kind=Kind.TEXT,
            description="nodeops, UPGRADE_AGENT and UPGRADE_PROXY only: the agent version to push (default newest).",
        ),
        *ROLLOUT_FIELDS,
        WEBHOOK_URL,
    ),
)
JOB_INSTANCES = Contract(
    "JobInstancesRequest",
    "retry / revoke: the instances to act on, default all (FAILED ones for retry, running ones for revoke).",
    (
        Field(
            name="instance_id_list",
            kind=Kind.INSTANCE_IDS,
            description="instance_ids (object_type|node_type|type|id, or bk_host_ids).",
        ),
    ),
)
RETRY_NODE = Contract(
    "RetryNodeRequest",
    "retry_node (原子粒度重试): re-run one instance from its failed step.",
    (
        Field(
            name="instance_id",
            kind=Kind.INSTANCE_ID,
            required=True,
            description="The instance (object_type|node_type|type|id, or a bk_host_id).",
        ),
    ),
)
REQUESTS = (INSTALL, OPERATE, JOB_INSTANCES, RETRY_NODE)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewAttempts:
    """What a retry launched: the next attempt of some instances of ``job``, as task ``task_id``."""

    job: JobInfo
    task_id: int
    created: dict[str, int]  # instance_id -> the new record's id

    @property
    def job_id(self) -> int:
        return self.job.job_id


def _instances(params: Mapping[str, object], contract: Contract) -> tuple[int, Values]:
    """The job_id (in the path) and the request's fields, or one InvalidInput naming every bad one."""
    problems: dict[str, str] = {}
    job_id = parse_job_id(params, problems)
    values = contract.gather(params, problems)
    contract.check(problems)
    return job_id, values


def _pick(job_id: int, instances: Sequence[Instance], wanted: Sequence[InstanceId]) -> list[Instance]:
    """The instances named by ``wanted`` in job order; one the job does not have raises InstanceNotFound."""
    chosen: set[int] = set()
    for item, found in zip(wanted, store_instances.pick(instances, wanted), strict=True):
        if found is None:
            raise InstanceNotFound(job_id=job_id, instance_id=str(item))
        chosen.add(found.record_id)
    return [instance for instance in instances if instance.record_id in chosen]


def require_biz(
    caller: Caller,
    biz_ids: Collection[int],
    *,
    rows: Mapping[int, Sequence[str]] | None = None,
    action: str = OPERATE_ACTION,
) -> None:
    """Raise PermissionDenied unless the caller may do ``action`` (by default operate agents) on every one of
    ``biz_ids`` (spec §10): a grant on the business.

    ``rows`` (``bk_biz_id -> [row names]``) lets the refusal name the rows of the request in those businesses."""
    if caller.is_superuser:
        return
    missing = sorted(set(biz_ids) - caller.biz_ids)
    if missing:
        named = list(dict.fromkeys(row for biz in missing for row in (rows or {}).get(biz, ())))
        raise PermissionDenied(
            username=caller.username, job_id=None, missing_biz_ids=missing, action=action, rows=named
        )


# --- use cases ----------------------------------------------------------------------------------------------


MANUAL_HOOKS = (
    "a manual host's install runs no command over SSH, where script hooks run: install it without script_hooks "
    "and run them on the host with its command"
)


class JobCommands:
    """The commands on jobs; cheap to build (it holds the process's shared objects)."""

    def __init__(self, *, db: Database, engine: Dispatcher, launcher: JobLauncher, settings: Settings) -> None:
        self.db = db
        self.engine = engine
        self.launcher = launcher
        self.settings = settings
        self.tz = settings.tz

    def job_url(self, job_id: int) -> str:
        """Where Node Manager's UI shows the job (``{BK_NODEMAN_HOST}/#/task-list/detail/{id}``)."""
        return f"{self.settings.agent_server_url}/#/task-list/detail/{job_id}"

    def _started(self, started: StartedJob) -> dict[str, Any]:
        return {
            "job_id": started.job_id,
            "job_url": self.job_url(started.job_id),
            "ip_filter": started.ip_filter,
            "subscription_id": started.subscription_id,
            "task_id_list": [started.task_id],
        }

    async def install(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """install_job: validate ``job_type`` and ``hosts``, check the caller's right on their businesses,
        then register the hosts and start the job. All hosts refused: 3801018 with ``data.ip_filter``."""
        problems: dict[str, str] = {}
        values = INSTALL.gather(params, problems)
        hosts = read_hosts(values.objects("hosts"), problems)
        if values.text("job_type") == JobType.REPLACE_PROXY and values.integer("replace_host_id") is None:
            problems.setdefault("replace_host_id", REPLACE_HOST_REQUIRED)
        hooks = script_hooks.read_script_hooks(params.get(SCRIPT_HOOKS.name), problems)
        plan = rollout.read_rollout(params, problems)
        webhook_url = webhook.read_webhook_url(values[WEBHOOK_URL.name], WEBHOOK_URL.name, problems)
        if self.settings.executor == "celery":
            for host in hosts:
                if host.transport == "local":
                    problems[f"hosts[{host.index}].transport"] = LOCAL_IN_CELERY
        INSTALL.check(problems)
        job_type = JobType(values.text("job_type") or "")
        if not caller.is_superuser:
            if any(host.transport == "local" for host in hosts):
                raise LocalTransportDenied(username=caller.username)
            # the hosts' businesses as asked, and as they are now: an install moves a host to the one asked
            current = await self.db.call(lambda: self._registered_biz_ids(hosts))
            require_biz(caller, {host.bk_biz_id for host in hosts} | current)
        if len({host.is_manual for host in hosts}) > 1:  # after permission, before the hosts (as Node Manager)
            raise MixedManualHosts()
        if hooks and any(host.is_manual for host in hosts):  # a hook runs over SSH, which a manual host has not
            raise InvalidInput({SCRIPT_HOOKS.name: MANUAL_HOOKS})
        started = await self.launcher.install(
            job_type=job_type,
            hosts=hosts,
            created_by=caller.username,
            from_system=caller.app_code,
            rollout=plan,
            hooks=hooks,
            webhook_url=webhook_url,
        )
        return self._started(started)

    async def operate(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """operate_job: ``job_type`` and ``bk_host_id[]`` (``version`` for UPGRADE_AGENT); the caller needs
        the right on the business of every known host. Unknown and busy hosts come back in ``ip_filter``."""
        problems: dict[str, str] = {}
        values = OPERATE.gather(params, problems)
        job_type = values.text("job_type")
        host_ids = values.integers("bk_host_id")
        version = values["version"]
        if version is not None and version != "":
            if not isinstance(version, str):
                problems["version"] = "must be a version string such as 0.2.0"
            elif job_type is not None and job_type not in (JobType.UPGRADE_AGENT, JobType.UPGRADE_PROXY):
                problems["version"] = f"only UPGRADE_AGENT and UPGRADE_PROXY take a version, not {job_type}"
        else:
            version = None
        plan = rollout.read_rollout(params, problems)
        webhook_url = webhook.read_webhook_url(values[WEBHOOK_URL.name], WEBHOOK_URL.name, problems)
        OPERATE.check(problems)
        assert job_type is not None and (version is None or isinstance(version, str))
        if not caller.is_superuser:  # unknown hosts are refused in ip_filter, not here
            known = await self.db.call(lambda: self._host_biz_ids(host_ids))
            require_biz(caller, set(known.values()))
        started = await self.launcher.operate(
            job_type=JobType(job_type),
            bk_host_ids=host_ids,
            created_by=caller.username,
            from_system=caller.app_code,
            version=version,
            rollout=plan,
            webhook_url=webhook_url,
        )
        return self._started(started)

    def _registered_biz_ids(self, hosts: Sequence[HostRequest]) -> set[int]:
        with self.db.session() as session:
            return job_reads.registered_biz_ids(
                session,
                host_ids=[host.bk_host_id for host in hosts if host.bk_host_id is not None],
                addresses=[(host.bk_cloud_id, host.inner_ip, host.inner_ipv6) for host in hosts],
            )

    def _host_biz_ids(self, host_ids: Sequence[int]) -> dict[int, int]:
        with self.db.session() as session:
            return job_reads.host_biz_ids(session, host_ids)

    async def retry(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """Run the FAILED instances again (those of ``instance_id_list``, default every FAILED one) as a new
        task and attempt; nothing to retry is 3800003."""
        job_id, values = _instances(params, JOB_INSTANCES)
        wanted = values.instance_ids("instance_id_list")

        def choose(job: JobInfo, instances: Sequence[Instance]) -> list[Instance]:
            scope = _pick(job.job_id, instances, wanted) if wanted else instances
            failed = [instance for instance in scope if instance.status == Status.FAILED.value]
            if not failed:
                counts = _status_counts(scope)
                raise Conflict(
                    f"job {job.job_id} has no FAILED instance to retry"
                    f"{' among the given instance_id_list' if wanted else ''} ({counts}); "
                    "only failed instances run again"
                )
            return failed

        retried = await self._run_again(caller, job_id, choose)
        return {"job_id": retried.job_id, "task_id_list": [*retried.job.task_ids, retried.task_id]}

    async def retry_node(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """Re-run one instance from its first FAILED step, as a new attempt whose earlier steps are kept as
        they ran; no failed step is 3800007 (无法获取失败任务节点)."""
        if isinstance(params.get("instance_id"), list):  # each one's problems, then the list's
            problems: dict[str, str] = {}
            parse_job_id(params, problems)
            parse_instance_ids(params["instance_id"], "instance_id", problems, allow_single=False)
            problems["instance_id"] = "must be one instance_id, not a list"
            raise InvalidInput(problems)
        job_id, values = _instances(params, RETRY_NODE)
        instance_id = values.instance_id("instance_id")
        assert instance_id is not None
        wanted = [instance_id]
        failed_step: list[StepState] = []

        def choose(job: JobInfo, instances: Sequence[Instance]) -> list[Instance]:
            return _pick(job.job_id, instances, wanted)[:1]

        def resume(job: JobInfo, instance: Instance, steps: Sequence[StepState]) -> int:
            failed_step.extend(step for step in steps if step.status == Status.FAILED.value)
            if not failed_step:
                raise NoFailedStep(job_id=job.job_id, instance_id=instance.instance_id, status=instance.status)
            return failed_step[0].index

        retried = await self._run_again(caller, job_id, choose, resume)
        step = failed_step[0]
        (record_id,) = retried.created.values()
        return {"retry_node_id": f"{record_id}-{step.index}", "retry_node_name": step.name}

    async def _run_again(
        self,
        caller: Caller,
        job_id: int,
        choose: Callable[[JobInfo, Sequence[Instance]], list[Instance]],
        resume: Callable[[JobInfo, Instance, Sequence[StepState]], int] | None = None,
    ) -> NewAttempts:
        """Look the job up, check access, let ``choose`` pick the instances (and ``resume`` the step each
        resumes at, keeping the earlier ones), and launch their next attempt as a new task."""

        def create(choose_package: ChoosePackage) -> NewAttempts:
            with self.db.session() as session:
                job = job_reads.find_job(session, job_id, for_update=True)
                if job is None:
                    raise JobNotFound(job_id=job_id)
                caller.require_job_view(job_access(job))
                targets = choose(job, job_reads.latest_instances(session, job_id))
                steps = job_reads.steps_of(session, [instance.record_id for instance in targets])
                keep_before = (
                    {i.record_id: resume(job, i, steps[i.record_id]) for i in targets} if resume is not None else {}
                )
                version = job.step_params.get(AGENT_VERSION_PARAM)
                choose_package(version if isinstance(version, str) else None)  # the job's package, as it ran
                task_id, created = attempts.add_attempts(
                    self.db, session, job=job, instances=targets, steps=steps, keep_before=keep_before
                )
            return NewAttempts(job=job, task_id=task_id, created=created)

        return await launch(self.db, self.engine, create)

    async def revoke(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """Stop the job's PENDING and RUNNING instances (those of ``instance_id_list``, default all): running
        steps end FAILED with 已终止 in their log, the job becomes TERMINATED and stays so. Nothing pending
        or running is 3800016."""
        job_id, values = _instances(params, JOB_INSTANCES)
        wanted = values.instance_ids("instance_id_list")

        def targets() -> tuple[JobInfo, list[Instance]]:
            with self.db.session() as session:
                job = job_reads.find_job(session, job_id)
                if job is None:
                    raise JobNotFound(job_id=job_id)
                caller.require_job_view(job_access(job))
                instances = job_reads.latest_instances(session, job_id)
            scope = _pick(job_id, instances, wanted) if wanted else instances
            active = [instance for instance in scope if Status(instance.status) in ACTIVE]
            if not active:
                raise NothingRunning(job_id=job_id, subscription_id=job.subscription_id)
            return job, active

        job, active = await self.db.call(targets)
        await self.engine.revoke(job_id, [instance.record_id for instance in active], whole_job=not wanted)
        return {"job_id": job.job_id, "task_id_list": job.task_ids}


def _status_counts(instances: Sequence[Instance]) -> str:
    counts: dict[str, int] = {}
    for instance in instances:
        counts[instance.status] = counts.get(instance.status, 0) + 1
    return ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "no instances"
