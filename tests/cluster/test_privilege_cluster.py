"""Installs without root and the access point check in celery mode (real ``nodeops serve`` and ``nodeops worker``
processes): a NOPASSWD sudo account installs into a root-owned path through ``sudo -n``; a host whose access point
refuses connections fails 安装 in seconds naming the URL; no password reaches a step's log, a table or the
processes' own logs."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import Cluster
from tests.support.sshd import SUDO_USER

INSTALL = "/api/c/compapi/v2/nodeman/api/job/install/"
REFUSING_AP = 3
BOUND_S = 60.0  # the whole job, far below a heartbeat timeout per host on top of the install


@pytest.fixture
def root_owned() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="nodeops-cluster-sudo-", dir="/tmp"))
    yield path
    for script in path.glob("**/nodeops_agent.py"):
        subprocess.run([sys.executable, str(script), "stop", "--home", str(script.parent)], check=False, timeout=20)
    shutil.rmtree(path, ignore_errors=True)


def test_a_sudo_install_succeeds_and_an_unreachable_access_point_fails_at_once_on_a_worker(
    cluster: Cluster, ssh_hosts, root_owned: Path
) -> None:
    cluster.start_worker("w1")
    sudo_host, other = ssh_hosts(2)
    closed = socket.socket()
    closed.bind(("127.0.10.251", 0))
    refused_url = f"http://127.0.10.251:{closed.getsockname()[1]}"
    closed.close()
    assert cluster.db is not None
    with cluster.db.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO access_points (id, name, server_url, linux_setup_path, created_at) "
            "VALUES (%(id)s, 'refusing', %(url)s, '/usr/local/nodeops-agent', now())",
            {"id": REFUSING_AP, "url": refused_url},
        )
    run = uuid.uuid4().hex[:8]
    sudo_password = sudo_host.login(SUDO_USER).password
    hosts = [
        {
            "bk_biz_id": 2,
            "inner_ip": sudo_host.ip,
            "port": sudo_host.port,
            "account": SUDO_USER,
            "password": sudo_password,
            "setup_path": str(root_owned / "agent"),
        },
        {
            "bk_biz_id": 2,
            "inner_ip": other.ip,
            "port": other.port,
            "account": other.username,
            "owned_path": True,
            "password": other.password,
            "setup_path": f"{other.setup_path}/ap-{run}",
            "ap_id": REFUSING_AP,
        },
    ]
    api = cluster.api
    assert api is not None
    began = time.monotonic()
    job_id = int(api.ok(INSTALL, {"job_type": "INSTALL_AGENT", "hosts": hosts})["job_id"])
    done = api.wait(job_id, timeout_s=BOUND_S)
    assert time.monotonic() - began < BOUND_S
    assert [row["status"] for row in done["list"]] == ["SUCCESS", "FAILED"], done

    logs = {ip: api.log(job_id, f"host|instance|host|{ip}-0-0") for ip in (sudo_host.ip, other.ip)}
    sudo_install = next(s for s in logs[sudo_host.ip] if s["step"] == "安装")
    assert "以 sudo -n 执行命令" in sudo_install["log"], sudo_install
    assert (root_owned / "agent" / "agent.json").stat().st_uid == 0
    failed = next(s for s in logs[other.ip] if s["step"] == "安装")
    assert failed["status"] == "FAILED", logs[other.ip]
    assert f"POST {refused_url}/api/agent/ping/: connection refused" in failed["log"], failed["log"]

    everything = repr(logs) + cluster.log("api", 0) + cluster.log("w1", 0)
    for table in ("step_logs", "record_answers", "hosts", "jobs", "subscription_steps"):
        everything += repr(cluster.sql(f"SELECT * FROM {table}"))
    assert sudo_password and sudo_password not in everything
    assert other.password not in everything
