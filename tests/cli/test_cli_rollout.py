"""``nodeops job install|operate`` with rolling batches and script hooks, against a running service."""

from __future__ import annotations

import json

from tests.cli import test_cli_remote
from tests.cli.test_cli_remote import run
from tests.support import live_jobs

# fixtures: the running service (SQLite only: these tests check commands, not the store)
database_url = live_jobs.database_url
stack = live_jobs.stack
cli_env = test_cli_remote.cli_env


def test_job_install_sends_batches_and_hooks(stack, cli_env, tmp_path) -> None:
    hooks = tmp_path / "hooks.json"
    hooks.write_text(json.dumps([{"name": "hello", "script": "echo hello from the hook", "when": "after_start"}]))
    base = ("job", "install", "--biz", "2", "--local", "--hooks-file", str(hooks))
    hosts = ["--host", "127.0.20.7", "--host", "127.0.20.8"]
    setup = str(stack.root / "host7" / "nodeops-agent")
    done = run(cli_env, *base, *hosts, "--setup-path", setup, "--batch-size", "1", "--max-fail-percentage", "0", "-f")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ended ✓ SUCCESS" in done.stdout
    job_id = done.stdout.split("job ", 1)[1].split()[0]
    shown = run(cli_env, "log", job_id, "host|instance|host|127.0.20.8-0-0")
    assert "执行脚本钩子: hello" in shown.stdout and "hello from the hook" in shown.stdout, shown.stdout

    done = run(cli_env, *base, *hosts, "--batch-size", "0")
    assert done.returncode == 1 and "3800001" in done.stderr and "batch_size" in done.stderr, done.stderr
    hooks.write_text("{}")
    done = run(cli_env, *base, *hosts)
    assert done.returncode == 2 and "--hooks-file" in done.stderr
    done = run(cli_env, "job", "operate", "RESTART_AGENT", "--host-id", "1", "--batch-interval", "9999")
    assert done.returncode == 1 and "batch_interval_s" in done.stderr, done.stderr
