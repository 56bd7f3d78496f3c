"""Job types and the ordered step plan each runs on every host (spec §5, docs/job-types.md).

Every plan has the shape of the seed's UPGRADE_AGENT example: 更新任务状态 first and last, around the steps
spec §5.3 lists for the job type that we have an honest equivalent for. Pure: imports only the stdlib.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobType(StrEnum):
    INSTALL_AGENT = "INSTALL_AGENT"  # 安装 Agent
    REINSTALL_AGENT = "REINSTALL_AGENT"  # 重装 Agent
    UPGRADE_AGENT = "UPGRADE_AGENT"  # 升级 Agent
    RESTART_AGENT = "RESTART_AGENT"  # 重启 Agent
    RELOAD_AGENT = "RELOAD_AGENT"  # 重载配置
    UNINSTALL_AGENT = "UNINSTALL_AGENT"  # 卸载 Agent


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
    QUERY_AGENT_STATUS = "query_agent_status"
    UPDATE_PROCESS_STATUS = "update_process_status"


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
    StepCode.QUERY_AGENT_STATUS: "查询Agent状态",
    StepCode.UPDATE_PROCESS_STATUS: "更新主机进程状态",
}


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
}


def plan_steps(job_type: JobType) -> tuple[PlannedStep, ...]:
    """The ordered steps every host of a job of this type goes through."""
    codes = (StepCode.UPDATE_JOB_STATUS, *_BODIES[job_type], StepCode.UPDATE_JOB_STATUS)
    return tuple(PlannedStep(index=i, code=code, name=STEP_NAMES[code]) for i, code in enumerate(codes))
