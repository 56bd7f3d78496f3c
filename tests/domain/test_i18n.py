"""The language catalog (``nodeops.domain.i18n``): which tags name which language, how Accept-Language is weighed,
that every step, status and job type has both texts, and that every error's English message keeps its facts and
has no Chinese left."""

from __future__ import annotations

import inspect
import re

import pytest

from nodeops import errors
from nodeops.domain.i18n import (
    JOB_TYPE_DISPLAY,
    OP_TYPE_DISPLAY,
    STATUS_DISPLAY,
    STEP_NAMES_EN,
    Language,
    job_type_display,
    parse_accept_language,
    parse_language,
    status_display,
    step_failed_display,
    step_name,
    step_running_display,
    translate_message,
)
from nodeops.domain.plans import STEP_NAMES, JobType, ScriptHook, StepCode, hook_step_name, plan_steps
from nodeops.domain.status import Status

CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef「」【】]")


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("en", Language.EN),
        ("EN", Language.EN),
        ("en-US", Language.EN),
        ("en_us", Language.EN),
        (" en-gb ", Language.EN),
        ("zh-cn", Language.ZH),
        ("zh-hans", Language.ZH),
        ("zh_CN", Language.ZH),
        ("zh", Language.ZH),
        ("english", None),  # not a tag
        ("enx", None),
        ("fr", None),
        ("", None),
        ("英语", None),
        ("e", None),
        ("en" + "-x" * 100, None),  # longer than any tag
        (None, None),
        (1, None),
        (["en"], None),
    ],
)
def test_tags_name_a_language_or_none(tag, expected):
    assert parse_language(tag) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("en-US,en;q=0.9", Language.EN),
        ("zh-CN,zh;q=0.9,en;q=0.8", Language.ZH),
        ("zh-CN;q=0.5, en;q=0.8", Language.EN),  # the higher q-value wins, whatever the order
        ("en;q=0.2, zh-CN", Language.ZH),  # no q is q=1
        ("fr-FR, en;q=0.1", Language.EN),  # a language of neither kind is passed over
        ("en;q=0, zh;q=0.1", Language.ZH),  # q=0 refuses
        ("en;q=0", None),
        ("en;q=abc", None),  # a malformed q-value drops its item
        ("en;q=2", None),
        ("*", None),
        ("fr, de;q=0.9", None),
        ("", None),
        (";;;,,,", None),
        ("en;q=0.5, zh;q=0.5", Language.EN),  # equals: the first
    ],
)
def test_accept_language_is_weighed_by_q_value(header, expected):
    assert parse_accept_language(header) is expected


def test_a_huge_accept_language_header_is_read_in_bounded_time():
    # thousands of items: only the first ones are looked at, and the answer still comes from them
    assert parse_accept_language("fr;q=0.9," * 10_000 + "en") is None
    assert parse_accept_language("en;q=0.1," + "fr," * 10_000) is Language.EN


def test_every_step_has_an_english_name_and_chinese_stays_as_stored():
    assert set(STEP_NAMES_EN) == set(StepCode)
    for code, chinese in STEP_NAMES.items():
        assert step_name(chinese, Language.ZH) == chinese
        english = step_name(chinese, Language.EN)
        assert english == STEP_NAMES_EN[code] and english.isascii(), code
    for job_type in JobType:  # every plan reads in English
        for step in plan_steps(job_type):
            assert not CJK.search(step_name(step.name, Language.EN)), (job_type, step.name)


def test_a_hook_step_keeps_its_hook_name_and_an_unknown_step_stays_as_stored():
    chinese = hook_step_name("准备 环境")
    assert step_name(chinese, Language.EN) == "Run script hook: 准备 环境"
    assert step_name(chinese, Language.ZH) == chinese
    hooks = [ScriptHook(name="pre", script="true", when="before_start")]  # type: ignore[arg-type]
    names = [step_name(s.name, Language.EN) for s in plan_steps(JobType.INSTALL_AGENT, hooks)]
    assert "Run script hook: pre" in names
    assert step_name("一个旧步骤", Language.EN) == "一个旧步骤"


def test_statuses_and_job_types_have_both_displays():
    for language in Language:
        assert set(STATUS_DISPLAY[language]) == set(Status)
        assert set(JOB_TYPE_DISPLAY[language]) == set(JobType)
        assert set(OP_TYPE_DISPLAY[language]) == set(OP_TYPE_DISPLAY[Language.ZH])
    assert status_display(Status.SUCCESS, Language.ZH) == "执行成功"
    assert status_display(Status.SUCCESS, Language.EN) == "Succeed"
    assert job_type_display("INSTALL_AGENT", Language.EN) == "Install Agent"
    assert job_type_display("INSTALL_AGENT", Language.ZH) == "安装 Agent"
    assert job_type_display("NO_SUCH_TYPE", Language.EN) == "NO_SUCH_TYPE"
    for language in Language:
        for display in JOB_TYPE_DISPLAY[language].values():
            assert bool(CJK.search(display)) is (language is Language.ZH) or display.endswith(("Agent", "Proxy"))
    assert step_running_display("安装", Language.ZH) == "正在 安装"
    assert step_failed_display("安装", Language.ZH) == "安装 失败"
    assert step_running_display("Install", Language.EN) == "On Install"
    assert step_failed_display("Install", Language.EN) == "Install failed"


# sample facts for each keyword of an error's constructor, by the annotation's text
_SAMPLES: dict[str, object] = {
    "int": 4242,
    "int | None": 4242,
    "str": "fact-x",
    "str | None": "fact-x",
    "float": 7.5,
    "bool": False,
    "list[int]": [4242, 4343],
    "list[str]": ["fact-x"],
    "tuple[str, ...]": ("GET", "POST"),
    "Sequence[str]": ["row-1"],
}


def _error_classes() -> list[type[errors.NodeopsError]]:
    found: list[type[errors.NodeopsError]] = []
    pending = [errors.NodeopsError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return [cls for cls in found if cls.__module__ == errors.__name__]


def _instances(cls: type[errors.NodeopsError]) -> list[errors.NodeopsError]:
    """The error with sample facts, and with each of its flags turned on (they change the message)."""
    if cls is errors.InvalidInput:
        return [errors.InvalidInput({"job_id": "must be a positive integer"})]
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, object] = {}
    for name, param in params.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is not param.empty and name in ("message", "data"):
            continue
        annotation = str(param.annotation)
        if annotation not in _SAMPLES:
            raise AssertionError(f"{cls.__name__}.{name}: no sample for {annotation}; add one")
        kwargs[name] = _SAMPLES[annotation]
    variants = [dict(kwargs)]
    for name, value in kwargs.items():
        if value is False:
            variants.append({**kwargs, name: True})
        if name == "host_index":
            variants.append({**kwargs, name: None})
        if name == "task_ids":
            variants.append({**kwargs, name: []})
    if cls.__name__ == "LeaseLost":
        return [cls("worker-fact-x")]  # type: ignore[call-arg]
    return [cls(**v) for v in variants]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_message_reads_in_english_with_its_facts_and_unchanged_in_chinese(cls):
    for error in _instances(cls):
        english = translate_message(error.message, Language.EN)
        assert translate_message(error.message, Language.ZH) == error.message
        assert not CJK.search(english), (cls.__name__, english)
        # the facts of the message (numbers, names) are all still there
        for fact in re.findall(r"\d{4}|fact-x|row-1", error.message):
            assert fact in english, (cls.__name__, fact, english)


@pytest.mark.parametrize(
    ("message", "english"),
    [
        ("系统错误，请联系管理员 (internal error)", "System error, please contact administrator (internal error)"),
        ("订阅(3, 4)不存在: no subscription", "Subscription (3, 4) does not exist: no subscription"),
        (
            "订阅[id:9]不存在运行中的任务，请确认: job 5",
            "Subscription [id:9] has no running tasks, please confirm: job 5",
        ),
        ("不存在ID为: 77 的管控区域 (list them)", 'No "BK-Net" with id: 77 (list them)'),
        ("接入点(id:8)不存在", "Access point (id: 8) does not exist"),
        ("安装通道「甲 乙」正在被 3 台主机使用: x", 'Install channel "甲 乙" is used by 3 host(s): x'),
        ("主机不存在: host 4 is not in job 5", "Host does not exist: host 4 is not in job 5"),
        ("the host's job has no 安装 step", "the host's job has no Install step"),
        ("plain English stays", "plain English stays"),
    ],
)
def test_phrases_are_replaced_and_facts_kept(message, english):
    assert translate_message(message, Language.EN) == english
    assert translate_message(message, Language.ZH) == message
