"""The distributed mode, as real processes: ``nodeops serve`` in celery mode and ``nodeops worker`` processes on a
PostgreSQL database of their own and a Redis database of their own (fixture ``broker_url``), on loopback.
Fixture ``cluster`` (imported by tests/conftest.py). tests/support/netns_service.py runs the same processes inside
a network namespace (``command_prefix``), reached through a unix socket (``uds``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from nodeops.service.container import Services
from nodeops.settings import Settings
from tests.support.factories import AppCredentials, make_app, make_user
from tests.support.jobs import JobApi, dead_port
from tests.support.services import TEST_SECRET_KEY, TEST_TIME_ZONE, _pg_database

NODEOPS = str(Path(sys.executable).with_name("nodeops"))
LEASE_S = 5.0  # short, so a lost worker is noticed in seconds, yet renewed (every 1.7 s) on a loaded machine


@dataclass
class Cluster:
    """An API process and workers on one database and one broker; ``api`` calls the API as ``admin``.

    ``executor="embedded"`` runs the API alone, running its jobs itself (SQLite allowed, no broker).
    ``command_prefix`` goes before every command (``ip netns exec NS``: the processes run inside a network
    namespace), ``host`` is the address the API binds there, ``public_url`` where agents report (default ``url``),
    ``uds`` a unix socket that leads to the API's port when this process cannot reach ``url`` itself.
    """

    root: Path
    database_url: str
    broker_url: str
    port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    api: JobApi | None = None
    db: sa.Engine | None = None
    executor: str = "celery"
    host: str = "127.0.0.1"
    public_url: str = ""
    command_prefix: list[str] = field(default_factory=list)
    uds: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def http_client(self, timeout_s: float) -> httpx.Client:
        """An HTTP client on the API (through ``uds`` when set)."""
        transport = None if self.uds is None else httpx.HTTPTransport(uds=str(self.uds))
        return httpx.Client(base_url=self.url, transport=transport, timeout=timeout_s)

    def env(self, data_dir: Path, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODEOPS_")}
        return env | {
            "NODEOPS_EXECUTOR": self.executor,
            "NODEOPS_DATABASE_URL": self.database_url,
            "NODEOPS_BROKER_URL": self.broker_url,
            "NODEOPS_SECRET_KEY": TEST_SECRET_KEY,
            "NODEOPS_PUBLIC_URL": self.public_url or self.url,
            "NODEOPS_HOST": self.host,
            "NODEOPS_PORT": str(self.port),
            "NODEOPS_TIME_ZONE": TEST_TIME_ZONE,
            "NODEOPS_DATA_DIR": str(data_dir),
            "NODEOPS_WORKER_LEASE_S": str(LEASE_S),
            "NODEOPS_REAPER_INTERVAL_S": "0.5",
            **self.extra_env,
            **extra,
        }

    def _spawn(self, name: str, args: list[str], **extra: str) -> subprocess.Popen[bytes]:
        data_dir = self.root / name
        data_dir.mkdir(exist_ok=True)
        return self.spawn(name, [NODEOPS, *args], env=self.env(data_dir, **extra))

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` (after ``command_prefix``) as the process ``name``, its output in ``log(name)``;
        ``stop`` ends it with the others."""
        with (self.root / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [*self.command_prefix, *argv], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root
            )
        self.processes[name] = process
        return process

    def start_api(self, **extra: str) -> None:
        """Start (or start again, with ``extra`` settings) the API process."""
        if "api" in self.processes:
            self.processes["api"].terminate()
            self.processes["api"].wait(timeout=15)
        self._spawn("api", ["serve"], **extra)
        deadline = time.monotonic() + 60
        while True:
            with suppress(httpx.HTTPError), self.http_client(timeout_s=2) as client:
                if client.get("/healthz").status_code == 200:
                    return
            if self.processes["api"].poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the API did not start:\n{self.log('api')}")
            time.sleep(0.1)

    def start_worker(self, name: str, *, concurrency: int = 10, **extra: str) -> subprocess.Popen[bytes]:
        process = self._spawn(name, ["worker", "--name", name, "--concurrency", str(concurrency)], **extra)
        self.wait_for(lambda: name in " ".join(self.live_workers()), f"worker {name} to take its lease", 60, name)
        return process

    def live_workers(self) -> list[str]:
        return [row[0] for row in self.sql("SELECT id FROM workers WHERE ended_at IS NULL ORDER BY id")]

    def sql(self, query: str, **params: Any) -> list[Any]:
        assert self.db is not None
        with self.db.connect() as conn:
            return list(conn.execute(sa.text(query), params).all())

    def worker_of(self, name: str) -> str:
        """The id (name.pid) of the worker process started as ``name``."""
        return f"{name}.{self.processes[name].pid}"

    def wait_for(self, check: Callable[[], bool], what: str, timeout_s: float = 30, log: str = "api") -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.log(log)}")
            time.sleep(0.05)

    def log(self, name: str, tail: int = 6000) -> str:
        """The end of a process's output (``tail`` characters; 0: all of it)."""
        path = self.root / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text[-tail:] if tail else text

    def signal(self, name: str, signum: int) -> None:
        self.processes[name].send_signal(signum)

    def stop(self) -> None:
        for process in self.processes.values():
            with suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def seed_callers(root: Path, database_url: str) -> AppCredentials:
    """Make the test app and the superuser ``admin`` in the migrated database ``database_url``."""
    settings = Settings(
        data_dir=root / "admin",
        database_url=database_url,
        secret_key=TEST_SECRET_KEY,  # type: ignore[arg-type]
        time_zone=TEST_TIME_ZONE,
    )
    services = Services.build(settings)
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    services.close()
    return app


@pytest.fixture
def cluster(tmp_path: Path, pg_admin_url: str, pg_template: str, broker_url: str) -> Iterator[Cluster]:
    """A migrated PostgreSQL database, an empty Redis database (``broker_url``) and a running API in celery mode
    (workers are started by the test); an app and the superuser ``admin`` exist."""
    for database_url in _pg_database(pg_admin_url, template=pg_template):
        made = Cluster(root=tmp_path, database_url=database_url, broker_url=broker_url, port=dead_port())
        app = seed_callers(tmp_path, database_url)
        made.db = sa.create_engine(database_url)
        try:
            made.start_api()
            with httpx.Client(base_url=made.url, timeout=30) as client:
                made.api = JobApi(client, app)
                yield made
        finally:
            made.stop()
            made.db.dispose()
