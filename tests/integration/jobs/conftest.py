"""An engine running in the test's event loop, agents reporting to a live server, hosts on the local transport."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeops.crypto import SecretBox
from nodeops.engine import packages
from nodeops.engine.runner import Engine, FanOut
from nodeops.engine.steps import StepTimeouts, local_or_ssh
from nodeops.service.job_launch import JobRunner
from nodeops.store import packages as package_rows


@pytest.fixture
async def engine(services, live_server):
    db = services.db
    with db.session() as session:
        package_rows.ensure_default_access_point(session, server_url=live_server.url)
    packages.register(db, services.settings.packages_dir)
    box = SecretBox(services.settings.resolved_secret_key())
    built = Engine(
        db,
        services.settings.tz,
        box,
        local_or_ssh(None),
        fan_out=FanOut(limit=10, step_timeout_s=60),
        timeouts=StepTimeouts(heartbeat_s=20, command_s=30),
        heartbeats=services.heartbeats,  # woken by the live server's heartbeat API, as in one process
    )
    await built.start()
    yield built
    await built.aclose()


@pytest.fixture
def runner(services, engine):
    return JobRunner(services.db, engine, services.settings, SecretBox(services.settings.resolved_secret_key()))


def local_host(tmp_path: Path, n: int, **extra: object) -> dict[str, object]:
    """A host reached with the local transport, with its own install path (a stand-in for 127.0.20.n)."""
    return {
        "bk_biz_id": 2,
        "bk_cloud_id": 0,
        "inner_ip": f"127.0.20.{n}",
        "os_type": "LINUX",
        "transport": "local",
        "setup_path": str(tmp_path / f"host{n}" / "nodeops-agent"),
        **extra,
    }
