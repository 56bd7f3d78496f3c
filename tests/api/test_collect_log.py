"""collect_log (spec §8): the agent's own log of a finished instance fetched from its host (here through NOPASSWD
sudo, the log being root's) into an attachment the log API's download serves, masked as job logs are and capped;
the hostile cases answer their codes: unknown job or instance, an instance still running, a host that cannot be
reached, a user without rights, a malformed instance_id, an unknown attachment."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from nodeops.engine.agent_log import AGENT_LOG_MAX_BYTES
from nodeops.store.models import AccessPoint
from tests.support.jobs import local_host
from tests.support.sshd import SUDO_USER

UNREACHABLE = "127.0.10.250"
HUGE_BYTES = 3 * 1024 * 1024


@pytest.fixture
def root_owned():
    path = Path(tempfile.mkdtemp(prefix="nodeops-collect-", dir="/tmp"))
    yield path
    for script in path.glob("**/nodeops_agent.py"):
        subprocess.run([sys.executable, str(script), "stop", "--home", str(script.parent)], check=False, timeout=20)
    shutil.rmtree(path, ignore_errors=True)


def instance(ip: str) -> str:
    return f"host|instance|host|{ip}-0-0"


def download(api, job_id: int, instance_id: str, attachment_id: object):
    params = {
        "instance_id": instance_id,
        "attachment_id": attachment_id,
        "bk_app_code": api.app.code,
        "bk_app_secret": api.app.secret,
        "bk_username": api.username,
    }
    return api.client.get(f"/api/job/{job_id}/log/download/", params=params)


def test_collect_log_fetches_the_agent_log_through_sudo_masked_and_capped(api, ssh_hosts, root_owned):
    host = ssh_hosts(1)[0]
    login = host.login(SUDO_USER)
    hosts = [
        {
            "bk_biz_id": 2,
            "inner_ip": host.ip,
            "port": host.port,
            "account": SUDO_USER,
            "password": login.password,
            "setup_path": str(root_owned / "agent"),
        },
        {"bk_biz_id": 2, "inner_ip": UNREACHABLE, "port": 22, "account": "x", "password": "unreachable-pw-5"},
    ]
    job_id = api.ok("/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": hosts})["job_id"]
    data = api.wait(job_id, timeout_s=90)
    assert [row["status"] for row in data["list"]] == ["SUCCESS", "FAILED"], data
    agent_log = root_owned / "agent" / "agent.log"
    with agent_log.open("a") as log:  # what a careless script on the host might have written there
        log.write(f"connecting with password={login.password} and {login.password}\n")

    collected = api.ok(f"/api/job/{job_id}/collect_log/", {"instance_id": instance(host.ip)})
    assert collected["name"] == f"{host.ip}-agent.log" and not collected["truncated"], collected
    got = download(api, job_id, instance(host.ip), collected["attachment_id"])
    assert got.status_code == 200 and got.headers["content-disposition"].startswith("attachment;"), got.text
    assert "nodeops agent 0.1.0 started" in got.text, got.text
    assert "******" in got.text and login.password not in got.text, got.text
    assert collected["download_url"].startswith(f"/api/job/{job_id}/log/download/?instance_id=host%7C")

    with agent_log.open("a") as log:  # a log far over the cap: its last AGENT_LOG_MAX_BYTES come
        log.write(("x" * 99 + "\n") * (HUGE_BYTES // 100) + "the last line\n")
    huge = api.ok(f"/api/job/{job_id}/collect_log/", {"instance_id": instance(host.ip)})
    assert huge["truncated"] and huge["host_size_bytes"] > HUGE_BYTES, huge
    assert AGENT_LOG_MAX_BYTES <= huge["size_bytes"] < AGENT_LOG_MAX_BYTES + 200, huge
    text = download(api, job_id, instance(host.ip), huge["attachment_id"]).text
    assert text.startswith("[nodeops: agent.log is ") and text.endswith("the last line\n")

    # hostile cases
    unreachable = api.error(f"/api/job/{job_id}/collect_log/", {"instance_id": instance(UNREACHABLE)}, 3800003)
    assert f"the agent log of host {UNREACHABLE} could not be fetched" in unreachable["message"], unreachable
    assert "unreachable-pw-5" not in unreachable["message"]
    api.error("/api/job/999999/collect_log/", {"instance_id": instance(host.ip)}, 3801012)
    api.error(f"/api/job/{job_id}/collect_log/", {"instance_id": instance("127.0.10.99")}, 3800007)
    api.error(f"/api/job/{job_id}/collect_log/", {"instance_id": "host|instance|主机|\x00" * 50}, 3800001)
    api.error(f"/api/job/{job_id}/collect_log/", {}, 3800001)
    api.as_user("outsider").error(f"/api/job/{job_id}/collect_log/", {"instance_id": instance(host.ip)}, 9900403)
    missing = download(api, job_id, instance(host.ip), 424242).json()
    assert missing["code"] == 3800007 and "no attachment 424242" in missing["message"], missing
    other = download(api, job_id, instance(UNREACHABLE), collected["attachment_id"]).json()
    assert other["code"] == 3800007, other  # an attachment of another instance is not found either
    assert download(api, job_id, instance(host.ip), "x").json()["code"] == 3800001


def test_collect_log_of_an_instance_still_running_is_refused(api, services, tmp_path, silent_ap_url):
    with services.db.session() as session:
        session.add(AccessPoint(id=2, name="silent", server_url=silent_ap_url))
    job_id = api.ok("/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 4, ap_id=2)]})[
        "job_id"
    ]
    api.wait_step(job_id, instance("127.0.20.4"), "查询Agent状态", "RUNNING")
    answer = api.error(f"/api/job/{job_id}/collect_log/", {"instance_id": instance("127.0.20.4")}, 3800003)
    assert "is RUNNING; collect its agent log once it has finished" in answer["message"], answer
    api.ok(f"/api/job/{job_id}/revoke/", {})
