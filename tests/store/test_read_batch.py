"""``Database.read_batch`` (the log lane's): several reads at once, each failing on its own; on SQLite in one
snapshot, on PostgreSQL in a reader thread with some statements answered ahead; a lost PostgreSQL connection is
let go and the next read opens another."""

from __future__ import annotations

import asyncio
import threading

import pytest
import sqlalchemy as sa

from nodeops.domain.plans import JobType
from nodeops.domain.status import Status
from nodeops.errors import JobNotFound, StoreError
from nodeops.store import jobs
from tests.support.factories import StepRun, make_job

COUNT_CHUNKS = "SELECT COUNT(*) FROM step_logs WHERE record_id = {p}"


@pytest.fixture
def record_id(services) -> int:
    """A running record with one chunk of log."""
    job = make_job(
        services,
        runs=[StepRun(Status.RUNNING, "2024-05-01 10:00:00", log="line 1")],
        job_type=JobType.UPGRADE_AGENT,
    )
    return job.record_id


def chunks_of(services, record_id: int):
    sql = COUNT_CHUNKS.format(p=services.db.paramstyle)

    def count(cur) -> int:
        cur.execute(sql, (record_id,))
        return int(cur.fetchone()[0])

    return count


def test_every_read_of_a_batch_sees_the_same_snapshot_on_sqlite(services, record_id):
    if not services.db.is_sqlite:
        pytest.skip("SQLite's: on PostgreSQL each statement reads the latest commit, as Database.read does")
    count = chunks_of(services, record_id)

    def append_then_count(cur) -> int:
        with services.db.session() as session:  # another connection commits in the middle of the batch
            jobs.write_progress(services.db, session, chunks=[(record_id, 0, "line 2")])
        return count(cur)

    assert services.db.read_batch([count, append_then_count, count]) == [1, 1, 1]
    assert services.db.read_batch([count]) == [2]  # the next batch, a new snapshot


def test_a_failing_read_fails_alone(services, record_id):
    count = chunks_of(services, record_id)

    def not_found(_cur) -> int:
        raise JobNotFound(job_id=9)

    def bad_sql(cur) -> int:
        cur.execute("SELECT no_such_column FROM step_logs")
        return 0

    first, missing, broken, last = services.db.read_batch([count, not_found, bad_sql, count])
    assert (first, last) == (1, 1)  # on PostgreSQL, after the failed statement ended its transaction
    assert isinstance(missing, JobNotFound)
    assert isinstance(broken, StoreError)
    assert "no_such_column" not in str(broken)  # the driver's text goes to the log, not to callers
    assert services.db.read_batch([count]) == [1]  # the connection is usable after the failures


def pg_only(services) -> None:
    if services.db.is_sqlite:
        pytest.skip("PostgreSQL's")


def test_statements_answered_ahead_are_not_asked_again(services, record_id):
    """A read executing a statement ``ahead`` answered gets those rows (here made up, to tell them from the
    server's), twice if it asks twice; any other statement goes to the server."""
    pg_only(services)
    sql = COUNT_CHUNKS.format(p="%s")
    answered = {(sql, (record_id,)): [(41,)]}
    count = chunks_of(services, record_id)

    def other(cur) -> int:
        cur.execute(sql, (record_id + 1,))
        return int(cur.fetchone()[0])

    results = services.db.read_batch([count, count, other, count], ahead=lambda cur: answered)
    assert results == [41, 41, 0, 41]


def test_an_ahead_read_that_fails_leaves_each_read_to_ask_for_itself(services, record_id):
    pg_only(services)

    def failing(cur):
        cur.execute("SELECT no_such_column FROM step_logs")
        return {}

    assert services.db.read_batch([chunks_of(services, record_id)], ahead=failing) == [1]


async def test_a_batch_is_read_in_a_reader_thread_on_postgresql(services, record_id):
    pg_only(services)
    threads = await services.db.read_batch_later([lambda cur: threading.current_thread().name] * 2)
    assert threads[0] == threads[1] and threads[0].startswith("nodeops-read")


async def test_a_reader_connection_killed_by_the_server_is_replaced(services, record_id):
    """After ``pg_terminate_backend`` (as when the server restarts), the reads running on that connection get a
    StoreError, and the next ones open a new connection and succeed: the log API does not stay broken."""
    pg_only(services)
    count = chunks_of(services, record_id)

    def backend(cur) -> int:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])

    before = await services.db.read(backend)
    with services.db.engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
    await asyncio.sleep(0.1)
    outcomes = []
    for _ in range(3):  # whichever reader thread had that connection fails once, then reconnects
        try:
            outcomes.append(await services.db.read(count))
        except StoreError:
            outcomes.append("failed")
        outcomes.extend(await services.db.read_batch_later([count, count]))
    assert outcomes.count("failed") + sum(isinstance(o, StoreError) for o in outcomes) <= 2
    assert outcomes[-3:] == [1, 1, 1]
    assert await services.db.read(backend) != before
