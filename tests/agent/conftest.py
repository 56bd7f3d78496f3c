"""Fixtures of the agent's daemon tests: a real heartbeat endpoint on 127.0.0.1 and an agent unpacked from its package.

The agent runs as the host would run it: unpacked with ``tar --strip-components=1`` (as the install step does), on
the system ``/usr/bin/python3`` when there is one, as separate processes. Every daemon a test starts is killed in
the fixture's finalizer, found through its pid file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from nodeops.agent.package import BUNDLED_VERSION, build_package

AGENT_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
TOKEN = "tok-3f9a1c7e-NEVER-IN-LOGS-b52d"
BK_HOST_ID = 42
INSTANCE_ID = "host|instance|host|42"
HEARTBEAT_PATH = "/api/agent/heartbeat/"
COMMAND_TIMEOUT_S = 20


class HeartbeatServer:
    """Records every heartbeat POSTed to it and answers as ``mode`` says: ``ok``, ``http_403`` or ``result_false``."""

    def __init__(self, address: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.mode = "ok"
        # "close": HTTP/1.0, one request per connection; "keep": HTTP/1.1 keep-alive; "drop": HTTP/1.1 that closes
        # each connection once it has answered, without saying so (as a server whose keep-alive ran out between two
        # heartbeats)
        self.connections = "close"
        self._heartbeats: list[dict[str, Any]] = []
        self._headers: list[dict[str, str]] = []  # of each heartbeat, in the same order
        self._changed = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length))
                payload["_path"] = self.path
                payload["_peer"] = self.client_address[1]
                with recorder._changed:
                    recorder._heartbeats.append(payload)
                    recorder._headers.append(dict(self.headers.items()))
                    recorder._changed.notify_all()
                status, body = recorder._answer(payload)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if recorder.connections == "drop":
                    self.close_connection = True

            @property
            def protocol_version(self) -> str:  # type: ignore[override]
                return "HTTP/1.0" if recorder.connections == "close" else "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(address, Handler)
        self._server.daemon_threads = True
        self.url = f"http://{address[0]}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="heartbeat-server", daemon=True)
        self._thread.start()

    def _answer(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        # the rejections echo the token they got, so the tests see the agent keep it out of its log even then
        if self.mode == "http_403":
            return 403, {"result": False, "code": 3801403, "message": f"bad token {payload.get('token')}"}
        if self.mode == "result_false":
            return 200, {"result": False, "code": 3801403, "message": f"token {payload.get('token')} is wrong"}
        return 200, {"result": True, "code": 0, "message": "success", "data": None}

    @property
    def heartbeats(self) -> list[dict[str, Any]]:
        with self._changed:
            return list(self._heartbeats)

    @property
    def headers(self) -> list[dict[str, str]]:
        with self._changed:
            return list(self._headers)

    def wait_for(self, match: Callable[[dict[str, Any]], bool], *, timeout_s: float = 3.0) -> dict[str, Any]:
        """The first heartbeat that ``match``es, waiting up to ``timeout_s``; fails the test otherwise."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for heartbeat in self._heartbeats:
                    if match(heartbeat):
                        return heartbeat
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no matching heartbeat within {timeout_s} s; got {len(self._heartbeats)}")
                self._changed.wait(left)

    def wait_for_count(self, count: int, *, timeout_s: float) -> list[dict[str, Any]]:
        self.wait_for(lambda _: len(self._heartbeats) >= count, timeout_s=timeout_s)
        return self.heartbeats

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def heartbeat_server() -> Iterator[HeartbeatServer]:
    server = HeartbeatServer()
    try:
        yield server
    finally:
        server.close()


def unpack(package: Path, home: Path) -> None:
    """Unpack as the install step does (``tar -xzf ... --strip-components=1 -C home``)."""
    home.mkdir(parents=True, exist_ok=True)
    if shutil.which("tar"):
        subprocess.run(["tar", "-xzf", str(package), "--strip-components=1", "-C", str(home)], check=True)
        return
    with tarfile.open(package) as tar:
        for member in tar.getmembers():
            member.name = member.name.partition("/")[2]
            if member.name:
                tar.extract(member, home, filter="data")


def is_gone(pid: int) -> bool:
    """True once ``pid`` has exited; a zombie counts as gone (our container's init may never reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


class Agent:
    """An agent unpacked into ``home``, driven through its command line as the service drives it over SSH."""

    def __init__(self, home: Path, packages: Path, server_url: str) -> None:
        self.home = home
        self.packages = packages
        self.server_url = server_url
        self.script = home / "nodeops_agent.py"

    def install(self, version: str = BUNDLED_VERSION) -> None:
        unpack(build_package(version, self.packages).path, self.home)

    def configure(self, **overrides: Any) -> None:
        config = {
            "server_url": self.server_url,
            "bk_host_id": BK_HOST_ID,
            "instance_id": INSTANCE_ID,
            "token": TOKEN,
            "interval_s": 0.2,
            **overrides,
        }
        path = self.home / "agent.json"
        path.write_text(json.dumps(config))
        path.chmod(0o600)

    def __call__(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AGENT_PYTHON, str(self.script), command, "--home", str(self.home)],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )

    def pid(self) -> int:
        return int((self.home / "agent.pid").read_text())

    def log_text(self) -> str:
        return "".join(p.read_text() for p in sorted(self.home.glob("agent.log*")))

    def kill(self) -> None:
        """Kill whatever agent the pid file names (finalizer): only if it is one of ours, never pytest."""
        try:
            pid = self.pid()
        except (FileNotFoundError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if pid != os.getpid() and b"nodeops_agent.py" in cmdline and str(self.home).encode() in cmdline:
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def agent(tmp_path: Path, heartbeat_server: HeartbeatServer) -> Iterator[Agent]:
    """The bundled agent unpacked and configured (interval 0.2 s) to report to ``heartbeat_server``."""
    installed = Agent(tmp_path / "home", tmp_path / "packages", heartbeat_server.url)
    installed.install()
    installed.configure()
    try:
        yield installed
    finally:
        installed.kill()
