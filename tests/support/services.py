"""A migrated database per test, once on SQLite and once on PostgreSQL, and the settings and services on it;
and an empty Redis database per test, the celery executor's broker.

PostgreSQL comes from ``NODEOPS_TEST_PG_URL`` (``make test`` starts a throwaway cluster and sets it): the
schema is migrated once into a template database, and each test gets ``CREATE DATABASE ... TEMPLATE``.
Redis comes from ``NODEOPS_TEST_BROKER_URL`` (``make test`` starts scripts/test-redis.sh and sets it): each test
claims a database number of its own and gets it empty. Without either variable, the tests that need it are
skipped locally and fail under CI. The fixtures are imported by tests/conftest.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import sqlalchemy as sa

from nodeops.service.container import Services
from nodeops.settings import Settings
from nodeops.store import migrate
from nodeops.store.db import Database

TEST_SECRET_KEY = "test-secret-key-not-for-production"
TEST_TIME_ZONE = "Asia/Shanghai"  # Node Manager's zone (UTC+8), so times match the seed's example
PG_ENV = "NODEOPS_TEST_PG_URL"
PG_TEMPLATE = f"nodeops_test_template_{os.getpid()}"  # one per run: concurrent runs share the cluster
BACKENDS = ["sqlite", "postgresql"]
BROKER_ENV = "NODEOPS_TEST_BROKER_URL"
BROKER_CLAIM_TTL_S = 3600  # a run that dies holding a database number gives it back after this


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url = os.environ.get(PG_ENV, "")
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set: run the suite with `make test`, which starts PostgreSQL")
        pytest.skip(f"{PG_ENV} not set (make test sets it)")
    return url


def _pg_engine(admin_url: str) -> sa.Engine:
    return sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> Iterator[str]:
    """Name of a PostgreSQL database migrated to head, to copy per test."""
    engine = _pg_engine(pg_admin_url)
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{PG_TEMPLATE}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{PG_TEMPLATE}"'))
    db = Database.connect(sa.make_url(pg_admin_url).set(database=PG_TEMPLATE).render_as_string(hide_password=False))
    migrate.upgrade(db)
    db.dispose()
    yield PG_TEMPLATE
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{PG_TEMPLATE}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head, to copy per test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    db = Database.connect(f"sqlite:///{path}")
    migrate.upgrade(db)
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path


@pytest.fixture
def fresh_pg_url(pg_admin_url: str) -> Iterator[str]:
    """An empty PostgreSQL database for this test (no schema), dropped afterwards."""
    yield from _pg_database(pg_admin_url, template=None)


def _pg_database(admin_url: str, *, template: str | None) -> Iterator[str]:
    name = f"nodeops_test_{uuid.uuid4().hex[:12]}"
    engine = _pg_engine(admin_url)
    with engine.connect() as conn:
        suffix = f' TEMPLATE "{template}"' if template else ""
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{suffix}'))
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def pg_database_url(pg_admin_url: str, pg_template: str) -> Iterator[str]:
    """A migrated PostgreSQL database for this test, for what only PostgreSQL has (row locks, NOTIFY/LISTEN)."""
    yield from _pg_database(pg_admin_url, template=pg_template)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database for this test, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "nodeops.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        template = request.getfixturevalue("pg_template")
        yield from _pg_database(request.getfixturevalue("pg_admin_url"), template=template)


@pytest.fixture(scope="session")
def broker_admin_url() -> str:
    url = os.environ.get(BROKER_ENV, "")
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{BROKER_ENV} is not set: run the suite with `make test`, which starts Redis")
        pytest.skip(f"{BROKER_ENV} not set (make test sets it)")
    if urlsplit(url).scheme != "redis":
        pytest.fail(f"{BROKER_ENV} must be a redis:// URL (scripts/test-redis.sh url prints one)")
    return url


class RedisDatabases:
    """The numbered databases of the test Redis, handed out one per test.

    Database 0 holds the claims (``SET NX`` with an expiry), so a run started from another checkout never gets a
    number this run holds. Numbers go round from the one after the last handed out, so the next test does not get
    the database a straggler of the previous test (a process still shutting down) may still write to.
    """

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.admin = redis.Redis.from_url(admin_url)
        self.count = int(self.admin.config_get("databases")["databases"])
        self.next_number = 1

    def url(self, number: int) -> str:
        return urlsplit(self.admin_url)._replace(path=f"/{number}").geturl()

    def claim(self) -> int:
        """Claim a database number no other test holds, and empty its database."""
        for _ in range(self.count - 1):
            number = self.next_number
            self.next_number = number % (self.count - 1) + 1
            if self.admin.set(self._claim_key(number), os.getpid(), nx=True, ex=BROKER_CLAIM_TTL_S):
                self._empty(number)
                return number
        pytest.fail(f"all {self.count - 1} databases of the test Redis are claimed by other test runs")

    def release(self, number: int) -> None:
        self._empty(number)
        self.admin.delete(self._claim_key(number))

    def close(self) -> None:
        self.admin.close()

    def _empty(self, number: int) -> None:
        with redis.Redis.from_url(self.url(number)) as client:
            client.flushdb()

    @staticmethod
    def _claim_key(number: int) -> str:
        return f"nodeops-test:database:{number}"


@pytest.fixture(scope="session")
def redis_databases(broker_admin_url: str) -> Iterator[RedisDatabases]:
    databases = RedisDatabases(broker_admin_url)
    yield databases
    databases.close()


@pytest.fixture
def broker_url(redis_databases: RedisDatabases) -> Iterator[str]:
    """A Redis URL for this test alone: a database no other test uses, empty when the test starts."""
    number = redis_databases.claim()
    try:
        yield redis_databases.url(number)
    finally:
        redis_databases.release(number)


@pytest.fixture
def settings(tmp_path: Path, database_url: str, listen_socket: socket.socket) -> Settings:
    """Test settings on the port ``live_server`` listens on (agents report there)."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=TEST_SECRET_KEY,  # type: ignore[arg-type]
        time_zone=TEST_TIME_ZONE,
        port=listen_socket.getsockname()[1],
    )


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = Services.build(settings)
    yield built
    built.close()
