"""A server running the engine (lifespan on) and a JobApi of the superuser ``admin``; users ``viewer``
(business 2) and ``outsider`` (business 3) exist too. Agents installed under tmp_path are stopped at the end."""

from __future__ import annotations

import httpx
import pytest

from nodeops.settings import Settings
from tests.factories import make_app, make_user
from tests.integration.jobs.support import EngineServer, JobApi, free_socket, settings_on, stop_agents


@pytest.fixture
def listen_socket():
    sock = free_socket()
    yield sock
    sock.close()


@pytest.fixture
def settings(tmp_path, database_url, listen_socket) -> Settings:
    """Settings on the port the server listens on (agents report there)."""
    return settings_on(listen_socket, tmp_path, database_url, step_timeout_s=60)


@pytest.fixture
def api(services, listen_socket, tmp_path):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    make_user(services, "viewer", biz=[2])
    make_user(services, "outsider", biz=[3])
    server = EngineServer(services, listen_socket)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield JobApi(client, app)
    finally:
        stop_agents(tmp_path)
        server.stop()
