"""PostgreSQL's connection pool: a connection that rested in the pool is pinged before it is handed out, one
used again at once is not, and a connection the server cut is replaced either way."""

from __future__ import annotations

import time

import psycopg
import pytest
import sqlalchemy as sa

from nodeops.store import db as store_db
from nodeops.store.db import Database


@pytest.fixture
def database(pg_admin_url):
    database = Database.connect(pg_admin_url, pool_size=2)
    yield database
    database.engine.dispose()


@pytest.fixture
def killer(pg_admin_url):
    """A connection of its own that ends other backends, as a server restart or a network cut would."""
    url = sa.make_url(pg_admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        yield lambda pid: conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def backend(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def pings(database: Database) -> list[int]:
    """Count the pings: libpq's empty queries sent on checkout."""
    seen: list[int] = []
    real = store_db._ping_if_idle

    def counting(dbapi_conn, record, proxy) -> None:
        before = record.info.get("checked_in", 0.0)
        real(dbapi_conn, record, proxy)
        if time.monotonic() - before >= store_db.PING_AFTER_IDLE_S:
            seen.append(1)

    sa.event.remove(database.engine, "checkout", real)
    sa.event.listen(database.engine, "checkout", counting)
    return seen


def test_a_connection_used_again_at_once_is_not_pinged(database):
    seen = pings(database)
    backend(database)  # a new connection: never checked in, so it counts as rested
    first = len(seen)
    for _ in range(20):
        backend(database)
    assert len(seen) == first


def test_a_rested_connection_is_pinged_and_replaced_when_the_server_cut_it(database, killer, monkeypatch):
    monkeypatch.setattr(store_db, "PING_AFTER_IDLE_S", 0.2)
    before = backend(database)
    killer(before)
    time.sleep(0.3)
    after = backend(database)  # no error: the ping found it dead and the pool opened another
    assert after != before


def test_a_connection_cut_while_busy_fails_one_statement_then_the_pool_recovers(database, killer):
    before = backend(database)
    killer(before)
    with pytest.raises(sa.exc.OperationalError):
        backend(database)  # used again at once: not pinged, its statement meets the cut
    assert backend(database) != before
