"""``nodeops serve --workers N``: N API processes on one port in celery mode, each answering the log API (through
the lane, on PostgreSQL); one killed is started again and the others answer meanwhile; SIGTERM stops them all;
the embedded mode refuses it. Real processes, a real PostgreSQL and Redis, loopback only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from nodeops.settings import Settings
from tests.support.cluster import NODEOPS
from tests.support.factories import make_app, make_seed_job, make_user
from tests.support.services import TEST_SECRET_KEY, TEST_TIME_ZONE


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def _env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NODEOPS_")} | extra


def test_the_embedded_mode_refuses_several_api_processes(tmp_path):
    done = subprocess.run(
        [NODEOPS, "serve", "--workers", "2"],
        env=_env(NODEOPS_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--workers needs NODEOPS_EXECUTOR=celery" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("fd", ["0", "-1", "999"])
def test_an_inherited_descriptor_that_is_no_listening_socket_is_refused(tmp_path, fd):
    done = subprocess.run(
        [NODEOPS, "serve", "--fd", fd],
        env=_env(NODEOPS_DATA_DIR=str(tmp_path)),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and f"--fd {fd}" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture
def seeded_url(pg_database_url, tmp_path) -> tuple[str, dict[str, str]]:
    """A migrated PostgreSQL database with the seed's job 1, and the common args of a superuser's call."""
    from nodeops.service.container import Services

    settings = Settings(
        data_dir=tmp_path / "seed",
        database_url=pg_database_url,
        secret_key=TEST_SECRET_KEY,  # type: ignore[arg-type]
        time_zone=TEST_TIME_ZONE,
    )
    services = Services.build(settings)
    try:
        app = make_app(services)
        make_user(services, "admin", superuser=True)
        make_seed_job(services)
    finally:
        services.close()
    return pg_database_url, {"bk_app_code": app.code, "bk_app_secret": app.secret, "bk_username": "admin"}


def test_two_api_processes_answer_on_one_port_survive_a_kill_and_stop_on_sigterm(tmp_path, seeded_url, broker_url):
    database_url, common = seeded_url
    port = _free_port()
    env = _env(
        NODEOPS_EXECUTOR="celery",
        NODEOPS_DATABASE_URL=database_url,
        NODEOPS_BROKER_URL=broker_url,
        NODEOPS_SECRET_KEY=TEST_SECRET_KEY,
        NODEOPS_PUBLIC_URL=f"http://127.0.0.1:{port}",
        NODEOPS_DATA_DIR=str(tmp_path / "data"),
        NODEOPS_TIME_ZONE=TEST_TIME_ZONE,
        NODEOPS_PORT=str(port),
    )
    log = (tmp_path / "serve.log").open("wb")
    parent = subprocess.Popen([NODEOPS, "serve", "--workers", "2"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api/c/compapi/v2/nodeman/api/job/log/"
    params = {**common, "job_id": 1, "instance_id": 1}
    try:
        deadline = time.monotonic() + 60
        while True:
            assert parent.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(url, params=params, timeout=5).json()["result"]:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        first = _children(parent.pid)
        assert len(first) == 2

        answers = set()
        for _ in range(40):  # new connections: the kernel hands them to either process
            with httpx.Client(timeout=5, headers={"X-Request-Id": "same"}) as client:  # else each answer's own
                answers.add(client.get(url, params=params).content)
        assert len(answers) == 1 and b'"result":true' in next(iter(answers))

        victim = sorted(first)[0]
        os.kill(victim, signal.SIGKILL)
        for _ in range(10):  # the other process answers meanwhile
            assert httpx.get(url, params=params, timeout=5).json()["result"] is True
        deadline = time.monotonic() + 30
        while len(_children(parent.pid) - {victim}) < 2:
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        assert httpx.get(url, params=params, timeout=5).json()["result"] is True
    finally:
        parent.send_signal(signal.SIGTERM)
        code = parent.wait(timeout=60)
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert code == 0, text
    assert f"API process {victim} exited (killed by SIGKILL)" in text
    assert "Traceback" not in text
    with pytest.raises(httpx.ConnectError):  # nothing listens any more
        httpx.get(url, params=params, timeout=2)
