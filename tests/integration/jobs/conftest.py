"""A job API of the superuser ``admin`` on a server running the engine in its own event loop."""

from __future__ import annotations

import pytest

from tests.integration.jobs.support import serving


@pytest.fixture
def api(services, listen_socket, tmp_path):
    """A JobApi of ``admin`` on a running server (see ``serving``)."""
    with serving(services, listen_socket, tmp_path) as api:
        yield api
