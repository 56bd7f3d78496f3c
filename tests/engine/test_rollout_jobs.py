"""Rolling batches, the failure threshold and script hooks in the embedded engine, over the job API with
local-transport hosts (each with its own install path and agent). A host fails for a real reason: its install
path is under /proc, where nothing can be created."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.support.jobs import AGENT, ESB_JOB, local_host

INSTALL = f"{ESB_JOB}/install/"
FAILING = "/proc/nodeops-forbidden/agent"  # mkdir -p fails there, whoever runs it


def _hosts(tmp_path, count: int, failing: set[int]) -> list[dict[str, object]]:
    return [local_host(tmp_path, n + 1, **({"setup_path": FAILING} if n in failing else {})) for n in range(count)]


def _records(services, job_id: int) -> list[tuple[str, int | None, str, object, object]]:
    with services.db.engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text(
                    "SELECT instance_id, batch, status, start_at, finish_at FROM instance_records "
                    "WHERE job_id = :j ORDER BY id"
                ),
                {"j": job_id},
            )
        ]


def test_twelve_hosts_in_batches_of_four_stop_at_the_threshold(api, services, tmp_path) -> None:
    # batch 1 passes; in batch 2, the second failure makes 2 of 8 started (25 %) > 20 %: batch 3 never starts,
    # so its failing host (position 9) is IGNORED like the others
    hosts = _hosts(tmp_path, 12, failing={4, 5, 9})
    body = {"job_type": "INSTALL_AGENT", "hosts": hosts, "batch_size": 4, "max_fail_percentage": 20}
    job_id = api.ok(INSTALL, body)["job_id"]
    done = api.wait(job_id, timeout_s=120)
    rows = {row["inner_ip"]: row for row in done["list"]}
    ips = [str(h["inner_ip"]) for h in hosts]
    assert [rows[ip]["batch"] for ip in ips] == [1] * 4 + [2] * 4 + [3] * 4
    assert [rows[ip]["status"] for ip in ips] == ["SUCCESS"] * 4 + ["FAILED"] * 2 + ["SUCCESS"] * 2 + ["IGNORED"] * 4
    assert done["status"] == "PART_FAILED", done
    assert done["statistics"]["ignored_count"] == 4 and done["statistics"]["failed_count"] == 2
    for ip in ips[8:]:
        row = rows[ip]
        assert "2 of the 8 hosts started so far failed" in row["status_display"], row
        assert "max_fail_percentage 20%" in row["status_display"], row
        assert row["start_time"] is None
        steps = api.log(job_id, row["instance_id"])
        assert steps[0]["status"] == "IGNORED" and "max_fail_percentage 20%" in steps[0]["log"], steps[0]
        assert steps[0]["log"].count("max_fail_percentage") == 1
        assert {s["status"] for s in steps[1:]} == {"PENDING"}
    failed = api.log(job_id, rows[ips[4]]["instance_id"])
    assert any(s["status"] == "FAILED" and "creating the install path failed" in s["log"] for s in failed), failed
    # batch 2 started only once every host of batch 1 had ended
    records = _records(services, job_id)
    first_end = max(r[4] for r in records if r[1] == 1)
    assert all(r[3] >= first_end for r in records if r[1] == 2), records
    assert all(r[3] is None for r in records if r[1] == 3), records


def test_without_rollout_parameters_nothing_changes(api, services, tmp_path) -> None:
    job_id = api.ok(INSTALL, {"job_type": "INSTALL_AGENT", "hosts": _hosts(tmp_path, 2, failing=set())})["job_id"]
    done = api.wait(job_id, timeout_s=60)
    assert done["status"] == "SUCCESS"
    assert [row["batch"] for row in done["list"]] == [None, None]
    with services.db.engine.connect() as conn:
        assert conn.execute(text("SELECT rollout FROM jobs WHERE id = :j"), {"j": job_id}).scalar() is None


def test_a_revoke_during_the_batch_interval_ends_the_job_at_once(api, services, tmp_path) -> None:
    body = {
        "job_type": "INSTALL_AGENT",
        "hosts": _hosts(tmp_path, 3, failing=set()),
        "batch_size": 1,
        "batch_interval_s": 600,
    }
    job_id = api.ok(INSTALL, body)["job_id"]
    api.wait(job_id, until=lambda data: data["list"][0]["status"] == "SUCCESS", timeout_s=60)
    time.sleep(0.3)
    assert [row["status"] for row in api.details(job_id, pagesize=-1)["list"]][1:] == ["PENDING", "PENDING"]
    began = time.monotonic()
    api.ok(f"/api/job/{job_id}/revoke/", {})
    done = api.wait(job_id, timeout_s=10)
    assert time.monotonic() - began < 10
    assert done["status"] == "TERMINATED"
    assert [row["status"] for row in done["list"]] == ["SUCCESS", "FAILED", "FAILED"]
    for row in done["list"][1:]:
        assert row["start_time"] is None
        assert "已终止" in api.log(job_id, row["instance_id"])[0]["log"]


def test_a_retry_runs_without_batches(api, services, tmp_path) -> None:
    hosts = _hosts(tmp_path, 3, failing={0})
    body = {"job_type": "INSTALL_AGENT", "hosts": hosts, "batch_size": 1, "max_fail_percentage": 0}
    job_id = api.ok(INSTALL, body)["job_id"]
    done = api.wait(job_id, timeout_s=60)
    assert [row["status"] for row in done["list"]] == ["FAILED", "IGNORED", "IGNORED"]
    assert "1 of the 1 hosts" in done["list"][1]["status_display"]
    api.ok(f"/api/job/{job_id}/retry/", {})  # FAILED ones only: the IGNORED hosts are installed again by a new job
    done = api.wait(job_id, timeout_s=60)
    assert [(row["status"], row["batch"], row["attempt"]) for row in done["list"]] == [
        ("FAILED", None, 2),
        ("IGNORED", 2, 1),
        ("IGNORED", 3, 1),
    ]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "four"}, "batch_size"),
        ({"max_fail_percentage": 101}, "max_fail_percentage"),
        ({"batch_size": 2, "batch_interval_s": 3601}, "batch_interval_s"),
        ({"script_hooks": [{"name": "firewall_off"}]}, "script_hooks[0].script"),
        ({"script_hooks": {"name": "x"}}, "script_hooks"),
        ({"script_hooks": [{"name": "x", "script": "true", "when": "later"}]}, "script_hooks[0].when"),
        ({"batch_size": {"a": 1}}, "batch_size"),
        ({"batch_size": 10**30}, "batch_size"),
        ({"max_fail_percentage": [20]}, "max_fail_percentage"),
        ({"batch_size": 1, "batch_interval_s": "\uff11\uff10"}, "batch_interval_s"),
        ({"script_hooks": [{"name": "a\u0007b", "script": "true"}]}, "script_hooks[0].name"),
        ({"script_hooks": [{"name": "x", "script": ["echo"]}]}, "script_hooks[0].script"),
        ({"script_hooks": [{"name": "x", "script": "#" * 70_000}]}, "script_hooks[0].script"),
    ],
)
def test_bad_rollout_and_hooks_answer_3800001_naming_the_field(api, tmp_path, extra, field) -> None:
    body = {"job_type": "INSTALL_AGENT", "hosts": _hosts(tmp_path, 1, failing=set()), **extra}
    answer = api.error(INSTALL, body, 3800001)
    assert field in answer["message"], answer


def test_operate_job_validates_its_rollout_too(api, tmp_path) -> None:
    answer = api.error(
        f"{ESB_JOB}/operate/", {"job_type": "RESTART_AGENT", "bk_host_id": [1], "batch_size": -3}, 3800001
    )
    assert "batch_size" in answer["message"]


def test_script_hooks_run_as_steps_of_their_own_with_their_output_in_the_log(api, tmp_path) -> None:
    hooks = [
        {"name": "准备", "script": 'echo "before $NODEOPS_HOOK_NAME"\necho "in $(pwd)"\n', "when": "before_start"},
        {"name": "check", "script": 'echo after; test -f "$NODEOPS_SETUP_PATH/VERSION"', "when": "after_start"},
    ]
    job_id = api.ok(
        INSTALL, {"job_type": "INSTALL_AGENT", "hosts": _hosts(tmp_path, 1, failing=set()), "script_hooks": hooks}
    )["job_id"]
    done = api.wait(job_id, timeout_s=60)
    assert done["status"] == "SUCCESS", done
    steps = api.log(job_id, done["list"][0]["instance_id"])
    names = [s["step"] for s in steps]
    assert names == [
        "更新任务状态",
        "注册主机到配置平台",
        "查询主机密码",
        "选择接入点",
        "执行脚本钩子: 准备",
        "安装",
        "查询Agent状态",
        "执行脚本钩子: check",
        "更新任务状态",
    ]
    before, after = steps[4]["log"], steps[7]["log"]
    assert "before 准备" in before and "in /tmp/nodeops-hook." in before, before
    assert "after" in after and steps[7]["status"] == "SUCCESS"
    assert not list(Path("/tmp").glob("nodeops-hook.*/hook.sh"))


def test_a_failing_hook_fails_its_host_and_stops_its_pipeline(api, tmp_path) -> None:
    hooks = [{"name": "gate", "script": "echo 'not ready' >&2\nexit 3"}]
    job_id = api.ok(
        INSTALL, {"job_type": "INSTALL_AGENT", "hosts": _hosts(tmp_path, 1, failing=set()), "script_hooks": hooks}
    )["job_id"]
    done = api.wait(job_id, timeout_s=60)
    assert done["status"] == "FAILED"
    steps = api.log(job_id, done["list"][0]["instance_id"])
    hook = steps[4]
    assert hook["step"] == "执行脚本钩子: gate" and hook["status"] == "FAILED"
    assert "not ready" in hook["log"] and "status 3" in hook["log"] and "script hook gate failed" in hook["log"]
    assert all(s["status"] == "PENDING" for s in steps[5:])
    assert not (tmp_path / "host1" / "nodeops-agent" / "VERSION").exists()


def test_a_hook_on_an_sshd_host_runs_as_the_login_account(api, ssh_hosts) -> None:
    (host,) = ssh_hosts(1)
    spec = {
        "bk_biz_id": 2,
        "inner_ip": host.ip,
        "port": host.port,
        "account": host.username,
        "password": host.password,
        "setup_path": f"{host.setup_path}/agent-{uuid.uuid4().hex[:8]}",
        "owned_path": True,  # the test user has no sudo: it installs into its own folder
    }
    hooks = [{"name": "who", "script": 'echo "user=$(id -un)"; ls -ld .'}]
    try:
        job_id = api.ok(INSTALL, {"job_type": "INSTALL_AGENT", "hosts": [spec], "script_hooks": hooks})["job_id"]
        done = api.wait(job_id, timeout_s=90)
    finally:
        script = Path(str(spec["setup_path"])) / AGENT
        subprocess.run([sys.executable, str(script), "stop", "--home", str(script.parent)], check=False, timeout=20)
    assert done["status"] == "SUCCESS", done
    steps = api.log(job_id, done["list"][0]["instance_id"])
    hook = next(s for s in steps if s["step"] == "执行脚本钩子: who")
    assert f"user={host.username}" in hook["log"], hook["log"]
    assert "drwx------" in hook["log"] and host.password not in str(steps)
