"""Helpers of the job API tests: a server running the engine in its own event loop, an API client (fixture ``api``,
imported by tests/conftest.py), agents, and an access point that answers the 安装 step's reachability check but
takes no heartbeat (fixture ``silent_ap_url``): its hosts wait in 查询Agent状态."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from nodeops.service.container import Services
from nodeops.settings import PING_PATH
from tests.support.factories import AppCredentials, make_app, make_user
from tests.support.live_server import LiveServer

ESB_JOB = "/api/c/compapi/v2/nodeman/api/job"
AGENT = "nodeops_agent.py"
ACTIVE = ("PENDING", "RUNNING")


class _PingOnly(http.server.BaseHTTPRequestHandler):
    """Answers POST .../api/agent/ping/ as the service does, everything else 503 (an agent keeps retrying)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ok = self.path.endswith(PING_PATH)
        body = b'{"result": true, "code": 0, "message": "", "data": {"pong": true}}' if ok else b"{}"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def silent_ap_url() -> Iterator[str]:
    """The URL of an access point that answers the reachability check and never takes a heartbeat."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PingOnly)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def dead_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_agents(root: Path) -> None:
    """Stop every agent installed under ``root`` (``host*/…/nodeops_agent.py``)."""
    for script in root.glob("host*/**/" + AGENT):
        subprocess.run(
            [sys.executable, str(script), "stop", "--home", str(script.parent)],
            check=False,
            capture_output=True,
            timeout=20,
        )


def local_host(root: Path, n: int, **extra: object) -> dict[str, object]:
    """A host reached with the local transport (a stand-in for 127.0.20.n) with its own install path."""
    return {
        "bk_biz_id": 2,
        "bk_cloud_id": 0,
        "inner_ip": f"127.0.20.{n}",
        "os_type": "LINUX",
        "transport": "local",
        "setup_path": str(root / f"host{n}" / "nodeops-agent"),
        **extra,
    }


@contextmanager
def serving(services: Services, sock: socket.socket, root: Path) -> Iterator[JobApi]:
    """A JobApi of the superuser ``admin`` on a server running the engine; users ``viewer`` (business 2) and
    ``outsider`` (business 3) exist too. Agents installed under ``root`` are stopped at the end."""
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    make_user(services, "viewer", biz=[2])
    make_user(services, "outsider", biz=[3])
    server = LiveServer(services, sock, lifespan=True)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield JobApi(client, app)
    finally:
        stop_agents(root)
        server.stop()


@pytest.fixture
def api(services, listen_socket, tmp_path):
    """A JobApi of ``admin`` on a running server (see ``serving``)."""
    with serving(services, listen_socket, tmp_path) as api:
        yield api


class JobApi:
    """The job APIs over HTTP as one user of one app (common args in the JSON body)."""

    def __init__(self, client: httpx.Client, app: AppCredentials, username: str = "admin") -> None:
        self.client = client
        self.app = app
        self.username = username

    def as_user(self, username: str) -> JobApi:
        return JobApi(self.client, self.app, username)

    def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        common = {"bk_app_code": self.app.code, "bk_app_secret": self.app.secret, "bk_username": self.username}
        response = self.client.post(path, json={**common, **(body or {})})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def ok(self, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = self.call(path, body)
        assert answer["result"] is True and answer["code"] == 0, answer
        return answer["data"]

    def error(self, path: str, body: dict[str, Any] | None, code: int) -> dict[str, Any]:
        answer = self.call(path, body)
        assert answer["result"] is False and answer["code"] == code, answer
        assert answer["message"].endswith(f"（{code}）"), answer
        return answer

    def details(self, job_id: int, **body: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.ok(f"/api/job/{job_id}/details/", body)
        return data

    def wait(
        self, job_id: int, until: Callable[[dict[str, Any]], bool] | None = None, timeout_s: float = 40
    ) -> dict[str, Any]:
        """Poll details (all instances) until ``until`` holds, by default until the job has finished."""
        until = until or (lambda data: data["status"] not in ACTIVE)
        deadline = time.monotonic() + timeout_s
        while True:
            data = self.details(job_id, pagesize=-1)
            if until(data):
                return data
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {data['status']} after {timeout_s} s: {data}")
            time.sleep(0.1)

    def log(self, job_id: int, instance_id: object, attempt: int | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "instance_id": instance_id,
            "bk_app_code": self.app.code,
            "bk_app_secret": self.app.secret,
            "bk_username": self.username,
        }
        if attempt is not None:
            params["attempt"] = attempt
        answer = self.client.get(f"/api/job/{job_id}/log/", params=params).json()
        assert answer["result"], answer
        steps: list[dict[str, Any]] = answer["data"]
        return steps

    def wait_step(self, job_id: int, instance_id: object, step: str, status: str, timeout_s: float = 30) -> None:
        """Poll the log API until the instance's step ``step`` has ``status``."""
        deadline = time.monotonic() + timeout_s
        while True:
            steps = self.log(job_id, instance_id)
            if any(s["step"] == step and s["status"] == status for s in steps):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{step} never {status}: {steps}")
            time.sleep(0.1)
