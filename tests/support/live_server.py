"""The service over real HTTP: uvicorn serving ``create_app`` on 127.0.0.1 in a thread, as ``nodeops serve`` does.

``LiveServer`` is the one test server; the fixtures ``listen_socket`` and ``live_server`` (imported by
tests/conftest.py) serve the test's ``services`` with the lifespan off, and ``tests.support.jobs.serving`` with it on.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from nodeops.api.app import create_app
from nodeops.service.container import Services


def free_socket() -> socket.socket:
    """A socket bound to 127.0.0.1 and a free port, for a test server to listen on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class LiveServer:
    """A real uvicorn serving ``create_app`` on ``sock`` (default: 127.0.0.1 and a free port), in a thread.

    With ``lifespan=True`` the services (and the engine) start and stop in the server's own event loop, as in
    ``nodeops serve``; without, a test drives them from its own loop.
    """

    def __init__(self, services: Services, sock: socket.socket | None = None, *, lifespan: bool = False) -> None:
        self.services = services
        self.app = app = create_app(services.settings, services)
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            loop="asyncio",
            http=app.http_protocol,  # as `nodeops serve`: the log lane on SQLite
            lifespan="on" if lifespan else "off",
        )
        self.server = uvicorn.Server(config)
        self.sock = free_socket() if sock is None else sock
        self.thread = threading.Thread(
            target=lambda: self.server.run(sockets=[self.sock]), name="uvicorn-test", daemon=True
        )
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@pytest.fixture
def listen_socket() -> Iterator[socket.socket]:
    """The socket ``live_server`` listens on; settings that name its port make agents report there."""
    sock = free_socket()
    yield sock
    sock.close()


@pytest.fixture
def live_server(services: Services, listen_socket: socket.socket) -> Iterator[LiveServer]:
    """The service over real HTTP on ``listen_socket`` (lifespan off); ``live_server.url`` is its base URL."""
    server = LiveServer(services, listen_socket)
    server.start()
    yield server
    server.stop()
