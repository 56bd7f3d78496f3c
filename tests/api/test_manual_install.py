"""Manual installs over real HTTP: a shell runs the command get_job_commands gives, as a person would on the host."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from nodeops.agent import nodeops_agent
from nodeops.domain.plans import JobType
from nodeops.engine import packages
from nodeops.service.host_requests import parse_hosts
from nodeops.settings import Settings
from nodeops.store import packages as package_rows
from nodeops.store.models import Host, InstallToken, utcnow
from tests.support.factories import make_app, make_user
from tests.support.jobs import JobApi, stop_agents
from tests.support.network_api import add_host
from tests.support.services import TEST_SECRET_KEY, TEST_TIME_ZONE

MIXED = "不允许混合操作【手动安装】和【自动安装】的主机"
RACERS = 6
PROXY_IP = "127.0.22.1"  # the proxy of the cloud area; its relay listens there
AGENT_PROGRAM = Path(nodeops_agent.__file__)


@pytest.fixture
def settings(tmp_path, database_url, listen_socket) -> Settings:
    """A manual 安装 gives up after a few seconds here, and reads the store often."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=TEST_SECRET_KEY,  # type: ignore[arg-type]
        time_zone=TEST_TIME_ZONE,
        port=listen_socket.getsockname()[1],
        manual_install_timeout_s=20,
        manual_install_poll_s=0.2,
        proxy_relay_port=free_port(PROXY_IP),
    )


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def manual_host(root: Path, n: int, **extra: object) -> dict[str, object]:
    return {
        "bk_biz_id": 2,
        "bk_cloud_id": 0,
        "inner_ip": f"127.0.21.{n}",
        "os_type": "LINUX",
        "is_manual": True,
        "setup_path": str(root / f"manual{n}" / "nodeops-agent"),
        **extra,
    }


def commands(api: JobApi, job_id: int, **params: Any) -> dict[str, Any]:
    common = {"bk_app_code": api.app.code, "bk_app_secret": api.app.secret, "bk_username": api.username}
    answer: dict[str, Any] = api.client.get(f"/api/job/{job_id}/get_job_commands/", params={**common, **params}).json()
    return answer


def wait_command(api: JobApi, job_id: int, bk_host_id: int) -> str:
    deadline = time.monotonic() + 20
    while True:
        answer = commands(api, job_id, bk_host_id=bk_host_id)
        assert answer["result"], answer
        if "solutions" in answer["data"]:
            solution = answer["data"]["solutions"][0]
            assert solution["type"] == "shell" and solution["steps"][0]["type"] == "commands"
            content = solution["steps"][0]["contents"][0]
            assert content["name"] == "run_cmd"
            return str(content["text"])
        assert answer["data"] == {"status": "PENDING"}
        assert time.monotonic() < deadline, answer
        time.sleep(0.1)


def run(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60, check=False)


def install(api: JobApi, *hosts: dict[str, object]) -> tuple[int, list[int]]:
    data = api.ok("/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": list(hosts)})
    details = api.wait(data["job_id"], until=lambda d: bool(d["list"]))
    return data["job_id"], [row["bk_host_id"] for row in details["list"]]


def test_a_manual_host_is_installed_by_its_command_and_the_token_works_once(api, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    job_id, (host_id,) = install(api, manual_host(tmp_path, 1))
    command = wait_command(api, job_id, host_id)
    api.wait_step(job_id, host_id, "安装", "RUNNING")
    done = run(command)
    assert done.returncode == 0, done.stdout + done.stderr
    finished = api.wait(job_id)
    assert finished["status"] == "SUCCESS", finished
    steps = {step["step"]: step for step in api.log(job_id, host_id)}
    install_log = steps["安装"]["log"]
    assert "等待手动执行安装命令" in install_log
    assert "已解压 nodeops-agent 0.1.0" in install_log and "安装完成" in install_log
    assert steps["查询Agent状态"]["status"] == "SUCCESS"
    assert (tmp_path / "manual1" / "nodeops-agent" / "VERSION").read_text().strip() == "0.1.0"
    token = command.split('"token": "')[1].split('"')[0]
    assert all(token not in step["log"] for step in steps.values())

    again = run(command)
    assert again.returncode != 0
    assert "token 已使用" in again.stdout and "3800403" in again.stdout, again.stdout
    assert token not in caplog.text  # nor in the service's own log


def test_a_failing_command_fails_the_step_with_its_reason(api, tmp_path):
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the install path's parent should be")
    job_id, (host_id,) = install(api, manual_host(tmp_path, 2, setup_path=str(blocker / "nodeops-agent")))
    failed = run(wait_command(api, job_id, host_id))
    assert failed.returncode != 0
    finished = api.wait(job_id)
    assert finished["status"] == "FAILED"
    step = next(s for s in api.log(job_id, host_id) if s["step"] == "安装")
    assert step["status"] == "FAILED" and "手动安装失败: exit status" in step["log"], step["log"]


def test_nobody_running_the_command_times_out(api, tmp_path):
    """This module's settings give the step 20 s."""
    job_id, (host_id,) = install(api, manual_host(tmp_path, 3))
    finished = api.wait(job_id, timeout_s=60)
    step = next(s for s in api.log(job_id, host_id) if s["step"] == "安装")
    assert step["status"] == "FAILED" and "安装超时" in step["log"], step["log"]
    assert finished["status"] == "FAILED"


def test_an_expired_token_and_hostile_reports_are_refused(api, tmp_path, services):
    job_id, (host_id,) = install(api, manual_host(tmp_path, 4))
    command = wait_command(api, job_id, host_id)
    with services.db.session() as session:
        session.execute(update(InstallToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    expired = run(command)
    assert expired.returncode != 0 and "token 已过期" in expired.stdout, expired.stdout

    url = api.client.base_url
    for body in ({"token": "x" * 5000}, {"token": "令牌"}, [1, 2], {"token": None}, {"token": 7}, {}):
        answer = httpx.post(f"{url}/api/agent/install/script/", json=body).json()
        assert answer["result"] is False and answer["code"] in (3800403, 3800001), answer
    answer = httpx.post(
        f"{url}/api/agent/install/script/", content=b"\xff garbage", headers={"Content-Type": "application/json"}
    ).json()
    assert answer["result"] is False
    huge = {"token": "t", "lines": ["x" * 1000] * 2000}
    answer = httpx.post(f"{url}/api/agent/install/report/", json=huge).json()
    assert answer["result"] is False and answer["code"] in (3800413, 3800403, 3800001), answer
    answer = httpx.post(f"{url}/api/agent/install/report/", json={"token": "unknown", "lines": ["中文"]}).json()
    assert answer["code"] == 3800403 and "token 非法" in answer["message"], answer


def test_mixing_manual_and_automatic_hosts_answers_3801024(api, tmp_path):
    automatic = {**manual_host(tmp_path, 5), "is_manual": False, "account": "root", "password": "pw"}
    answer = api.error(
        "/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": [manual_host(tmp_path, 6), automatic]}, 3801024
    )
    assert MIXED in answer["message"]


def test_script_hooks_with_manual_hosts_are_refused_saying_why(api, tmp_path):
    hooks = [{"name": "before", "script": "true"}]
    body = {"job_type": "INSTALL_AGENT", "hosts": [manual_host(tmp_path, 8)], "script_hooks": hooks}
    answer = api.error("/api/job/install/", body, 3800001)
    assert answer["message"].startswith("script_hooks: a manual host's install runs no command over SSH"), answer


def test_get_job_commands_validates(api, tmp_path):
    job_id, (host_id,) = install(api, manual_host(tmp_path, 7))
    assert commands(api, job_id)["code"] == 3800001
    assert commands(api, job_id, bk_host_id="abc")["code"] == 3800001
    unknown = commands(api, job_id, bk_host_id=999999)
    assert unknown["code"] == 3801023 and "主机不存在" in unknown["message"]
    assert commands(api, 987654, bk_host_id=host_id)["code"] == 3801012
    outsider = commands(api.as_user("outsider"), job_id, bk_host_id=host_id)
    assert outsider["result"] is False and outsider["code"] == 9900403
    api.ok(f"/api/job/{job_id}/revoke/", {})


def test_a_celery_worker_runs_the_waiting_step_and_the_api_process_takes_the_reports(cluster, tmp_path):
    """The report reaches the API process; the worker process waiting in 安装 reads its end from the store."""
    cluster.start_api(NODEOPS_MANUAL_INSTALL_POLL_S="0.2")
    cluster.start_worker("w1", NODEOPS_MANUAL_INSTALL_POLL_S="0.2")
    api = cluster.api
    assert api is not None
    try:
        job_id, (host_id,) = install(api, manual_host(tmp_path, 8))
        command = wait_command(api, job_id, host_id)
        api.wait_step(job_id, host_id, "安装", "RUNNING")
        done = run(command)
        assert done.returncode == 0, done.stdout + done.stderr
        finished = api.wait(job_id, timeout_s=60)
        assert finished["status"] == "SUCCESS", (finished, cluster.log("w1"))
        install_log = next(s["log"] for s in api.log(job_id, host_id) if s["step"] == "安装")
        assert "等待手动执行安装命令" in install_log and "已解压 nodeops-agent" in install_log
    finally:
        stop_agents(tmp_path)


def test_a_host_in_a_cloud_area_installs_through_its_proxys_relay(api, tmp_path, services):
    area = api.ok("/api/cloud/", {"bk_cloud_name": "idc-manual"})["bk_cloud_id"]
    add_host(
        services, PROXY_IP, area=area, node_type="PROXY", agent_status="RUNNING", account="root", password_enc=b"x"
    )
    port = services.settings.proxy_relay_port
    relay_log = (tmp_path / "relay.log").open("w")
    relay = subprocess.Popen(
        [
            sys.executable,
            str(AGENT_PROGRAM),
            "relay",
            "--listen",
            f"{PROXY_IP}:{port}",
            "--upstream",
            str(api.client.base_url),
        ],
        stdout=subprocess.DEVNULL,
        stderr=relay_log,
    )
    try:
        job_id, (host_id,) = install(api, manual_host(tmp_path, 9, bk_cloud_id=area))
        command = wait_command(api, job_id, host_id)
        assert f"http://{PROXY_IP}:{port}/api/agent/install/script/" in command
        done = run(command)
        assert done.returncode == 0, done.stdout + done.stderr
        assert api.wait(job_id)["status"] == "SUCCESS"
        assert "已解压 nodeops-agent" in next(s["log"] for s in api.log(job_id, host_id) if s["step"] == "安装")
        with services.db.session() as session:
            assert session.get(Host, host_id).upstream_nodes == [PROXY_IP]
    finally:
        relay.kill()
        relay.wait(timeout=10)
        relay_log.close()


def test_reports_take_non_ascii_lines_and_are_refused_once_expired_or_ended(api, tmp_path, services):
    job_id, (host_id,) = install(api, manual_host(tmp_path, 10))
    command = wait_command(api, job_id, host_id)
    token = command.split('"token": "')[1].split('"')[0]
    url = f"{api.client.base_url}/api/agent/install"
    script = httpx.post(f"{url}/script/", json={"token": token})
    assert script.headers["content-type"].startswith("text/x-shellscript") and script.text.startswith("#!/bin/sh")
    report_token = script.text.split("NODEOPS_REPORT_TOKEN=")[1].split("\n")[0].strip("'")
    assert token not in script.text
    again = httpx.post(f"{url}/script/", json={"token": token}).json()
    assert again["code"] == 3800403 and "token 已使用" in again["message"]

    lines = ["中文输出 ✓ émoji 🚀", "with\x00nul", "x" * 20000, report_token]
    assert httpx.post(f"{url}/report/", json={"token": report_token, "lines": lines}).json()["result"]
    with services.db.session() as session:
        session.execute(update(InstallToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    expired = httpx.post(f"{url}/report/", json={"token": report_token, "lines": ["late"]}).json()
    assert expired["code"] == 3800403 and "token 已过期" in expired["message"]
    with services.db.session() as session:
        session.execute(update(InstallToken).values(expires_at=utcnow() + timedelta(seconds=60)))
    bad = httpx.post(f"{url}/report/", json={"token": report_token, "status": "MAYBE"}).json()
    assert bad["code"] == 3800001
    end = {"token": report_token, "lines": ["bye"], "status": "DONE", "exit_code": 0}
    assert httpx.post(f"{url}/report/", json=end).json()["result"]
    ended = httpx.post(f"{url}/report/", json={"token": report_token, "lines": ["after the end"]}).json()
    assert ended["code"] == 3800403 and "已结束" in ended["message"]

    api.wait_step(job_id, host_id, "安装", "SUCCESS")
    log = next(s["log"] for s in api.log(job_id, host_id) if s["step"] == "安装")
    assert "中文输出 ✓ émoji 🚀" in log and "withnul" in log and "(line cut)" in log
    assert report_token not in log and "after the end" not in log and "late" not in log
    api.ok(f"/api/job/{job_id}/revoke/", {})


def test_a_client_stalling_on_the_script_request_holds_nobody_else(api, tmp_path):
    job_id, (host_id,) = install(api, manual_host(tmp_path, 11))
    command = wait_command(api, job_id, host_id)
    port = int(str(api.client.base_url).rsplit(":", 1)[1].rstrip("/"))
    with socket.create_connection(("127.0.0.1", port)) as stalled:
        stalled.sendall(
            b"POST /api/agent/install/script/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"token": '
        )
        done = run(command)  # the host's own command still gets its script meanwhile
        assert done.returncode == 0, done.stdout + done.stderr
    assert api.wait(job_id)["status"] == "SUCCESS"


def test_two_hosts_racing_with_one_command_get_one_script(api, tmp_path):
    job_id, (host_id,) = install(api, manual_host(tmp_path, 12))
    command = wait_command(api, job_id, host_id)
    api.wait_step(job_id, host_id, "安装", "RUNNING")
    token = command.split('"token": "')[1].split('"')[0]
    url = f"{api.client.base_url}/api/agent/install/script/"
    start = threading.Barrier(RACERS)
    answers: list[httpx.Response] = []

    def fetch() -> None:
        start.wait()
        answers.append(httpx.post(url, json={"token": token}, timeout=30))

    threads = [threading.Thread(target=fetch) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    scripts = [a for a in answers if a.text.startswith("#!/bin/sh")]
    assert len(scripts) == 1
    refused = [a.json() for a in answers if a not in scripts]
    assert len(refused) == RACERS - 1 and {a["code"] for a in refused} == {3800403}
    bad = httpx.post(url.replace("script", "report"), json={"token": "t", "lines": [1, {"a": 2}]}).json()
    assert bad["code"] == 3800001 and "lines" in bad["message"]
    api.ok(f"/api/job/{job_id}/revoke/", {})


async def test_get_job_commands_is_pending_until_the_install_step_runs(services, live_server, tmp_path):
    """No engine runs here: the job's records stay PENDING, and so does the answer."""
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    with services.db.session() as session:
        package_rows.ensure_default_access_point(session, server_url=live_server.url)
    packages.register(services.db, services.settings.packages_dir)
    started = await services.jobs.install(
        job_type=JobType.INSTALL_AGENT,
        hosts=parse_hosts([manual_host(tmp_path, 13)]),
        created_by="admin",
        from_system="test",
    )
    common = {"bk_app_code": app.code, "bk_app_secret": app.secret, "bk_username": "admin"}
    async with httpx.AsyncClient(base_url=live_server.url) as client:
        answer = (
            await client.get(f"/api/job/{started.job_id}/get_job_commands/", params={**common, "bk_host_id": 1})
        ).json()
    assert answer["result"] and answer["data"] == {"status": "PENDING"}, answer
