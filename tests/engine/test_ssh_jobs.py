"""Agent jobs on real sshd hosts (127.0.10.x): good hosts succeed; an unreachable one, a wrong password, a
failing script and a timeout each fail with the reason in their log; the job is PART_FAILED. Then upgrade,
restart and uninstall the good ones. No password reaches a log, an answer or a database column."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest
from sqlalchemy import text

from nodeops.domain.plans import JobType
from nodeops.engine import packages
from nodeops.engine.steps import StepTimeouts
from nodeops.service.host_requests import parse_hosts
from nodeops.store.models import Base
from tests.support.factories import make_app, make_user

UNREACHABLE = "127.0.10.250"


@pytest.fixture
def settings(settings):
    """The shared settings, with a bound on each step."""
    return settings.model_copy(update={"step_timeout_s": 60})


@pytest.fixture
def step_timeouts():
    """Short enough that the upload into a FIFO nobody reads times out in seconds."""
    return StepTimeouts(heartbeat_s=20, command_s=20, upload_s=4)


def read_log(server, app, job_id, instance_id):
    body = httpx.get(
        f"{server.url}/api/job/{job_id}/log/",
        params={
            "instance_id": instance_id,
            "bk_app_code": app.code,
            "bk_app_secret": app.secret,
            "bk_username": "admin",
        },
        timeout=10,
    ).json()
    assert body["result"], body
    return body["data"]


def job_row(services, job_id):
    with services.db.engine.connect() as conn:
        return conn.execute(text("SELECT status, statistics FROM jobs WHERE id = :id"), {"id": job_id}).one()


async def test_install_on_sshd_hosts_fails_each_bad_host_with_its_reason_and_the_rest_succeed(
    services, live_server, engine, ssh_hosts, caplog
):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    good, wrong_password, failing, slow = ssh_hosts(6)[:3], *ssh_hosts(6)[3:]
    run = uuid.uuid4().hex[:8]

    def spec(host, **changes):
        return {**host.install_spec(f"agent-{run}"), **changes}

    # the timeout host: the package's destination is a FIFO nobody reads, so the upload blocks
    fifo_dir = slow.setup_path / f"agent-{run}"
    fifo_dir.mkdir()
    fifo = fifo_dir / ".nodeops-agent-0.1.0.tgz"
    os.mkfifo(fifo)
    owner = os.stat(slow.setup_path)
    for path in (fifo_dir, fifo):
        os.chown(path, owner.st_uid, owner.st_gid)

    hosts = [spec(h) for h in good] + [
        spec(wrong_password, password="not-the-password-7"),
        spec(failing, setup_path="/root/nodeops-forbidden/agent"),
        spec(slow),
        {"bk_biz_id": 2, "inner_ip": UNREACHABLE, "port": 22, "account": "x", "password": "unreachable-pw-3"},
    ]
    try:
        started = await services.jobs.install(
            job_type=JobType.INSTALL_AGENT, hosts=parse_hosts(hosts), created_by="admin", from_system="test"
        )
        await engine.wait(started.job_id)
        logs = {
            h["inner_ip"]: read_log(live_server, app, started.job_id, f"host|instance|host|{h['inner_ip']}-0-0")
            for h in hosts
        }
        for host in good:
            assert {s["status"] for s in logs[host.ip]} == {"SUCCESS"}, logs[host.ip]
        reasons = {
            wrong_password.ip: "refused the login",
            failing.ip: "cannot write the install path /root/nodeops-forbidden/agent",
            slow.ip: "timed out",
            UNREACHABLE: UNREACHABLE,
        }
        for ip, reason in reasons.items():
            steps = logs[ip]
            install = next(s for s in steps if s["step"] == "安装")
            assert install["status"] == "FAILED", (ip, steps)
            assert reason in install["log"], (ip, install["log"])
            after = steps[steps.index(install) + 1 :]
            assert all(s["status"] == "PENDING" and s["log"] == "" for s in after), (ip, after)
        status, stats = job_row(services, started.job_id)
        assert status == "PART_FAILED"
        assert '"success_count": 3' in str(stats).replace("'", '"') or stats["success_count"] == 3

        secrets = [h.password for h in (*good, wrong_password)] + ["not-the-password-7", "unreachable-pw-3"]
        dump = []
        with services.db.engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                dump += [repr(row) for row in conn.execute(text(f"SELECT * FROM {table.name}"))]
        everything = "\n".join(dump) + caplog.text + repr(logs)
        assert not [s for s in secrets if s in everything]

        packages.register(services.db, services.settings.packages_dir, "0.3.0")
        host_ids = await services.db.call(lambda: _host_ids(services, [h.ip for h in good]))
        for job_type, version in (
            (JobType.UPGRADE_AGENT, "0.3.0"),
            (JobType.RESTART_AGENT, "0.3.0"),
            (JobType.UNINSTALL_AGENT, None),
        ):
            job = await services.jobs.operate(
                job_type=job_type, bk_host_ids=host_ids, created_by="admin", from_system="test"
            )
            await engine.wait(job.job_id)
            for host_id in host_ids:
                steps = read_log(live_server, app, job.job_id, host_id)
                assert {s["status"] for s in steps} == {"SUCCESS"}, (job_type, steps)
                if version:
                    assert f"版本 {version}" in next(s for s in steps if s["step"] == "查询Agent状态")["log"]
        assert not any((h.setup_path / f"agent-{run}").exists() for h in good)
    finally:
        (fifo_dir / ".nodeops-agent-0.1.0.tgz").unlink(missing_ok=True)


def _host_ids(services, ips):
    with services.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT bk_host_id, inner_ip FROM hosts")).all()
    by_ip = {ip: host_id for host_id, ip in rows}
    return [by_ip[ip] for ip in ips]
