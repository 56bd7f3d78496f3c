"""SIGKILL the service in the middle of a job on several hosts, restart it, and check crash safety: no instance
is left RUNNING, each interrupted one is FAILED with a line saying why, and no log line written before the
kill is lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

HOSTS = 3
START_TIMEOUT_S = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _nodeops() -> str:
    return str(Path(sys.executable).with_name("nodeops"))


class Service:
    """``nodeops serve`` as a subprocess on its own data dir (SQLite)."""

    def __init__(self, tmp_path: Path, public_url: str) -> None:
        self.port = _free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("NODEOPS_")},
            "NODEOPS_DATA_DIR": str(tmp_path / "data"),
            "NODEOPS_PORT": str(self.port),
            # agents report where no heartbeat is taken: 查询Agent状态 keeps waiting, so the kill lands mid-step
            "NODEOPS_PUBLIC_URL": public_url,
        }
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp_path = tmp_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: object = None

    def cli(self, *args: str) -> str:
        done = subprocess.run([_nodeops(), *args], env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self) -> None:
        self._close_log()
        log = (self.tmp_path / "serve.log").open("ab")
        self._log = log
        self.process = subprocess.Popen([_nodeops(), "serve"], env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        pytest.fail("nodeops serve did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None


@pytest.fixture
def service(tmp_path, silent_ap_url):
    made = Service(tmp_path, silent_ap_url)
    made.cli("db", "upgrade")
    yield made
    made.stop()
    for home in tmp_path.glob("host*/agent"):
        if (home / "nodeops_agent.py").exists():
            subprocess.run(
                [sys.executable, str(home / "nodeops_agent.py"), "stop", "--home", str(home)],
                capture_output=True,
                timeout=30,
                check=False,
            )


def test_a_killed_service_leaves_no_instance_running_and_loses_no_written_line(service, tmp_path):
    secret = service.cli("app", "add", "crash-test", "--allow-username").strip().splitlines()[-1]
    service.cli("user", "add", "admin", "--superuser")
    auth = {"bk_app_code": "crash-test", "bk_app_secret": secret, "bk_username": "admin"}
    service.start()
    hosts = [
        {
            "bk_biz_id": 2,
            "inner_ip": f"127.0.30.{n}",
            "transport": "local",
            "setup_path": str(tmp_path / f"host{n}/agent"),
        }
        for n in range(1, HOSTS + 1)
    ]
    answer = httpx.post(
        f"{service.url}/api/c/compapi/v2/nodeman/api/job/install/",
        json={**auth, "job_type": "INSTALL_AGENT", "hosts": hosts},
        timeout=30,
    ).json()
    assert answer["result"], answer
    job_id = answer["data"]["job_id"]

    def logs() -> dict[str, list[dict[str, object]]]:
        found = {}
        for n in range(1, HOSTS + 1):
            body = httpx.get(
                f"{service.url}/api/job/{job_id}/log/",
                params={**auth, "instance_id": f"host|instance|host|127.0.30.{n}-0-0"},
                timeout=10,
            ).json()
            assert body["result"], body
            found[f"127.0.30.{n}"] = body["data"]
        return found

    deadline = time.monotonic() + 60
    while True:  # until every host waits in 查询Agent状态 with its first lines written
        before = logs()
        if all(steps[5]["status"] == "RUNNING" and "等待心跳" in steps[5]["log"] for steps in before.values()):
            break
        assert time.monotonic() < deadline, before
        time.sleep(0.2)

    service.kill()
    service.start()

    after = logs()
    for ip, steps in after.items():
        statuses = [s["status"] for s in steps]
        assert "RUNNING" not in statuses, (ip, statuses)
        assert statuses[:5] == ["SUCCESS"] * 5 and statuses[5] == "FAILED" and statuses[6] == "PENDING", (ip, statuses)
        for old, new in zip(before[ip], steps, strict=True):
            assert str(new["log"]).startswith(str(old["log"])), (ip, old["step"])  # nothing written was lost
        assert "服务进程在执行中退出" in str(steps[5]["log"])
    details = httpx.post(f"{service.url}/api/job/{job_id}/details/", json={**auth}, timeout=10).json()
    assert details["result"], details
    assert details["data"]["status"] == "FAILED"
