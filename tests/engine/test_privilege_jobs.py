"""Installs without root on real sshd hosts (network spec §18): root installs; a NOPASSWD sudo user installs into a
root-owned path through ``sudo -n`` (then upgrades, restarts, reloads and uninstalls); a user without sudo is
refused in 安装 with sudo's own words, or installs into a folder it owns when the request says ``owned_path`` (and
is refused, naming the path, when it cannot write it). No password or key reaches a log, an answer, a table or the
service's log.

Diagnoses: an access point that refuses, or never answers, fails 安装 in seconds naming the URL and the error; an
agent that exits at start leaves the tail of its own log (agent.log) in 安装's log."""

from __future__ import annotations

import hashlib
import io
import os
import pwd
import shutil
import socket
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from nodeops.domain.plans import JobType
from nodeops.engine import packages
from nodeops.engine.steps import StepTimeouts
from nodeops.service.host_requests import parse_hosts
from nodeops.store import packages as package_rows
from nodeops.store.models import AccessPoint, Base
from tests.engine.test_ssh_jobs import _host_ids, read_log
from tests.support.factories import make_app, make_user
from tests.support.sshd import NOSUDO_USER, ROOT, SUDO_USER

DIAGNOSIS_BOUND_S = 30.0  # far below the heartbeat's timeout (60 s in production)


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"step_timeout_s": 60})


@pytest.fixture
def step_timeouts():
    return StepTimeouts(heartbeat_s=60, command_s=20, upload_s=20)


def request(host, account, path, **changes):
    login = host.login(account)
    auth = {"auth_type": "KEY", "key": login.private_key} if login.password is None else {"password": login.password}
    return {
        "bk_biz_id": 2,
        "inner_ip": host.ip,
        "port": host.port,
        "account": account,
        "setup_path": str(path),
        **auth,
        **changes,
    }


def dump_tables(services):
    rows = []
    with services.db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows += [repr(row) for row in conn.execute(text(f"SELECT * FROM {table.name}"))]
    return "\n".join(rows)


def owned_folder(user):
    entry = pwd.getpwnam(user)
    path = Path(tempfile.mkdtemp(prefix=f"nodeops-{user}-", dir="/tmp"))
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


async def test_root_sudo_and_owned_path_install_and_the_rest_are_refused_saying_what_is_missing(
    services, live_server, engine, ssh_hosts, caplog
):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    as_root, as_sudo, refused, as_owner, unwritable = ssh_hosts(5)
    run = uuid.uuid4().hex[:8]
    root_owned = Path(tempfile.mkdtemp(prefix="nodeops-rootowned-", dir="/tmp"))  # mode 700, root's
    nosudo_home = owned_folder(NOSUDO_USER)
    hosts = [
        request(as_root, ROOT, as_root.setup_path / f"root-{run}"),
        request(as_sudo, SUDO_USER, root_owned / "agent"),
        request(refused, NOSUDO_USER, refused.setup_path / f"nosudo-{run}"),
        request(as_owner, NOSUDO_USER, nosudo_home / "agent", owned_path=True),
        request(unwritable, NOSUDO_USER, root_owned / "nosudo", owned_path=True),
    ]
    try:
        started = await services.jobs.install(
            job_type=JobType.INSTALL_AGENT, hosts=parse_hosts(hosts), created_by="admin", from_system="test"
        )
        await engine.wait(started.job_id)
        logs = {
            h.ip: read_log(live_server, app, started.job_id, f"host|instance|host|{h.ip}-0-0")
            for h in (as_root, as_sudo, refused, as_owner, unwritable)
        }
        for host in (as_root, as_sudo, as_owner):
            assert {s["status"] for s in logs[host.ip]} == {"SUCCESS"}, logs[host.ip]
        assert "sudo -n" in next(s for s in logs[as_sudo.ip] if s["step"] == "安装")["log"]
        assert (root_owned / "agent" / "agent.json").stat().st_uid == 0  # moved in by sudo, given to root
        assert (nosudo_home / "agent" / "agent.json").stat().st_uid == pwd.getpwnam(NOSUDO_USER).pw_uid
        reasons = {
            refused.ip: ("may not sudo without a password (NOPASSWD)", "sudo: a password is required"),
            unwritable.ip: (f"cannot write the install path {root_owned}/nosudo",),
        }
        for ip, expected in reasons.items():
            install = next(s for s in logs[ip] if s["step"] == "安装")  # the first step that reaches the host
            assert install["status"] == "FAILED", logs[ip]
            assert all(part in install["log"] for part in expected), install["log"]

        packages.register(services.db, services.settings.packages_dir, "0.3.0")
        (host_id,) = await services.db.call(lambda: _host_ids(services, [as_sudo.ip]))
        for job_type in (JobType.UPGRADE_AGENT, JobType.RESTART_AGENT, JobType.RELOAD_AGENT, JobType.UNINSTALL_AGENT):
            job = await services.jobs.operate(
                job_type=job_type, bk_host_ids=[host_id], created_by="admin", from_system="test"
            )
            await engine.wait(job.job_id)
            steps = read_log(live_server, app, job.job_id, host_id)
            assert {s["status"] for s in steps} == {"SUCCESS"}, (job_type, steps)
            logs[f"{job_type}"] = steps
        assert not (root_owned / "agent").exists()

        root_key = as_root.login(ROOT).private_key
        assert root_key is not None
        secrets = [as_sudo.login(SUDO_USER).password, refused.login(NOSUDO_USER).password, root_key.splitlines()[1]]
        everything = dump_tables(services) + caplog.text + repr(logs)
        assert not [s for s in secrets if s and s in everything]
    finally:
        shutil.rmtree(root_owned, ignore_errors=True)
        shutil.rmtree(nosudo_home, ignore_errors=True)


def add_access_point(services, ap_id, server_url):
    with services.db.session() as session:
        session.add(AccessPoint(id=ap_id, name=f"ap-{ap_id}", server_url=server_url))


async def test_an_access_point_that_refuses_or_never_answers_fails_install_in_seconds_naming_url_and_error(
    services, live_server, engine, ssh_hosts
):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    refusing_host, silent_host = ssh_hosts(7)[5:7]
    closed = socket.socket()
    closed.bind(("127.0.10.251", 0))
    refused_url = f"http://127.0.10.251:{closed.getsockname()[1]}"
    closed.close()  # nothing listens there: connections are refused
    silent = socket.socket()
    silent.bind(("127.0.10.252", 0))
    silent.listen(8)  # connections complete in the backlog and nobody ever reads them
    silent_url = f"http://127.0.10.252:{silent.getsockname()[1]}"
    add_access_point(services, 41, refused_url)
    add_access_point(services, 42, silent_url)
    run = uuid.uuid4().hex[:8]
    hosts = [
        request(
            refusing_host, refusing_host.username, refusing_host.setup_path / f"ap-{run}", ap_id=41, owned_path=True
        ),
        request(silent_host, silent_host.username, silent_host.setup_path / f"ap-{run}", ap_id=42, owned_path=True),
    ]
    try:
        began = time.monotonic()
        started = await services.jobs.install(
            job_type=JobType.INSTALL_AGENT, hosts=parse_hosts(hosts), created_by="admin", from_system="test"
        )
        await engine.wait(started.job_id)
        assert time.monotonic() - began < DIAGNOSIS_BOUND_S
        for host, url, error in (
            (refusing_host, refused_url, "connection refused"),
            (silent_host, silent_url, "timed out after 5 s"),
        ):
            steps = read_log(live_server, app, started.job_id, f"host|instance|host|{host.ip}-0-0")
            install = next(s for s in steps if s["step"] == "安装")
            assert install["status"] == "FAILED", steps
            assert f"POST {url}/api/agent/ping/: {error}" in install["log"], install["log"]
            assert next(s for s in steps if s["step"] == "查询Agent状态")["status"] == "PENDING"
    finally:
        silent.close()


BROKEN_VERSION = "9.9.9"  # the newest registered: install_job chooses it
BROKEN_AGENT = b"""#!/usr/bin/env python3
import os, sys
home = sys.argv[sys.argv.index("--home") + 1]
if sys.argv[1] == "start":
    with open(os.path.join(home, "agent.log"), "a") as log:
        log.write("starting nodeops agent\\nfatal: cannot open /dev/nodeops-broken-device\\n")
    print("the agent did not start")
    sys.exit(1)
print("stopped")
sys.exit(3 if sys.argv[1] == "status" else 0)
"""


def register_broken_package(services):
    """A package whose agent writes why it cannot run into its agent.log and exits at start."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in (("VERSION", f"{BROKEN_VERSION}\n".encode()), ("nodeops_agent.py", BROKEN_AGENT)):
            info = tarfile.TarInfo(f"nodeops-agent/{name}")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    content = raw.getvalue()
    sha256 = hashlib.sha256(content).hexdigest()
    path = services.settings.packages_dir / f"nodeops-agent-{BROKEN_VERSION}.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    with services.db.session() as session:
        package_rows.keep_content(session, sha256=sha256, version=BROKEN_VERSION, content=content)
        package_rows.upsert(session, version=BROKEN_VERSION, path=str(path), sha256=sha256, size_bytes=len(content))


async def test_an_agent_that_exits_at_start_leaves_its_own_log_tail_in_the_install_log(
    services, live_server, engine, ssh_hosts
):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    host = ssh_hosts(8)[7]
    register_broken_package(services)
    run = uuid.uuid4().hex[:8]
    hosts = [request(host, host.username, host.setup_path / f"broken-{run}", owned_path=True)]
    started = await services.jobs.install(
        job_type=JobType.INSTALL_AGENT, hosts=parse_hosts(hosts), created_by="admin", from_system="test"
    )
    await engine.wait(started.job_id)
    steps = read_log(live_server, app, started.job_id, f"host|instance|host|{host.ip}-0-0")
    install = next(s for s in steps if s["step"] == "安装")
    assert install["status"] == "FAILED", steps
    log = install["log"]
    assert "starting the agent failed" in log and "agent.log 的最后" in log, log
    assert "fatal: cannot open /dev/nodeops-broken-device" in log, log


async def test_proxy_variables_of_the_account_s_environment_are_named_with_their_credentials_masked(
    services, live_server, engine, tmp_path, monkeypatch
):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    closed = socket.socket()
    closed.bind(("127.0.10.251", 0))
    refused_url = f"http://127.0.10.251:{closed.getsockname()[1]}"
    closed.close()
    add_access_point(services, 43, refused_url)
    # the local transport runs commands in this process's environment: the "account's" here
    monkeypatch.setenv("http_proxy", "http://squid-user:squid-secret@127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.2")
    host = {
        "bk_biz_id": 2,
        "inner_ip": "127.0.20.9",
        "transport": "local",
        "setup_path": str(tmp_path / "agent"),
        "ap_id": 43,
    }
    started = await services.jobs.install(
        job_type=JobType.INSTALL_AGENT, hosts=parse_hosts([host]), created_by="admin", from_system="test"
    )
    await engine.wait(started.job_id)
    for name in ("http_proxy", "NO_PROXY"):  # the log API is read straight, not through the made-up proxy
        monkeypatch.delenv(name)
    steps = read_log(live_server, app, started.job_id, "host|instance|host|127.0.20.9-0-0")
    log = next(s for s in steps if s["step"] == "安装")["log"]
    assert "proxy variable http_proxy=http://***@127.0.0.1:3128 in the account's environment" in log, log
    assert "proxy variable NO_PROXY=127.0.0.2" in log and "squid-secret" not in log, log
    assert f"POST {refused_url}/api/agent/ping/: connection refused" in log, log
