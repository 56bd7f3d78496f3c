"""A host's agent status (``hosts.agent_status``) as Node Manager shows and counts it (network spec §17).

Node Manager's statuses come from its periodic GSE sync: RUNNING 正常, TERMINATED 异常 (alive before, silent now),
NOT_INSTALLED 未安装, UNKNOWN 未知 and a few more. nodeops also records what its steps are doing to the agent
(INSTALLING … RESTARTING), and its sweeper (``service.agent_watch``) turns a RUNNING agent that stopped
heartbeating into TERMINATED. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class AgentStatus(StrEnum):
    RUNNING = "RUNNING"
    UNKNOWN = "UNKNOWN"
    TERMINATED = "TERMINATED"  # 异常: its heartbeats stopped (``store.agents.mark_silent``)
    NOT_INSTALLED = "NOT_INSTALLED"
    UNREGISTER = "UNREGISTER"
    MANUAL_STOP = "MANUAL_STOP"
    # what the steps of a job set while they work on the agent (nodeops' own)
    INSTALLING = "INSTALLING"
    INSTALLED = "INSTALLED"
    CONFIGURED = "CONFIGURED"
    UPGRADING = "UPGRADING"
    RELOADING = "RELOADING"
    RESTARTING = "RESTARTING"


# Node Manager's labels (``PROC_STATUS_CHN``), then ours for the statuses only a job in progress sets
STATUS_DISPLAY: Mapping[str, str] = {
    AgentStatus.RUNNING: "正常",
    AgentStatus.UNKNOWN: "未知",
    AgentStatus.TERMINATED: "异常",
    AgentStatus.NOT_INSTALLED: "未安装",
    AgentStatus.UNREGISTER: "未注册",
    AgentStatus.MANUAL_STOP: "手动停止",
    AgentStatus.INSTALLING: "安装中",
    AgentStatus.INSTALLED: "已安装",
    AgentStatus.CONFIGURED: "已配置",
    AgentStatus.UPGRADING: "升级中",
    AgentStatus.RELOADING: "重载中",
    AgentStatus.RESTARTING: "重启中",
}
UNKNOWN_DISPLAY = STATUS_DISPLAY[AgentStatus.UNKNOWN]


def status_display(status: str | None) -> str:
    """The label Node Manager's UI shows for ``status``; a status it has no label for reads 未知."""
    return STATUS_DISPLAY.get(status or "", UNKNOWN_DISPLAY)


def agent_status_count(by_status: Mapping[str, int]) -> dict[str, int]:
    """``{total, RUNNING, NOT_INSTALLED, TERMINATED}`` of hosts counted per status, as Node Manager computes it
    (``ipchooser/tools/base.py:get_agent_statistics``): TERMINATED is every host neither RUNNING nor NOT_INSTALLED,
    so an agent a job is (re)installing counts as 异常 until it reports again."""
    total = sum(by_status.values())
    running = by_status.get(AgentStatus.RUNNING, 0)
    not_installed = by_status.get(AgentStatus.NOT_INSTALLED, 0)
    return {
        "total": total,
        AgentStatus.RUNNING.value: running,
        AgentStatus.NOT_INSTALLED.value: not_installed,
        AgentStatus.TERMINATED.value: total - running - not_installed,
    }
