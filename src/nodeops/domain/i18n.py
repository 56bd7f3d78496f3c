"""The two languages the API answers in, and the catalog of every fixed text it shows in both.

Chinese (``zh-cn``) is the default and its texts are Node Manager's exact strings; English (``en``) is given when a
request asks for it (``api.language.resolve_language``). The English texts are Node Manager's own translations
(its ``locale/en/LC_MESSAGES/django.po``) where it has one, and ours where it has none (docs/compatibility.md,
"Two languages"). What is translated: step names, statuses' display texts, job type displays and the Chinese
phrases of error messages. What never is: the status strings themselves (``SUCCESS``), the facts inside a message,
and the text of job logs, which the engine wrote and the store keeps as written.

Pure: imports only the standard library and ``domain``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from functools import lru_cache

from nodeops.domain.plans import HOOK_STEP_SEPARATOR, STEP_NAMES, JobType, StepCode
from nodeops.domain.status import Status


class Language(StrEnum):
    ZH = "zh-cn"  # Node Manager's default, and ours: nothing changes for a caller that asks nothing
    EN = "en"


DEFAULT_LANGUAGE = Language.ZH
LANGUAGE_COOKIE = "blueking_language"  # Node Manager's (Django's LANGUAGE_COOKIE_NAME)
LANGUAGE_PARAM = "bk_language"  # the ESB common argument
MAX_ACCEPT_ITEMS = 32  # the languages of an Accept-Language header looked at; a browser sends a handful


def parse_language(value: object) -> Language | None:
    """The language a tag names (``en``, ``en-US``, ``en_us``: English; ``zh``, ``zh-cn``, ``zh-hans``, ``zh_CN``:
    Chinese, in any case), or None for anything else, which the caller treats as not asked."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    tag = value.strip().lower()
    primary = tag[:2]
    if len(tag) > 2 and tag[2] not in "-_":
        return None
    if primary == "en":
        return Language.EN
    if primary == "zh":
        return Language.ZH
    return None


@lru_cache(maxsize=256)
def parse_accept_language(header: str) -> Language | None:
    """The language an ``Accept-Language`` header prefers among ours: the highest q-value wins (the first of
    equals), ``q=0`` refuses a language, a malformed q-value drops its item, ``*`` and languages of neither kind
    are passed over; None when it names neither."""
    best: Language | None = None
    best_q = 0.0
    for item in header.split(",", MAX_ACCEPT_ITEMS)[:MAX_ACCEPT_ITEMS]:
        tag, _, params = item.partition(";")
        language = parse_language(tag)
        if language is None:
            continue
        q = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                continue
            if not 0.0 <= q <= 1.0:
                continue
        if q > best_q:
            best, best_q = language, q
    return best


# --- steps ---------------------------------------------------------------------------------------------------

# Node Manager's translations, except ours for the steps it does not name so (更新任务状态, 批量下发升级包,
# 执行升级脚本, 执行脚本钩子)
STEP_NAMES_EN: dict[StepCode, str] = {
    StepCode.UPDATE_JOB_STATUS: "Update task status",
    StepCode.REGISTER_HOST: "Register host to configuration platform",
    StepCode.QUERY_PASSWORD: "Query host password",
    StepCode.CHOOSE_AP: "Select access point",
    StepCode.INSTALL: "Install",
    StepCode.PUSH_UPGRADE_PACKAGE: "Transfer upgrade package",
    StepCode.RUN_UPGRADE_SCRIPT: "Run upgrade script",
    StepCode.CHECK_AGENT_STATUS: "Check Agent Status",
    StepCode.RENDER_AND_PUSH_CONFIG: "Render and deliver Agent configuration",
    StepCode.RELOAD_AGENT: "Reload Agent Configuration",
    StepCode.RESTART_AGENT: "Restart",
    StepCode.UNINSTALL_AGENT: "Uninstall Agent",
    StepCode.UNINSTALL_PROXY: "Uninstall Proxy",
    StepCode.QUERY_AGENT_STATUS: "Query Agent Status",
    StepCode.QUERY_PROXY_STATUS: "Query Proxy Status",
    StepCode.UPDATE_PROCESS_STATUS: "Update host process status",
    StepCode.RUN_SCRIPT_HOOK: "Run script hook",
}
# steps are stored by their Chinese name: what each one reads in English
_STEP_EN_BY_NAME = {STEP_NAMES[code]: english for code, english in STEP_NAMES_EN.items()}
_HOOK_PREFIX = STEP_NAMES[StepCode.RUN_SCRIPT_HOOK] + HOOK_STEP_SEPARATOR


def step_name(name: str, language: Language) -> str:
    """A step's name as ``language`` shows it; a script hook's keeps its hook's name, and a name the catalog
    does not know (a step of an older plan) stays as stored."""
    if language is Language.ZH:
        return name
    english = _STEP_EN_BY_NAME.get(name)
    if english is not None:
        return english
    if name.startswith(_HOOK_PREFIX):
        return STEP_NAMES_EN[StepCode.RUN_SCRIPT_HOOK] + HOOK_STEP_SEPARATOR + name[len(_HOOK_PREFIX) :]
    return name


# --- statuses and jobs ---------------------------------------------------------------------------------------

STATUS_DISPLAY: dict[Language, dict[Status, str]] = {
    Language.ZH: {
        Status.PENDING: "等待执行",
        Status.RUNNING: "正在执行",
        Status.SUCCESS: "执行成功",
        Status.FAILED: "执行失败",
        Status.PART_FAILED: "部分失败",
        Status.TERMINATED: "已终止",
        Status.REMOVED: "已移除",
        Status.FILTERED: "被过滤的",
        Status.IGNORED: "已忽略",
    },
    Language.EN: {
        Status.PENDING: "Waiting for execution",
        Status.RUNNING: "Running",
        Status.SUCCESS: "Succeed",
        Status.FAILED: "Failed",
        Status.PART_FAILED: "Partial failure",
        Status.TERMINATED: "Terminated",
        Status.REMOVED: "Removed",
        Status.FILTERED: "Filtered",
        Status.IGNORED: "Ignored",
    },
}
# details_job's status_display of a host on a step (Node Manager's get_current_step_display)
_STEP_RUNNING: dict[Language, Callable[[str], str]] = {
    Language.ZH: lambda name: f"正在 {name}",
    Language.EN: lambda name: f"On {name}",
}
_STEP_FAILED: dict[Language, Callable[[str], str]] = {
    Language.ZH: lambda name: f"{name} 失败",
    Language.EN: lambda name: f"{name} failed",
}


def status_display(status: Status, language: Language) -> str:
    return STATUS_DISPLAY[language][status]


def step_running_display(name: str, language: Language) -> str:
    """正在 {step} / On {step}: ``name`` is already in ``language``."""
    return _STEP_RUNNING[language](name)


def step_failed_display(name: str, language: Language) -> str:
    """{step} 失败 / {step} failed: ``name`` is already in ``language``."""
    return _STEP_FAILED[language](name)


JOB_TYPE_DISPLAY: dict[Language, dict[str, str]] = {
    Language.ZH: {
        JobType.INSTALL_AGENT: "安装 Agent",
        JobType.REINSTALL_AGENT: "重装 Agent",
        JobType.UPGRADE_AGENT: "升级 Agent",
        JobType.RESTART_AGENT: "重启 Agent",
        JobType.RELOAD_AGENT: "重载配置",
        JobType.UNINSTALL_AGENT: "卸载 Agent",
        JobType.INSTALL_PROXY: "安装 Proxy",
        JobType.REINSTALL_PROXY: "重装 Proxy",
        JobType.REPLACE_PROXY: "替换 Proxy",
        JobType.UPGRADE_PROXY: "升级 Proxy",
        JobType.RESTART_PROXY: "重启 Proxy",
        JobType.RELOAD_PROXY: "重载配置",
        JobType.UNINSTALL_PROXY: "卸载 Proxy",
    },
    Language.EN: {
        JobType.INSTALL_AGENT: "Install Agent",
        JobType.REINSTALL_AGENT: "Reinstall Agent",
        JobType.UPGRADE_AGENT: "Upgrade Agent",
        JobType.RESTART_AGENT: "Restart Agent",
        JobType.RELOAD_AGENT: "Reload configuration",
        JobType.UNINSTALL_AGENT: "Uninstall Agent",
        JobType.INSTALL_PROXY: "Install Proxy",
        JobType.REINSTALL_PROXY: "Reinstall Proxy",
        JobType.REPLACE_PROXY: "Replace Proxy",
        JobType.UPGRADE_PROXY: "Upgrade Proxy",
        JobType.RESTART_PROXY: "Restart Proxy",
        JobType.RELOAD_PROXY: "Reload configuration",
        JobType.UNINSTALL_PROXY: "Uninstall Proxy",
    },
}
OP_TYPE_DISPLAY: dict[Language, dict[str, str]] = {
    Language.ZH: {
        "INSTALL": "安装",
        "REINSTALL": "重装",
        "UPGRADE": "升级",
        "RESTART": "重启",
        "RELOAD": "重载",
        "UNINSTALL": "卸载",
        "REPLACE": "替换",
    },
    Language.EN: {
        "INSTALL": "Install",
        "REINSTALL": "Reinstall",
        "UPGRADE": "Upgrade",
        "RESTART": "Restart",
        "RELOAD": "Reload",
        "UNINSTALL": "Uninstall",
        "REPLACE": "Replace",
    },
}
STEP_TYPE_DISPLAY: dict[Language, dict[str, str]] = {
    Language.ZH: {"AGENT": "Agent", "PLUGIN": "插件", "PROXY": "Proxy"},
    Language.EN: {"AGENT": "Agent", "PLUGIN": "Plugin", "PROXY": "Proxy"},
}


def job_type_display(job_type: str, language: Language) -> str:
    """The display name of a job type; an unknown type shows as itself."""
    return display_of(JOB_TYPE_DISPLAY, job_type, language)


def display_of(table: Mapping[Language, Mapping[str, str]], key: str, language: Language) -> str:
    """``key``'s display in one of the tables above; an unknown key shows as itself."""
    return table[language].get(key, key)


# --- messages ------------------------------------------------------------------------------------------------

# The Chinese phrases of error messages (errors.py, the use cases' own messages) and their English. A message
# is Node Manager's words first, then our detail in English ("订阅任务不存在: subscription 3 has not run yet"),
# so the English form replaces the phrases and keeps everything else, facts included. A phrase with facts
# inside is a pattern; the longer phrases come first where one contains another.
_PHRASES: tuple[tuple[str, str], ...] = (
    (r"系统错误，请联系管理员", "System error, please contact administrator"),
    (r"订阅\(([^)]*)\)不存在", r"Subscription (\1) does not exist"),
    (r"订阅任务实例不存在", "Subscription task instance does not exist"),
    (r"订阅任务不存在", "Subscription task does not exist"),
    (r"订阅\[id:([^\]]*)\]不存在运行中的任务，请确认", r"Subscription [id:\1] has no running tasks, please confirm"),
    (r"无法获取失败任务节点", "Unable to get the failed task node"),
    (r"实例存在运行中任务", "Instance has running tasks"),
    (r"接入点名称重复", "Duplicate access point name"),
    (r"不存在ID为: (\S+) 的管控区域", r'No "BK-Net" with id: \1'),
    (r"接入点\(id:([^)]*)\)不存在", r"Access point (id: \1) does not exist"),
    (r"主机的安装通道不存在，请重新选择", "The installation channel for the host does not exist, please select again"),
    (r"安装通道「([^」]*)」正在被 (\d+) 台主机使用", r'Install channel "\1" is used by \2 host(s)'),
    (r"安装通道不存在", "Install channel does not exist"),
    (r"该区域已存在主机", "Host already exists in this area"),
    (
        r"不允许混合操作【手动安装】和【自动安装】的主机",
        "Mixing [manually installed] and [automatically installed] hosts is not allowed",
    ),
    (
        r"安装节点主机(\S+?)不存在，请确认是否已安装AGENT",
        r"The installation node host \1 does not exist, please confirm whether AGENT is installed",
    ),
    (r"主机不存在", "Host does not exist"),
    (r"您没有该操作的权限", "You do not have permission for this operation"),
    (r"您没有该接入点的权限", "You do not have permission for this access point"),
    (
        r"您没有权限执行操作，请申请「管控区域」编辑权限",
        'You do not have permission to perform the operation, please apply for "BK-Net" editing permission',
    ),
    (r"您没有查看该「管控区域」的权限", 'You do not have permission to view this "BK-Net"'),
    (r"您没有编辑该「管控区域」的权限", 'You do not have permission to edit this "BK-Net"'),
    (r"您没有删除该「管控区域」的权限", 'You do not have permission to delete this "BK-Net"'),
    (r"该接入点正在被「管控区域」 (.+?) 使用", r'This access point is being used by "BK-Net" \1'),
    (r"该接入点正在被 (\d+) 台主机使用", r"This access point is used by \1 host(s)"),
    (r"默认接入点不允许删除", "The default access point cannot be deleted"),
    (r"管控区域不可名为「直连区域」", 'The "BK-Net" cannot be named as "Direct Mode"'),
    (r"管控区域名称不可重复", "BK-Net name cannot be repeated"),
    (r"管控区域 (\S+) 不存在", r'"BK-Net" \1 does not exist'),
    (r" 是「直连区域」，不可以安装PROXY", ' is "Direct Mode", PROXY cannot be installed'),
    (r"该「管控区域」下不存在代理", 'No Proxy exists in this "BK-Net"'),
    (r"不存在可用代理", "No available proxy"),
    (r"替换PROXY必须填写replace_host_id", "Replace PROXY must fill in replace_host_id"),
    (
        r"查询节点属性组合必须为\(bk_biz_id, bk_inst_id, bk_obj_id\)",
        "The query node attribute combination must be (bk_biz_id, bk_inst_id, bk_obj_id)",
    ),
    (
        r"Proxy 操作的请求参数 outer_ip 和 outer_ipv6 不能同时为空",
        "The request parameters outer_ip and outer_ipv6 of the Proxy operation cannot be empty at the same time",
    ),
    (
        r"请求参数 inner_ip 和 inner_ipv6 不能同时为空",
        "Request parameters inner_ip and inner_ipv6 cannot be empty at the same time",
    ),
    (r"token 非法", "token invalid"),
    (r"token 已使用", "token already used"),
    (r"token 已过期", "token expired"),
    (r"安装命令已在执行", "The install command is already running"),
    (r"安装 已结束", "Install has ended"),
    (r"自动选择接入点", "Auto select access point"),
    (r"(?<=no )安装(?= step)", "Install"),  # "the host's job has no 安装 step"
)
_PHRASE_PATTERNS = tuple((re.compile(zh), en) for zh, en in _PHRASES)


def translate_message(message: str, language: Language) -> str:
    """An error message as ``language`` says it: in English, each known Chinese phrase replaced by its English,
    the rest (facts, our English detail) kept; in Chinese, the message itself."""
    if language is Language.ZH or message.isascii():
        return message
    for pattern, english in _PHRASE_PATTERNS:
        message = pattern.sub(english, message)
    return message
