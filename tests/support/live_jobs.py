"""A running service for the viewer's and the CLI's tests (fixtures ``stack`` and what it needs, imported by
tests/web/conftest.py and tests/cli/test_cli_remote.py): the job API's server (``tests.support.jobs.serving``,
whose lifespan runs the engine in the server's own loop, as in production), the superuser ``admin`` with an app
and a bk_token, and the transports ``Services.build`` wires with each agent start first printing a line a second
for a few seconds, so a real job is RUNNING with its lines arriving while a test watches.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nodeops.crypto import SecretBox
from nodeops.engine.logwriter import LogWriter
from nodeops.engine.steps import TransportFactory
from nodeops.engine.transports.base import CommandResult, LineSink, Transport
from nodeops.service import admin
from nodeops.service.container import Services
from nodeops.store.pipelines import HostWork
from tests.support.factories import AppCredentials
from tests.support.jobs import JobApi, local_host, serving

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
UPDATE_DOC_IMAGES_ENV = "UPDATE_DOC_IMAGES"  # =1: the tests also refresh the README's pictures (not NODEOPS_*: cleared)
CHROMIUM = "/usr/bin/chromium"  # Debian's package; make test installs it, Playwright downloads nothing
SLOW_LINES = 6  # lines the agent's start prints, one a second
SLOW_LINE = "warming up {n}/{total}"


def artifact(name: str) -> Path:
    """Where a test saves ``name`` (test-artifacts/, made on demand)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


def publish_doc_image(path: Path) -> None:
    """Copy a saved artifact into docs/images when asked to (it would otherwise change on every run)."""
    if os.environ.get(UPDATE_DOC_IMAGES_ENV) == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOC_IMAGES / path.name)


class SlowStartTransport:
    """The transport ``Services.build`` wired for a host, whose agent start first prints ``SLOW_LINES`` lines, a
    second apart."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    async def run(self, command: str, *, timeout_s: float, on_line: LineSink | None = None) -> CommandResult:
        if " start --home " in command:
            lines = " ".join(str(n) for n in range(1, SLOW_LINES + 1))
            text = SLOW_LINE.format(n="$i", total=SLOW_LINES)
            command = f'for i in {lines}; do echo "{text}"; sleep 1; done; {command}'
        return await self.inner.run(command, timeout_s=timeout_s, on_line=on_line)

    async def put(self, src: Path, dest: str, *, timeout_s: float) -> None:
        await self.inner.put(src, dest, timeout_s=timeout_s)

    async def aclose(self) -> None:
        await self.inner.aclose()


def slow_start(connect: TransportFactory) -> TransportFactory:
    """``connect``, with each transport it makes slowed down as ``SlowStartTransport`` says."""

    def slowed(work: HostWork, box: SecretBox, writer: LogWriter) -> Transport:
        return SlowStartTransport(connect(work, box, writer))

    return slowed


@dataclass
class Stack:
    url: str
    services: Services
    app: AppCredentials
    token: str  # admin's bk_token
    api: JobApi
    root: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"bk_app_code": self.app.code, "bk_app_secret": self.app.secret, "bk_username": "admin"}

    def install_slow(self, n: int = 1) -> dict[str, Any]:
        """Start INSTALL_AGENT on local host 127.0.20.n, whose 安装 prints a line a second; returns the answer."""
        data: dict[str, Any] = self.api.ok(
            "/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": [local_host(self.root, n)]}
        )
        return data


@contextmanager
def running_stack(services: Services, listen_socket: Any, root: Path) -> Iterator[Stack]:
    """The service on ``listen_socket`` (see ``serving``), its agents' start slowed down; ``admin`` has a bk_token."""
    services.engine.pipeline.connect = slow_start(services.engine.pipeline.connect)
    with serving(services, listen_socket, root) as api:
        token = admin.token(services.db, services.settings.resolved_secret_key(), username="admin", ttl_s=3600)
        url = str(api.client.base_url).rstrip("/")
        yield Stack(url=url, services=services, app=api.app, token=token, api=api, root=root)


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite only: these tests check pages and commands, not the store (which runs on both elsewhere)."""
    path = tmp_path / "nodeops.sqlite3"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def stack(services, listen_socket, tmp_path):
    with running_stack(services, listen_socket, tmp_path) as made:
        yield made
