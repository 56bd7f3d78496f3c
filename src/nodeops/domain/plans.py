"""Job types and the ordered step plan each runs on every host (spec §5, docs/job-types.md).

Every plan has the shape of the seed's UPGRADE_AGENT example: 更新任务状态 first and last, around the steps
spec §5.3 lists for the job type that we have an honest equivalent for. Pure: imports only the stdlib.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class JobType(StrEnum):
    INSTALL_AGENT = "INSTALL_AGENT"  # 安装 Agent
    REINSTALL_AGENT = "REINSTALL_AGENT"  # 重装 Agent
    UPGRADE_AGENT = "UPGRADE_AGENT"  # 升级 Agent
    RESTART_AGENT = "RESTART_AGENT"  # 重启 Agent
    RELOAD_AGENT = "RELOAD_AGENT"  # 重载配置
    UNINSTALL_AGENT = "UNINSTALL_AGENT"  # 卸载 Agent
    INSTALL_PROXY = "INSTALL_PROXY"  # 安装 Proxy
    REINSTALL_PROXY = "REINSTALL_PROXY"  # 重装 Proxy
    REPLACE_PROXY = "REPLACE_PROXY"  # 替换 Proxy: INSTALL_PROXY's plan on the new host (network spec §13.7)
    UPGRADE_PROXY = "UPGRADE_PROXY"  # 升级 Proxy
    RESTART_PROXY = "RESTART_PROXY"  # 重启 Proxy
    RELOAD_PROXY = "RELOAD_PROXY"  # 重载配置
    UNINSTALL_PROXY = "UNINSTALL_PROXY"  # 卸载 Proxy

    @property
    def is_proxy(self) -> bool:
        """A ``*_PROXY`` job: its hosts are proxies (node_type PROXY, network spec §13.1)."""
        return self.value.endswith("_PROXY")


PROXY_JOB_TYPES = frozenset(job_type for job_type in JobType if job_type.is_proxy)


class StepCode(StrEnum):
    """What a step does; its display name (the log API's ``step``) comes from ``STEP_NAMES``."""

    UPDATE_JOB_STATUS = "update_job_status"
    REGISTER_HOST = "register_host"
    QUERY_PASSWORD = "query_password"
    CHOOSE_AP = "choose_ap"
    INSTALL = "install"
    PUSH_UPGRADE_PACKAGE = "push_upgrade_package"
    RUN_UPGRADE_SCRIPT = "run_upgrade_script"
    CHECK_AGENT_STATUS = "check_agent_status"
    RENDER_AND_PUSH_CONFIG = "render_and_push_config"
    RELOAD_AGENT = "reload_agent"
    RESTART_AGENT = "restart_agent"
    UNINSTALL_AGENT = "uninstall_agent"
    UNINSTALL_PROXY = "uninstall_proxy"
    QUERY_AGENT_STATUS = "query_agent_status"
    QUERY_PROXY_STATUS = "query_proxy_status"
    UPDATE_PROCESS_STATUS = "update_process_status"
    RUN_SCRIPT_HOOK = "run_script_hook"  # one script hook of the job (its name follows the prefix)


STEP_NAMES: dict[StepCode, str] = {
    StepCode.UPDATE_JOB_STATUS: "更新任务状态",
    StepCode.REGISTER_HOST: "注册主机到配置平台",
    StepCode.QUERY_PASSWORD: "查询主机密码",
    StepCode.CHOOSE_AP: "选择接入点",
    StepCode.INSTALL: "安装",
    StepCode.PUSH_UPGRADE_PACKAGE: "批量下发升级包",
    StepCode.RUN_UPGRADE_SCRIPT: "执行升级脚本",
    StepCode.CHECK_AGENT_STATUS: "检查Agent状态",
    StepCode.RENDER_AND_PUSH_CONFIG: "渲染并下发Agent配置",
    StepCode.RELOAD_AGENT: "重载Agent配置",
    StepCode.RESTART_AGENT: "重启",
    StepCode.UNINSTALL_AGENT: "卸载Agent",
    StepCode.UNINSTALL_PROXY: "卸载Proxy",
    StepCode.QUERY_AGENT_STATUS: "查询Agent状态",
    StepCode.QUERY_PROXY_STATUS: "查询Proxy状态",
    StepCode.UPDATE_PROCESS_STATUS: "更新主机进程状态",
    StepCode.RUN_SCRIPT_HOOK: "执行脚本钩子",
}
HOOK_STEP_SEPARATOR = ": "  # a hook's step is named 执行脚本钩子: {hook name}


class HookWhen(StrEnum):
    """When a script hook runs: just before the step that starts the agent (安装), or once it reports."""

    BEFORE_START = "before_start"
    AFTER_START = "after_start"


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptHook:
    """A user's script run on the host as a step of its own (ours, for Linux: docs/compatibility.md)."""

    name: str
    script: str
    when: HookWhen


def hook_step_name(hook_name: str) -> str:
    return f"{STEP_NAMES[StepCode.RUN_SCRIPT_HOOK]}{HOOK_STEP_SEPARATOR}{hook_name}"


def hook_name_of(step_name: str) -> str:
    """The hook a step named by ``hook_step_name`` runs."""
    return step_name.partition(HOOK_STEP_SEPARATOR)[2]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedStep:
    """One step of a plan: its position, what it does and the name the log API shows."""

    index: int
    code: StepCode
    name: str


_S = StepCode
_BODIES: dict[JobType, tuple[StepCode, ...]] = {
    JobType.INSTALL_AGENT: (
        _S.REGISTER_HOST,
        _S.QUERY_PASSWORD,
        _S.CHOOSE_AP,
        _S.INSTALL,
        _S.QUERY_AGENT_STATUS,
    ),
    JobType.REINSTALL_AGENT: (_S.QUERY_PASSWORD, _S.CHOOSE_AP, _S.INSTALL, _S.QUERY_AGENT_STATUS),
    JobType.UPGRADE_AGENT: (_S.PUSH_UPGRADE_PACKAGE, _S.RUN_UPGRADE_SCRIPT, _S.QUERY_AGENT_STATUS),
    JobType.RESTART_AGENT: (_S.RESTART_AGENT, _S.QUERY_AGENT_STATUS),
    JobType.RELOAD_AGENT: (
        _S.CHECK_AGENT_STATUS,
        _S.RENDER_AND_PUSH_CONFIG,
        _S.RELOAD_AGENT,
        _S.QUERY_AGENT_STATUS,
    ),
    JobType.UNINSTALL_AGENT: (_S.QUERY_PASSWORD, _S.UNINSTALL_AGENT, _S.UPDATE_PROCESS_STATUS),
    # Node Manager's proxy pipelines without the steps we have no honest equivalent for (docs/job-types.md):
    # no security groups (配置策略), no GSE file server (检测 GSE Server 到 Proxy 策略), no files for nginx to serve
    # (the three pushes, 启动 NGINX 服务): the relay is part of the agent, started by 安装 with it
    JobType.INSTALL_PROXY: (_S.REGISTER_HOST, _S.QUERY_PASSWORD, _S.CHOOSE_AP, _S.INSTALL, _S.QUERY_PROXY_STATUS),
    JobType.REINSTALL_PROXY: (_S.QUERY_PASSWORD, _S.CHOOSE_AP, _S.INSTALL, _S.QUERY_PROXY_STATUS),
    JobType.UPGRADE_PROXY: (_S.PUSH_UPGRADE_PACKAGE, _S.RUN_UPGRADE_SCRIPT, _S.QUERY_PROXY_STATUS),
    JobType.RESTART_PROXY: (_S.RESTART_AGENT, _S.QUERY_PROXY_STATUS),
    # Node Manager runs RELOAD_AGENT's pipeline for a proxy, 查询Agent状态 included (spec §5.3)
    JobType.RELOAD_PROXY: (_S.CHECK_AGENT_STATUS, _S.RENDER_AND_PUSH_CONFIG, _S.RELOAD_AGENT, _S.QUERY_AGENT_STATUS),
    JobType.UNINSTALL_PROXY: (_S.UNINSTALL_PROXY, _S.UPDATE_PROCESS_STATUS),
}
_BODIES[JobType.REPLACE_PROXY] = _BODIES[JobType.INSTALL_PROXY]  # ReplaceProxy(InstallProxy) in Node Manager


def plan_steps(job_type: JobType, hooks: Sequence[ScriptHook] = ()) -> tuple[PlannedStep, ...]:
    """The ordered steps every host of a job of this type goes through. ``hooks`` (a plan with 安装 only) each
    add a step: the ``before_start`` ones just before 安装, the ``after_start`` ones right after the step that
    waits for the agent's report, each group in the order given."""
    body = list(_BODIES[job_type])
    named: list[tuple[StepCode, str]] = [(code, STEP_NAMES[code]) for code in body]
    if hooks:
        if StepCode.INSTALL not in body:
            raise ValueError(f"{job_type} does not start an agent: script hooks need a plan with 安装")
        start = body.index(StepCode.INSTALL)
        before = [(StepCode.RUN_SCRIPT_HOOK, hook_step_name(h.name)) for h in hooks if h.when == HookWhen.BEFORE_START]
        after = [(StepCode.RUN_SCRIPT_HOOK, hook_step_name(h.name)) for h in hooks if h.when == HookWhen.AFTER_START]
        named = [*named[:start], *before, named[start], named[start + 1], *after, *named[start + 2 :]]
    edge = (StepCode.UPDATE_JOB_STATUS, STEP_NAMES[StepCode.UPDATE_JOB_STATUS])
    return tuple(PlannedStep(index=i, code=code, name=name) for i, (code, name) in enumerate([edge, *named, edge]))
