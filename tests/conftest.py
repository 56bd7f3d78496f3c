"""Fixtures every test folder may use, defined in tests/support and imported here: a clean environment, a
migrated database per test on SQLite and PostgreSQL and an empty Redis database per test, the broker
(``tests.support.services``), a real uvicorn server on 127.0.0.1 (``tests.support.live_server``), the services'
engine started in the test's event loop, the log API's callers (``tests.support.callers``), a job API on a
server running the engine (``tests.support.jobs``), the sshd test hosts on loopback (``tests.support.sshd``), the
test network of namespaces (``tests.support.netns``) and the service run inside it (``tests.support.netns_service``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from nodeops.engine.runner import Engine
from nodeops.engine.steps import StepTimeouts
from nodeops.service.container import Services
from tests.support.callers import admin, auth, client, esb_app, seed_job, token_for
from tests.support.cluster import cluster
from tests.support.jobs import api, silent_ap_url
from tests.support.live_server import LiveServer, listen_socket, live_server
from tests.support.netns import network
from tests.support.netns_service import srv_env, srv_service
from tests.support.services import (
    BROKER_ENV,
    PG_ENV,
    broker_admin_url,
    broker_url,
    database_url,
    fresh_pg_url,
    pg_admin_url,
    pg_database_url,
    pg_template,
    redis_databases,
    services,
    settings,
    sqlite_template,
)
from tests.support.sshd import ssh_hosts, ssh_lab

__all__ = [
    "admin",
    "api",
    "auth",
    "broker_admin_url",
    "broker_url",
    "client",
    "cluster",
    "database_url",
    "esb_app",
    "fresh_pg_url",
    "listen_socket",
    "live_server",
    "network",
    "pg_admin_url",
    "pg_database_url",
    "pg_template",
    "redis_databases",
    "seed_job",
    "services",
    "settings",
    "silent_ap_url",
    "sqlite_template",
    "srv_env",
    "srv_service",
    "ssh_hosts",
    "ssh_lab",
    "token_for",
]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("NODEOPS_") and name not in (PG_ENV, BROKER_ENV):
            monkeypatch.delenv(name)


@pytest.fixture
def step_timeouts() -> StepTimeouts:
    """The ``engine`` fixture's step timeouts: a step that cannot succeed fails in seconds, not minutes."""
    return StepTimeouts(heartbeat_s=20, command_s=30)


@pytest.fixture
async def engine(services: Services, live_server: LiveServer, step_timeouts: StepTimeouts) -> AsyncIterator[Engine]:
    """The engine ``Services.build`` wired, started by ``Services.start`` in the test's event loop: agents report
    to ``live_server``, whose heartbeat API wakes the engine's steps, as in one process."""
    services.engine.timeouts = step_timeouts
    await services.start()
    yield services.engine
    await services.aclose()
