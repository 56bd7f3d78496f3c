"""Step plans of every job type (spec §5.3, legacy 1.x shape wrapped in 更新任务状态)."""

from __future__ import annotations

import pytest

from nodeops.domain.plans import PROXY_JOB_TYPES, STEP_NAMES, JobType, PlannedStep, StepCode, plan_steps

UPDATE_JOB_STATUS = "更新任务状态"


def test_upgrade_agent_plan_names_are_the_seed_example():
    assert [step.name for step in plan_steps(JobType.UPGRADE_AGENT)] == [
        "更新任务状态",
        "批量下发升级包",
        "执行升级脚本",
        "查询Agent状态",
        "更新任务状态",
    ]


@pytest.mark.parametrize("job_type", list(JobType), ids=str)
def test_every_plan_starts_and_ends_with_update_job_status(job_type):
    steps = plan_steps(job_type)
    assert len(steps) >= 3
    assert steps[0].name == steps[-1].name == UPDATE_JOB_STATUS
    assert steps[0].code is steps[-1].code is StepCode.UPDATE_JOB_STATUS
    assert all(step.code is not StepCode.UPDATE_JOB_STATUS for step in steps[1:-1])


@pytest.mark.parametrize("job_type", list(JobType), ids=str)
def test_every_plan_indexes_its_steps_zero_to_n_minus_one(job_type):
    steps = plan_steps(job_type)
    assert [step.index for step in steps] == list(range(len(steps)))


@pytest.mark.parametrize("job_type", list(JobType), ids=str)
def test_every_step_name_is_its_code_display_name(job_type):
    for step in plan_steps(job_type):
        assert isinstance(step, PlannedStep)
        assert step.name == STEP_NAMES[step.code]


@pytest.mark.parametrize(
    ("job_type", "body"),
    [
        pytest.param(
            JobType.INSTALL_AGENT,
            ["注册主机到配置平台", "查询主机密码", "选择接入点", "安装", "查询Agent状态"],
            id="install_agent",
        ),
        pytest.param(
            JobType.REINSTALL_AGENT,
            ["查询主机密码", "选择接入点", "安装", "查询Agent状态"],
            id="reinstall_agent",
        ),
        pytest.param(JobType.RESTART_AGENT, ["重启", "查询Agent状态"], id="restart_agent"),
        pytest.param(
            JobType.RELOAD_AGENT,
            ["检查Agent状态", "渲染并下发Agent配置", "重载Agent配置", "查询Agent状态"],
            id="reload_agent",
        ),
        pytest.param(JobType.UNINSTALL_AGENT, ["查询主机密码", "卸载Agent", "更新主机进程状态"], id="uninstall_agent"),
        pytest.param(
            JobType.INSTALL_PROXY,
            ["注册主机到配置平台", "查询主机密码", "选择接入点", "安装", "查询Proxy状态"],
            id="install_proxy",
        ),
        pytest.param(
            JobType.REPLACE_PROXY,
            ["注册主机到配置平台", "查询主机密码", "选择接入点", "安装", "查询Proxy状态"],
            id="replace_proxy",
        ),
        pytest.param(
            JobType.REINSTALL_PROXY, ["查询主机密码", "选择接入点", "安装", "查询Proxy状态"], id="reinstall_proxy"
        ),
        pytest.param(JobType.UPGRADE_PROXY, ["批量下发升级包", "执行升级脚本", "查询Proxy状态"], id="upgrade_proxy"),
        pytest.param(JobType.RESTART_PROXY, ["重启", "查询Proxy状态"], id="restart_proxy"),
        pytest.param(
            JobType.RELOAD_PROXY,
            ["检查Agent状态", "渲染并下发Agent配置", "重载Agent配置", "查询Agent状态"],
            id="reload_proxy",
        ),
        pytest.param(JobType.UNINSTALL_PROXY, ["卸载Proxy", "更新主机进程状态"], id="uninstall_proxy"),
    ],
)
def test_plan_body_follows_spec_pipeline_order(job_type, body):
    assert [step.name for step in plan_steps(job_type)[1:-1]] == body


def test_every_step_code_has_a_display_name():
    assert set(STEP_NAMES) == set(StepCode)


def test_plans_are_fresh_immutable_tuples():
    plan = plan_steps(JobType.RESTART_AGENT)
    assert isinstance(plan, tuple)
    assert plan == plan_steps(JobType.RESTART_AGENT)
    with pytest.raises(AttributeError):
        plan[0].name = "x"  # type: ignore[misc]


def test_the_proxy_job_types_are_those_ending_in_proxy():
    assert {t for t in JobType if t.is_proxy} == PROXY_JOB_TYPES
    assert {t.value for t in PROXY_JOB_TYPES} == {
        "INSTALL_PROXY",
        "REINSTALL_PROXY",
        "REPLACE_PROXY",
        "UPGRADE_PROXY",
        "RESTART_PROXY",
        "RELOAD_PROXY",
        "UNINSTALL_PROXY",
    }
