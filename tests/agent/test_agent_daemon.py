"""The agent as a real daemon: start, status, restart, stop and upgrade, reporting to a real HTTP endpoint."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from datetime import datetime

import pytest

from .conftest import AGENT_PYTHON, BK_HOST_ID, HEARTBEAT_PATH, INSTANCE_ID, TOKEN, is_gone

BUNDLED = "0.1.0"
RECOVERED = re.compile(r"heartbeat accepted by \S+ after \d+ failures")


def wait_until(condition, *, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(0.05)


def test_start_sends_a_heartbeat_with_its_version_and_token_within_3_s(agent, heartbeat_server):
    started = agent("start")

    assert started.returncode == 0, started.stderr
    pid = agent.pid()
    assert started.stdout.strip() == f"started (pid {pid}, version {BUNDLED})"
    heartbeat = heartbeat_server.wait_for(lambda hb: hb["pid"] == pid, timeout_s=3)
    assert sorted(heartbeat) == sorted(
        ["_path", "_peer", "bk_host_id", "instance_id", "token", "version", "pid", "hostname", "sent_at"]
    )
    assert heartbeat["_path"] == HEARTBEAT_PATH
    assert heartbeat["bk_host_id"] == BK_HOST_ID
    assert heartbeat["instance_id"] == INSTANCE_ID
    assert heartbeat["token"] == TOKEN
    assert heartbeat["version"] == BUNDLED
    assert heartbeat["hostname"] == socket.gethostname()
    assert datetime.fromisoformat(heartbeat["sent_at"]).utcoffset() is not None


def test_heartbeats_keep_coming_every_interval(agent, heartbeat_server):
    assert agent("start").returncode == 0

    beats = heartbeat_server.wait_for_count(4, timeout_s=3)

    assert {hb["pid"] for hb in beats} == {agent.pid()}


def test_status_says_running_with_pid_and_version_or_stopped_with_exit_3(agent):
    before = agent("status")
    assert (before.returncode, before.stdout) == (3, "stopped\n")

    agent("start")
    running = agent("status")

    assert (running.returncode, running.stdout) == (0, f"running {agent.pid()} {BUNDLED}\n")


def test_second_start_is_a_no_op(agent, heartbeat_server):
    agent("start")
    pid = agent.pid()

    again = agent("start")

    assert again.returncode == 0
    assert again.stdout.strip() == f"already running (pid {pid})"
    assert agent.pid() == pid
    heartbeat_server.wait_for_count(3, timeout_s=3)
    assert {hb["pid"] for hb in heartbeat_server.heartbeats} == {pid}


def test_restart_gives_a_new_pid_that_heartbeats_again(agent, heartbeat_server):
    agent("start")
    old_pid = agent.pid()
    heartbeat_server.wait_for(lambda hb: hb["pid"] == old_pid)

    restarted = agent("restart")

    assert restarted.returncode == 0, restarted.stderr
    new_pid = agent.pid()
    assert new_pid != old_pid
    assert is_gone(old_pid)
    heartbeat_server.wait_for(lambda hb: hb["pid"] == new_pid, timeout_s=3)
    assert agent("status").stdout == f"running {new_pid} {BUNDLED}\n"


def test_stop_ends_the_process_promptly_and_removes_its_pid_file(agent, heartbeat_server):
    agent("start")
    pid = agent.pid()
    heartbeat_server.wait_for(lambda hb: hb["pid"] == pid)

    began = time.monotonic()
    stopped = agent("stop")

    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"stopped (pid {pid})"  # SIGTERM sufficed: no SIGKILL
    assert time.monotonic() - began < 3
    assert is_gone(pid)
    assert not (agent.home / "agent.pid").exists()
    status = agent("status")
    assert (status.returncode, status.stdout) == (3, "stopped\n")
    assert f"stopped on signal {int(signal.SIGTERM)}" in agent.log_text()


def test_stop_when_not_running_says_so_and_succeeds(agent):
    stopped = agent("stop")

    assert (stopped.returncode, stopped.stdout) == (0, "not running\n")


@pytest.mark.parametrize("mode", ["http_403", "result_false"])
def test_rejected_heartbeats_are_retried_and_never_stop_the_agent(agent, heartbeat_server, mode):
    heartbeat_server.mode = mode
    agent("start")
    pid = agent.pid()

    heartbeat_server.wait_for_count(3, timeout_s=3)  # none delivered yet: tries every 0.2 s interval

    assert agent("status").stdout == f"running {pid} {BUNDLED}\n"
    wait_until(lambda: "heartbeat failed (2 in a row): rejected" in agent.log_text())
    if mode == "http_403":
        assert "rejected with HTTP 403" in agent.log_text()
    heartbeat_server.mode = "ok"
    wait_until(lambda: RECOVERED.search(agent.log_text()) is not None, timeout_s=5)


def test_an_unreachable_service_is_retried_and_never_stops_the_agent(agent):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    agent.configure(server_url=f"http://127.0.0.1:{port}")
    agent("start")

    wait_until(lambda: "heartbeat failed (2 in a row): cannot reach" in agent.log_text())

    assert agent("status").returncode == 0


def test_the_token_never_appears_in_the_log_or_the_output(agent, heartbeat_server):
    heartbeat_server.mode = "http_403"  # whose answer quotes the token back
    outputs = [agent("start")]
    heartbeat_server.wait_for_count(2, timeout_s=3)
    heartbeat_server.mode = "ok"
    wait_until(lambda: RECOVERED.search(agent.log_text()) is not None, timeout_s=5)
    outputs += [agent("status"), agent("restart"), agent("stop")]

    log = agent.log_text()
    assert "bad token ***" in log
    assert TOKEN not in log
    for output in outputs:
        assert TOKEN not in output.stdout + output.stderr


def test_upgrade_in_place_heartbeats_with_the_new_version(agent, heartbeat_server):
    agent("start")
    heartbeat_server.wait_for(lambda hb: hb["version"] == BUNDLED)

    assert agent("stop").returncode == 0
    agent.install("0.2.0")
    assert agent("start").returncode == 0

    heartbeat_server.wait_for(lambda hb: hb["version"] == "0.2.0" and hb["pid"] == agent.pid(), timeout_s=3)
    assert agent("status").stdout == f"running {agent.pid()} 0.2.0\n"
    assert agent("version").stdout == "0.2.0\n"


def test_a_pid_file_no_agent_holds_does_not_count_as_running(agent, heartbeat_server):
    (agent.home / "agent.pid").write_text(f"{os.getpid()}\n")  # alive, but not an agent: pid reuse after a crash

    status = agent("status")
    assert (status.returncode, status.stdout) == (3, "stopped\n")
    started = agent("start")

    assert started.returncode == 0, started.stderr
    assert agent.pid() != os.getpid()
    heartbeat_server.wait_for(lambda hb: hb["pid"] == agent.pid())


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"token": ""}, "token must be a non-empty string"),
        ({"server_url": "ftp://example.com"}, "server_url must be an http:// or https:// URL"),
        ({"interval_s": 0}, "interval_s must be a number of seconds"),
    ],
)
def test_start_with_a_bad_config_fails_clearly_and_starts_nothing(agent, config, named):
    agent.configure(**config)

    started = agent("start")

    assert started.returncode == 1
    assert named in started.stderr
    assert TOKEN not in started.stderr
    assert agent("status").returncode == 3


def test_start_without_a_config_names_the_missing_file(agent):
    (agent.home / "agent.json").unlink()

    started = agent("start")

    assert started.returncode == 1
    assert "agent.json" in started.stderr
    assert not (agent.home / "agent.pid").exists()


def test_run_stays_in_the_foreground_and_exits_0_on_sigterm(agent, heartbeat_server):
    process = subprocess.Popen(
        [AGENT_PYTHON, str(agent.script), "run", "--home", str(agent.home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        heartbeat_server.wait_for(lambda hb: hb["pid"] == process.pid, timeout_s=3)
        assert agent("status").stdout == f"running {process.pid} {BUNDLED}\n"

        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0
    assert "first heartbeat accepted" in stderr  # run echoes its log to stderr
    assert not (agent.home / "agent.pid").exists()


def test_start_that_cannot_write_its_log_fails_at_once(agent):
    (agent.home / "agent.log").mkdir()  # unwritable even for root

    began = time.monotonic()
    started = agent("start")

    assert started.returncode == 1
    assert "cannot write" in started.stderr and "agent.log" in started.stderr
    assert time.monotonic() - began < 2  # not the 5 s wait for a daemon that never came up
    assert agent("status").returncode == 3


@pytest.mark.parametrize("removed", ["home", "pid_file"])
def test_an_agent_whose_files_were_removed_exits(agent, heartbeat_server, removed):
    agent("start")
    pid = agent.pid()
    heartbeat_server.wait_for(lambda hb: hb["pid"] == pid)

    if removed == "home":
        shutil.rmtree(agent.home)  # uninstalled without `stop`
    else:
        (agent.home / "agent.pid").unlink()

    wait_until(lambda: is_gone(pid), timeout_s=3)


def test_heartbeats_reuse_one_connection_while_the_service_keeps_it(agent, heartbeat_server):
    heartbeat_server.connections = "keep"
    agent("start")

    beats = heartbeat_server.wait_for_count(4, timeout_s=5)

    assert len({beat["_peer"] for beat in beats[:4]}) == 1, [beat["_peer"] for beat in beats]
    assert "heartbeat failed" not in agent.log_text()


def test_a_connection_the_service_closed_between_heartbeats_is_replaced_without_a_failure(agent, heartbeat_server):
    heartbeat_server.connections = "drop"
    agent("start")

    beats = heartbeat_server.wait_for_count(4, timeout_s=5)

    assert len({beat["_peer"] for beat in beats[:4]}) == 4  # a new connection each time, as the service wanted
    assert "heartbeat failed" not in agent.log_text()
