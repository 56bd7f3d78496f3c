"""A server running the engine (lifespan on) and a JobApi of the superuser ``admin``; users ``viewer``
(business 2) and ``outsider`` (business 3) exist too. Agents installed under tmp_path are stopped at the end."""

from __future__ import annotations

import pytest

from nodeops.settings import Settings
from tests.integration.jobs.support import free_socket, serving, settings_on


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
    """A JobApi of ``admin`` on a running server (see ``serving``)."""
    with serving(services, listen_socket, tmp_path) as api:
        yield api
