"""Rolling batches and the failure threshold, read and decided (domain.rollout), and plans with script hooks."""

from __future__ import annotations

import pytest

from nodeops.domain.plans import HookWhen, JobType, ScriptHook, hook_name_of, plan_steps
from nodeops.domain.rollout import Rollout, read_rollout
from nodeops.domain.script_hooks import MAX_HOOKS, MAX_SCRIPT_BYTES, read_script_hooks


def test_no_rollout_parameter_keeps_today_s_behaviour() -> None:
    problems: dict[str, str] = {}
    assert read_rollout({}, problems) is None
    assert read_rollout({"batch_size": None, "max_fail_percentage": None}, problems) is None
    assert problems == {}


def test_a_rollout_is_read_and_batches_follow_the_order_of_the_hosts() -> None:
    problems: dict[str, str] = {}
    plan = read_rollout({"batch_size": 4, "max_fail_percentage": 20, "batch_interval_s": 1.5}, problems)
    assert problems == {}
    assert plan == Rollout(batch_size=4, max_fail_percentage=20.0, batch_interval_s=1.5)
    assert [plan.batch_of(i) for i in range(9)] == [1, 1, 1, 1, 2, 2, 2, 2, 3]
    assert Rollout.stored(plan.as_dict()) == plan
    assert Rollout.stored(None) is None
    assert Rollout(max_fail_percentage=10).batch_of(99) == 1  # a threshold alone: one batch


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "4"}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"batch_size": 10**400}, "batch_size"),
        ({"max_fail_percentage": 100.5}, "max_fail_percentage"),
        ({"max_fail_percentage": -1}, "max_fail_percentage"),
        ({"max_fail_percentage": "20"}, "max_fail_percentage"),
        ({"max_fail_percentage": float("nan")}, "max_fail_percentage"),
        ({"max_fail_percentage": 10**400}, "max_fail_percentage"),
        ({"batch_size": 2, "batch_interval_s": 3601}, "batch_interval_s"),
        ({"batch_size": 2, "batch_interval_s": [1]}, "batch_interval_s"),
        ({"batch_interval_s": 5}, "batch_interval_s"),
    ],
)
def test_a_bad_rollout_value_is_named(params: dict[str, object], field: str) -> None:
    problems: dict[str, str] = {}
    read_rollout(params, problems)
    assert list(problems) == [field], problems


def test_the_threshold_is_more_than_the_share_of_the_hosts_started() -> None:
    plan = Rollout(batch_size=4, max_fail_percentage=20)
    assert not plan.threshold_reached(started=8, failed=1)  # 12.5 %
    assert plan.threshold_reached(started=8, failed=2)  # 25 %
    assert not plan.threshold_reached(started=5, failed=1)  # exactly 20 % is not more
    assert not plan.threshold_reached(started=0, failed=0)
    assert not Rollout(batch_size=4).threshold_reached(started=4, failed=4)  # no threshold
    assert Rollout(max_fail_percentage=0).threshold_reached(started=10, failed=1)
    reason = plan.stop_reason(started=8, failed=2)
    assert "2 of the 8 hosts" in reason and "max_fail_percentage 20%" in reason


def _hook(name: str, when: HookWhen) -> ScriptHook:
    return ScriptHook(name=name, script="echo hi", when=when)


def test_hooks_add_their_steps_around_install_in_the_order_given() -> None:
    hooks = (
        _hook("prepare", HookWhen.BEFORE_START),
        _hook("check", HookWhen.AFTER_START),
        _hook("firewall", HookWhen.BEFORE_START),
    )
    steps = plan_steps(JobType.INSTALL_AGENT, hooks)
    assert [s.name for s in steps] == [
        "更新任务状态",
        "注册主机到配置平台",
        "查询主机密码",
        "选择接入点",
        "执行脚本钩子: prepare",
        "执行脚本钩子: firewall",
        "安装",
        "查询Agent状态",
        "执行脚本钩子: check",
        "更新任务状态",
    ]
    assert [s.index for s in steps] == list(range(len(steps)))
    assert hook_name_of(steps[4].name) == "prepare"
    assert plan_steps(JobType.INSTALL_AGENT, ()) == plan_steps(JobType.INSTALL_AGENT)
    with pytest.raises(ValueError, match="script hooks need"):
        plan_steps(JobType.RESTART_AGENT, hooks)


def test_script_hooks_are_read_with_every_bad_one_named() -> None:
    problems: dict[str, str] = {}
    hooks = read_script_hooks(
        [
            {"name": "ok", "script": "echo 你好", "when": "after_start"},
            {"name": "firewall_off"},
            {"name": "ok", "script": "true"},
            {"name": "x", "script": "true", "when": "at_noon"},
            {"name": "y", "script": "a\0b"},
            {"name": "z", "script": "#" * (MAX_SCRIPT_BYTES + 1)},
            {"name": "", "script": "true"},
            {"name": "w", "script": "true", "sudo": True},
            {"name": "v", "script": "\ud800", "when": ["before_start"]},
            "echo",
        ],
        problems,
    )
    assert hooks == (ScriptHook(name="ok", script="echo 你好", when=HookWhen.AFTER_START),)
    assert set(problems) == {
        "script_hooks[1].script",
        "script_hooks[2].name",
        "script_hooks[3].when",
        "script_hooks[4].script",
        "script_hooks[5].script",
        "script_hooks[6].name",
        "script_hooks[7]",
        "script_hooks[8].script",
        "script_hooks[8].when",
        "script_hooks[9]",
    }, problems
    assert "Windows" in problems["script_hooks[1].script"]
    problems = {}
    assert read_script_hooks([{"name": f"h{i}", "script": "true"} for i in range(MAX_HOOKS + 1)], problems) == ()
    assert "at most" in problems["script_hooks"]
    problems = {}
    assert read_script_hooks("echo", problems) == () and "script_hooks" in problems
    assert read_script_hooks(None, problems) == ()
