"""``nodeops serve`` with ``NODEOPS_LOG_FORMAT=json``, as a real process on 127.0.0.1: its stderr is JSON lines
only (uvicorn's own included), and the ``request_id`` of an answer, a failing call's and a succeeding one's, finds
the lines logged while serving it; the app's secret and the user's bk_token never show in the log."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.support.served import wait_until_serving

START_TIMEOUT_S = 30
ESB_PATH = "/api/c/compapi/v2/nodeman/api/job/log/"


def nodeops_command() -> str:
    found = shutil.which("nodeops") or str(Path(sys.executable).parent / "nodeops")
    assert Path(found).exists(), "the nodeops console script is not installed: pip install -e .[dev]"
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``nodeops serve`` on its own data dir, with JSON logs; ``stop()`` returns its stderr."""

    def __init__(self, tmp_path: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NODEOPS_")}
        self.env |= {"NODEOPS_DATA_DIR": str(tmp_path / "data"), "NODEOPS_LOG_FORMAT": "json"}
        self.err_path = tmp_path / "serve.err"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [nodeops_command(), *args], env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"nodeops {' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [nodeops_command(), "serve", "--port", str(port)],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        wait_until_serving(self.process, self.url, self.err_path, START_TIMEOUT_S)

    def stop(self) -> str:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        return self.err_path.read_text(encoding="utf-8")


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    served = Server(tmp_path)
    try:
        yield served
    finally:
        served.stop()


def lines_of(stderr: str) -> list[dict[str, Any]]:
    """Every line of the log, each of which must be one JSON object with the four fields every line has."""
    lines = []
    for text in stderr.splitlines():
        line = json.loads(text)
        assert isinstance(line, dict) and {"ts", "level", "logger", "message"} <= set(line), text
        lines.append(line)
    return lines


def test_json_log_lines_are_found_by_the_request_id_of_a_failing_and_a_succeeding_answer(server):
    server.run("db", "upgrade")
    secret = server.run("app", "add", "esb_test", "--allow-username").split()[-1]
    server.run("user", "add", "admin", "--superuser")
    bk_token = server.run("token", "issue", "admin").strip()
    server.start()
    wrong_secret = "not-the-secret-but-logged-nowhere-either"

    with httpx.Client(base_url=server.url, timeout=10) as http:
        # a failing call through the log lane: refused, and its audit line written while serving it
        query = urlencode({"bk_app_code": "esb_test", "bk_app_secret": wrong_secret, "job_id": 1, "instance_id": 1})
        failing = http.get(f"{ESB_PATH}?{query}").json()
        # the same through the ASGI path, under the caller's own id
        posted = http.post(
            ESB_PATH,
            json={"bk_app_code": "esb_test", "bk_app_secret": wrong_secret, "job_id": 1, "instance_id": 1},
            headers={"X-Request-Id": "caller-chosen.id-1"},
        ).json()
        # a succeeding call that logs: the viewer's sign-in writes a session_opened audit line
        signed_in = http.post("/web/session/", json={"bk_token": bk_token})
        succeeding = signed_in.json()
        # a succeeding call of the log API itself (it logs nothing: found in the answer only)
        query = urlencode({"bk_app_code": "esb_test", "bk_app_secret": secret, "bk_username": "admin"})
        missing_job = http.get(f"{ESB_PATH}?{query}&job_id=5&instance_id=1").json()
    stderr = server.stop()

    assert (failing["code"], posted["code"], succeeding["code"], missing_job["code"]) == (1306403, 1306403, 0, 3801012)
    assert posted["request_id"] == "caller-chosen.id-1"
    assert signed_in.headers["x-request-id"] == succeeding["request_id"]
    lines = lines_of(stderr)
    by_request: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if "request_id" in line:
            by_request.setdefault(line["request_id"], []).append(line)

    [refused] = by_request[failing["request_id"]]
    assert (refused["logger"], refused["action"], refused["event"]) == ("nodeops.audit", "audit", "auth_failed")
    assert json.loads(refused["message"])["code"] == 1306403
    [refused_post] = by_request["caller-chosen.id-1"]
    assert refused_post["event"] == "auth_failed"
    [opened] = by_request[succeeding["request_id"]]
    assert (opened["logger"], opened["event"], opened["level"]) == ("nodeops.audit", "session_opened", "INFO")
    assert json.loads(opened["message"])["user"] == "admin"

    # the process's other lines are JSON too, uvicorn's among them, and name no request
    started = [line for line in lines if line["message"].startswith("Started server process")]
    assert started and started[0]["logger"] == "uvicorn.error" and "request_id" not in started[0]
    assert all(line["ts"].endswith("+00:00") for line in lines)
    for leaked in (secret, wrong_secret, bk_token):
        assert leaked not in stderr
