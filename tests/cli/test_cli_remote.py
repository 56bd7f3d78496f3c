"""``nodeops job …`` and ``nodeops log …`` as an operator runs them: the installed command in a subprocess,
talking HTTP to a running service (SQLite, engine on, local hosts), checked by what it prints and its exit
code. The followed run's output is also rendered to test-artifacts/cli-follow.svg."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from rich.text import Text

from tests.support import live_jobs
from tests.support.factories import SEED_STEPS, make_seed_job
from tests.support.jobs import dead_port
from tests.support.live_jobs import CHROMIUM, SLOW_LINE, SLOW_LINES, artifact, publish_doc_image

SEED_INSTANCE = "host|instance|host|1"
TIMEOUT_S = 90

# fixtures: the running service (SQLite only: these tests check commands, not the store)
database_url = live_jobs.database_url
stack = live_jobs.stack


def _nodeops() -> str:
    return str(Path(sys.executable).with_name("nodeops"))


@pytest.fixture
def cli_env(stack, tmp_path):
    """The CLI's environment: the service's URL and the admin's identity; an empty data dir of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEOPS_")}
    env.update(
        NODEOPS_DATA_DIR=str(tmp_path / "cli-data"),
        NODEOPS_URL=stack.url,
        NODEOPS_APP_CODE=stack.app.code,
        NODEOPS_APP_SECRET=stack.app.secret,
        NODEOPS_USERNAME="admin",
        COLUMNS="160",
        PYTHONUNBUFFERED="1",
    )
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([_nodeops(), *args], env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    return done


def assert_no_secret(stack, done: subprocess.CompletedProcess[str]) -> None:
    assert stack.app.secret not in done.stdout + done.stderr
    assert stack.token not in done.stdout + done.stderr


def test_log_prints_a_header_per_step_then_its_lines(stack, cli_env):
    seed = make_seed_job(stack.services)
    done = run(cli_env, "log", str(seed.job_id), SEED_INSTANCE)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for index, (name, status, log, start, finish) in enumerate(SEED_STEPS):
        header = next(i for i, line in enumerate(lines) if line.startswith(f"━━ {index + 1}. {name}"))
        assert f"✓ {status}" in lines[header] and f"{start} → {finish}" in lines[header], lines[header]
        assert lines[header + 1 : header + 1 + len(log.split("\n"))] == log.split("\n")
    assert_no_secret(stack, done)

    # the same with the instance as a bare bk_host_id, and only one step by number and one by name
    done = run(cli_env, "log", str(seed.job_id), "1", "--step", "3", "--step", "查询Agent状态")
    assert done.returncode == 0, done.stderr
    headers = [line for line in done.stdout.splitlines() if line.startswith("━━")]
    assert [h.split("  ")[0] for h in headers] == ["━━ 3. 执行升级脚本", "━━ 4. 查询Agent状态"]


def test_log_grep_prints_only_matching_lines(stack, cli_env):
    seed = make_seed_job(stack.services)
    done = run(cli_env, "log", str(seed.job_id), SEED_INSTANCE, "--grep", "开始执行")
    assert done.returncode == 0, done.stderr
    body = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert body == ["[2021-09-16 15:06:39 INFO] 开始执行升级脚本"]
    assert "1 match" in done.stdout
    done = run(cli_env, "log", str(seed.job_id), SEED_INSTANCE, "--grep", r"15:0[67]:\d0 INFO\]", "--regex")
    body = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert body == ["[2021-09-16 15:07:20 INFO]开始更新任务状态"], done.stdout
    done = run(cli_env, "log", str(seed.job_id), SEED_INSTANCE, "--grep", "(", "--regex")
    assert done.returncode == 2 and "not a valid regular expression" in done.stderr
    # the service's dialect (RE2): inline flags work, lookaround is refused with the reason
    done = run(cli_env, "log", str(seed.job_id), SEED_INSTANCE, "--grep", r"(?i)开始执行\p{Han}+", "--regex")
    assert [line for line in done.stdout.splitlines() if line.startswith("[")] == [
        "[2021-09-16 15:06:39 INFO] 开始执行升级脚本"
    ], done.stdout
    done = run(cli_env, "log", str(seed.job_id), SEED_INSTANCE, "--grep", "开始(?=执行)", "--regex")
    assert done.returncode == 2 and "lookahead" in done.stderr, done.stderr


def test_log_follow_prints_a_running_jobs_lines_as_they_come_and_the_hosts_bar(stack, cli_env, tmp_path):
    job_id = stack.install_slow(1)["job_id"]
    instance_id = "host|instance|host|127.0.20.1-0-0"
    env = {**cli_env, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0", "COLUMNS": "110"}  # colours, no redraws
    errors_path = tmp_path / "follow.stderr"
    with errors_path.open("w") as errors_file:
        process = subprocess.Popen(
            [_nodeops(), "log", str(job_id), instance_id, "--follow"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors_file,
            text=True,
        )
    watchdog = threading.Timer(TIMEOUT_S, process.kill)  # a hung CLI fails the test instead of hanging it
    watchdog.start()
    output: list[str] = []
    try:
        assert process.stdout is not None
        first = SLOW_LINE.format(n=1, total=SLOW_LINES)
        while True:
            line = process.stdout.readline()
            assert line, "the CLI ended before the job's lines came: " + "".join(output) + errors_path.read_text()
            output.append(line)
            if first in line:
                break
        steps = stack.api.log(job_id, instance_id)
        assert steps[4]["status"] == "RUNNING", "the line must come while its step runs"
        output.append(process.stdout.read())  # through the same buffer as readline: nothing is skipped
        process.wait(timeout=TIMEOUT_S)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    assert process.returncode == 0, errors_path.read_text()
    raw = "".join(output)
    assert "\x1b[" in raw  # coloured
    text = Text.from_ansi(raw).plain
    for n in range(1, SLOW_LINES + 1):
        assert text.count(SLOW_LINE.format(n=n, total=SLOW_LINES)) == 1, text
    assert "━━ 5. 安装  ▶ RUNNING" in text or "━━ 5. 安装  ✓ SUCCESS" in text, text
    assert "✓ SUCCESS  安装" in text  # the footer of a step seen running
    assert "job " + str(job_id) in text and "1 host: 1 done, 0 failed, 0 running, 0 pending" in text, text
    assert text.rstrip().endswith(f"instance {instance_id} ended ✓ SUCCESS"), text

    save_terminal_picture(raw, f"$ nodeops log {job_id} '{instance_id}' --follow", "cli-follow")


TERMINAL_PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; background: #1e1f29; }}
pre {{ margin: 0; padding: 14px 18px; color: #e0e2ea; background: #1e1f29; font-size: 14px; line-height: 1.35;
       font-family: 'DejaVu Sans Mono', 'WenQuanYi Zen Hei Mono', monospace; }}
</style></head><body><pre>{code}</pre></body></html>"""


def save_terminal_picture(raw: str, command: str, name: str) -> None:
    """The CLI's coloured output as test-artifacts/{name}.html and, when Chromium is here, {name}.png (the one
    the README shows)."""
    with open(os.devnull, "w") as sink:
        recorder = Console(record=True, width=110, force_terminal=True, color_system="truecolor", file=sink)
        recorder.print(command, style="bold", highlight=False)
        recorder.print(Text.from_ansi(raw.rstrip("\n")))
    html = recorder.export_html(inline_styles=True, code_format=TERMINAL_PAGE)
    artifact(f"{name}.html").write_text(html, encoding="utf-8")
    if not Path(CHROMIUM).exists():
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1040, "height": 600})
        page.set_content(html)
        png = artifact(f"{name}.png")
        page.locator("pre").screenshot(path=png)
        browser.close()
    publish_doc_image(png)


def test_job_commands_install_list_show_retry_and_revoke(stack, cli_env):
    setup = str(stack.root / "host5" / "nodeops-agent")
    done = run(
        cli_env,
        *("job", "install", "--host", "127.0.20.5", "--biz", "2", "--local"),
        *("--setup-path", setup, "--owned-path", "--follow"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "job 1 started: INSTALL_AGENT on 1 host" in done.stdout
    assert "✓ SUCCESS  127.0.20.5" in done.stdout  # the host's status change
    assert "1 host: 1 done, 0 failed, 0 running, 0 pending" in done.stdout
    assert "job 1 ended ✓ SUCCESS" in done.stdout

    done = run(cli_env, "job", "show", "1")
    assert done.returncode == 0, done.stderr
    assert "INSTALL_AGENT" in done.stdout and "✓ SUCCESS" in done.stdout
    assert "host|instance|host|127.0.20.5-0-0" in done.stdout
    assert "nodeops log 1 'host|instance|host|127.0.20.5-0-0'" in done.stdout

    done = run(cli_env, "job", "retry", "1")
    assert done.returncode == 1
    assert "3800003" in done.stderr and "error" in done.stderr
    done = run(cli_env, "job", "revoke", "1")
    assert done.returncode == 1 and "3800016" in done.stderr

    done = run(cli_env, "job", "operate", "RESTART_AGENT", "--host-id", "1", "--follow")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "job 2 started: RESTART_AGENT on 1 host" in done.stdout and "job 2 ended ✓ SUCCESS" in done.stdout

    done = run(cli_env, "job", "list")
    assert done.returncode == 0, done.stderr
    listed = [line for line in done.stdout.splitlines() if "INSTALL_AGENT" in line or "RESTART_AGENT" in line]
    assert len(listed) == 2 and "RESTART_AGENT" in listed[0], done.stdout  # newest first
    done = run(cli_env, "job", "list", "--status", "FAILED")
    assert "INSTALL_AGENT" not in done.stdout
    assert_no_secret(stack, done)


def test_job_install_refuses_what_it_cannot_send(stack, cli_env, tmp_path):
    done = run(cli_env, "job", "install", "--biz", "2")
    assert done.returncode == 2 and "no host" in done.stderr
    done = run(cli_env, "job", "install", "--host", "127.0.20.6", "--job-type", "UPGRADE_AGENT")
    assert done.returncode == 2 and "INSTALL_AGENT" in done.stderr
    done = run(cli_env, "job", "install", "--host", "127.0.20.6", "--biz", "2")  # ssh without credentials
    assert done.returncode == 1 and "3801018" in done.stderr, done.stderr
    done = run(cli_env, "job", "install", "--host", "127.0.20.6", "--biz", "2", "--job-type", "INSTALL_PROXY")
    assert done.returncode == 1 and "3800001" in done.stderr and "outer_ip" in done.stderr, done.stderr
    proxy = ("--host", "127.0.20.6", "--biz", "2", "--cloud", "0", "--outer-ip", "127.0.20.6")
    done = run(cli_env, "job", "install", *proxy, "--job-type", "INSTALL_PROXY")
    assert done.returncode == 1 and "3801006" in done.stderr, done.stderr
    done = run(cli_env, "job", "install", "--host", "127.0.20.6", "--biz", "2", "--install-channel", "77")
    assert done.returncode == 1 and "3801037" in done.stderr, done.stderr


def test_errors_say_what_was_wrong_and_exit_non_zero(stack, cli_env, tmp_path):
    seed = make_seed_job(stack.services)
    unreachable = f"http://127.0.0.1:{dead_port()}"
    done = run({**cli_env, "NODEOPS_URL": unreachable}, "log", str(seed.job_id), SEED_INSTANCE)
    assert done.returncode == 1
    message = " ".join(done.stderr.split())
    assert f"cannot reach the nodeops service at {unreachable}" in message and "nodeops serve" in message

    done = run({**cli_env, "NODEOPS_APP_SECRET": "wrong-secret-0123456789"}, "job", "show", str(seed.job_id))
    assert done.returncode == 1 and "1306403" in done.stderr and "wrong-secret" not in done.stderr

    done = run(cli_env, "log", "99", SEED_INSTANCE)
    assert done.returncode == 1 and "3801012" in done.stderr
    done = run(cli_env, "log", str(seed.job_id), "host|instance|host|7")
    assert done.returncode == 1 and "3800007" in done.stderr

    bare = {k: v for k, v in cli_env.items() if not k.startswith(("NODEOPS_APP", "NODEOPS_USERNAME"))}
    done = run(bare, "log", str(seed.job_id), SEED_INSTANCE)
    assert done.returncode == 1 and "NODEOPS_APP_CODE" in done.stderr and "nodeops app add" in done.stderr
    assert_no_secret(stack, done)


def test_without_identity_in_the_environment_the_demo_access_is_used(stack, cli_env, tmp_path):
    seed = make_seed_job(stack.services)
    data_dir = Path(cli_env["NODEOPS_DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "demo.json").write_text(
        json.dumps({"app_code": stack.app.code, "app_secret": stack.app.secret, "username": "admin"})
    )
    env = {k: v for k, v in cli_env.items() if not k.startswith(("NODEOPS_APP", "NODEOPS_USERNAME"))}
    done = run(env, "log", str(seed.job_id), SEED_INSTANCE)
    assert done.returncode == 0, done.stderr
    assert "━━ 1. 更新任务状态" in done.stdout
    assert_no_secret(stack, done)

    # a bk_token stands for the user
    done = run({**env, "NODEOPS_BK_TOKEN": stack.token}, "job", "show", str(seed.job_id))
    assert done.returncode == 0, done.stderr
    assert_no_secret(stack, done)


def test_job_commands_prints_the_manual_hosts_command_which_installs_it(stack, cli_env):
    host = {
        "bk_biz_id": 2,
        "inner_ip": "127.0.21.9",
        "is_manual": True,
        "setup_path": str(stack.root / "manual9" / "nodeops-agent"),
    }
    common = {"bk_app_code": stack.app.code, "bk_app_secret": stack.app.secret, "bk_username": "admin"}
    started = httpx.post(
        f"{stack.url}/api/job/install/", json={**common, "job_type": "INSTALL_AGENT", "hosts": [host]}
    ).json()
    assert started["result"], started
    job_id = started["data"]["job_id"]
    deadline = time.monotonic() + 20
    while (done := run(cli_env, "job", "commands", str(job_id), "1")).returncode == 2:
        assert "PENDING" in done.stdout
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert done.returncode == 0, done.stdout + done.stderr
    installed = subprocess.run(["sh", "-c", done.stdout], capture_output=True, text=True, timeout=60, check=False)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "安装完成" in installed.stdout
    done = run(cli_env, "job", "show", str(job_id), "--follow")
    assert done.returncode == 0, done.stdout + done.stderr
    assert run(cli_env, "job", "commands", str(job_id), "999999").returncode == 1
