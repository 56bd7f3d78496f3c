"""The demo of ``make run``: an app and a superuser to call with, then a real INSTALL_AGENT job followed by an
UPGRADE_AGENT job on this machine (local transport, agent under ``data_dir/demo-host``).

The app's secret is kept in ``data_dir/demo.json`` (mode 0600) so every ``make run`` can print a ready
``curl``; it is a local convenience, created only when the server runs with ``--demo``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from nodeops.domain.instance_id import host_instance_id
from nodeops.domain.plans import JobType
from nodeops.engine import packages
from nodeops.service import admin
from nodeops.service.container import Services
from nodeops.service.host_requests import parse_hosts
from nodeops.settings import Settings
from nodeops.store import hosts as host_rows
from nodeops.store import jobs
from nodeops.store.access import AccessReads
from nodeops.store.db import Database

DEMO_APP = "nodeops-demo"
DEMO_USER = "admin"
DEMO_UPGRADE_VERSION = "0.1.1"  # a second agent version, built on the spot, so the upgrade is visible


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoAccess:
    app_code: str
    app_secret: str
    username: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoRun:
    install_job_id: int
    upgrade_job_id: int
    instance_id: str
    install_status: str
    upgrade_status: str


def ensure_demo_access(db: Database, settings: Settings) -> DemoAccess:
    """The demo app (allowed to pass bk_username) and superuser, created once."""
    path = settings.data_dir / "demo.json"
    saved = _load(path)
    if saved is None or not _app_exists(db, saved.app_code):
        app = admin.add_app(db, code=f"{DEMO_APP}-{os.urandom(3).hex()}", allow_username=True)
        admin.add_user(db, username=DEMO_USER, is_superuser=True)
        saved = DemoAccess(app_code=app.code, app_secret=app.secret, username=DEMO_USER)
        _save(path, saved)
    return saved


async def run_demo_jobs(services: Services) -> DemoRun:
    """Install the agent on this machine, then upgrade it; returns when both jobs have ended."""
    settings = services.settings
    host = {
        "bk_biz_id": 2,
        "bk_cloud_id": 0,
        "inner_ip": "127.0.0.1",
        "os_type": "LINUX",
        "transport": "local",
        "setup_path": str((settings.data_dir / "demo-host" / "nodeops-agent").resolve()),
    }
    install = await services.jobs.install(
        job_type=JobType.INSTALL_AGENT, hosts=parse_hosts([host]), created_by=DEMO_USER, from_system=DEMO_APP
    )
    await services.engine.wait(install.job_id)

    def upgrade_target() -> int:
        packages.register(services.db, settings.packages_dir, DEMO_UPGRADE_VERSION)
        with services.db.session() as session:
            host_id = host_rows.find_host_id(session, bk_cloud_id=0, inner_ip="127.0.0.1", inner_ipv6=None)
        assert host_id is not None
        return host_id

    host_id = await services.db.call(upgrade_target)
    upgrade = await services.jobs.operate(
        job_type=JobType.UPGRADE_AGENT, bk_host_ids=[host_id], created_by=DEMO_USER, from_system=DEMO_APP
    )
    await services.engine.wait(upgrade.job_id)
    statuses = await services.db.call(lambda: _statuses(services.db, install.job_id, upgrade.job_id))
    return DemoRun(
        install_job_id=install.job_id,
        upgrade_job_id=upgrade.job_id,
        instance_id=str(host_instance_id(bk_host_id=host_id)),
        install_status=statuses[0],
        upgrade_status=statuses[1],
    )


def _statuses(db: Database, *job_ids: int) -> list[str]:
    with db.session() as session:
        return [jobs.job_status(session, job_id) for job_id in job_ids]


def _app_exists(db: Database, code: str) -> bool:
    with db.cursor() as cur:
        return AccessReads(db).fetch_app(cur, code) is not None


def _load(path: Path) -> DemoAccess | None:
    try:
        data = json.loads(path.read_text())
        return DemoAccess(app_code=data["app_code"], app_secret=data["app_secret"], username=data["username"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _save(path: Path, demo: DemoAccess) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(demo), handle)
