"""PostgreSQL's statement timeout (NODEOPS_DB_STATEMENT_TIMEOUT_S): a statement that runs past it, or waits past it
for a lock, fails with a StoreError saying so, on the pool's connections, the reader threads' and the event
loop's alike; the connection serves the next statement; the URL's own setting wins; migrations have no limit."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from nodeops.errors import StoreError, TransientStoreError
from nodeops.store import migrate
from nodeops.store.db import Database

TIMEOUT_S = 0.3
CANCELLED = "ran longer than NODEOPS_DB_STATEMENT_TIMEOUT_S allows"


@pytest.fixture
def database(pg_database_url) -> Iterator[Database]:
    database = Database.connect(pg_database_url, pool_size=2, statement_timeout_s=TIMEOUT_S)
    yield database
    database.dispose()


def driver_url(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def sleep_in_session(database: Database, seconds: float) -> None:
    with database.session() as session:
        session.execute(sa.text("SELECT pg_sleep(:s)"), {"s": seconds})


def test_a_statement_past_the_timeout_fails_saying_so_and_the_connection_serves_the_next(database):
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        sleep_in_session(database, 5)
    assert time.monotonic() - started < 2
    assert CANCELLED in caught.value.message
    assert isinstance(caught.value, TransientStoreError)  # the log writer and the claims wait it out, then retry
    assert "pg_sleep" not in caught.value.message  # the statement's text stays in the log, not in the answer
    sleep_in_session(database, 0.05)  # under the limit: fine, on the same pool
    with database.session() as session:
        assert session.execute(sa.text("SHOW statement_timeout")).scalar_one() == "300ms"


def test_the_raw_read_connections_have_the_timeout_too(database):
    with pytest.raises(StoreError) as caught, database.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(5)")
    assert CANCELLED in caught.value.message
    with database.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone()[0] == 1


def test_the_event_loops_connections_have_the_timeout_too(database):
    async def show() -> str:
        conn = await database._connect_on_loop()
        try:
            cursor = await conn.execute("SHOW statement_timeout")
            return str((await cursor.fetchone())[0])
        finally:
            await conn.close()

    assert asyncio.run(show()) == "300ms"


def test_waiting_for_a_lock_past_the_timeout_fails_instead_of_hanging(database, pg_database_url):
    with psycopg.connect(driver_url(pg_database_url)) as holder:
        holder.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(StoreError) as caught, database.session() as session:
            session.execute(sa.text("SELECT count(*) FROM jobs"))
        assert time.monotonic() - started < 2
        assert CANCELLED in caught.value.message
        holder.rollback()
    with database.session() as session:
        assert session.execute(sa.text("SELECT count(*) FROM jobs")).scalar_one() == 0


@pytest.mark.parametrize(
    ("url_options", "timeout_s", "shown"),
    [
        ("-c statement_timeout=7s", TIMEOUT_S, "7s"),  # the URL's own setting wins
        (None, 0, "0"),  # zero means no limit
    ],
)
def test_the_statement_timeout_each_connection_gets(pg_database_url, url_options, timeout_s, shown):
    url = sa.make_url(pg_database_url)
    if url_options is not None:
        url = url.update_query_dict({"options": url_options})
    database = Database.connect(url.render_as_string(hide_password=False), statement_timeout_s=timeout_s)
    try:
        with database.session() as session:
            assert session.execute(sa.text("SHOW statement_timeout")).scalar_one() == shown
    finally:
        database.dispose()


def test_migrations_run_without_the_limit(fresh_pg_url):
    """A migration waiting for a lock longer than the timeout still completes (a big table's rewrite would too)."""
    database = Database.connect(fresh_pg_url, statement_timeout_s=TIMEOUT_S)
    try:
        migrate.upgrade(database)
        with psycopg.connect(driver_url(fresh_pg_url)) as holder:
            holder.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
            release = threading.Timer(3 * TIMEOUT_S, holder.rollback)
            release.start()
            started = time.monotonic()
            migrate.downgrade(database, "base")
            assert time.monotonic() - started >= 3 * TIMEOUT_S - 0.05  # it waited for the lock, past the limit
            release.join()
        assert migrate.schema_problem(database) is not None
        migrate.upgrade(database)
        assert migrate.schema_problem(database) is None
    finally:
        database.dispose()
