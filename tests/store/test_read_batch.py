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
from nodeops.store.db import AheadRead
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

    made_up = AheadRead(sql="SELECT 1", params=(), answers=lambda _rows: answered)
    results = services.db.read_batch([count, count, other, count], ahead=[made_up])
    assert results == [41, 41, 0, 41]


def test_an_ahead_read_that_fails_leaves_each_read_to_ask_for_itself(services, record_id):
    pg_only(services)

    failing = AheadRead(sql="SELECT no_such_column FROM step_logs", params=(), answers=lambda _rows: {})
    assert services.db.read_batch([chunks_of(services, record_id)], ahead=[failing]) == [1]


def ahead_count(services, record_id: int) -> tuple[AheadRead, object]:
    """An ahead statement (really run) that answers ``chunks_of``'s statement for ``record_id``, and that read."""
    sql = COUNT_CHUNKS.format(p="%s")
    ahead = AheadRead(
        sql="SELECT COUNT(*) + 40 FROM step_logs WHERE record_id = %s",  # made up: tells them from the server's
        params=(record_id,),
        answers=lambda rows: {(sql, (record_id,)): list(rows)},
    )
    return ahead, chunks_of(services, record_id)


def on_thread(fn):
    def read(cur):
        return fn(cur), threading.current_thread().name

    return read


async def test_a_batch_answered_ahead_is_read_on_the_loop(services, record_id):
    """The ahead statement runs on one of the loop's own connections, and every read it answers runs on the loop:
    no thread."""
    pg_only(services)
    ahead, count = ahead_count(services, record_id)
    results = await services.db.read_batch_later([on_thread(count)] * 3, ahead=[ahead])
    assert results == [(41, threading.current_thread().name)] * 3


async def test_a_read_asking_for_more_goes_to_a_reader_thread_with_the_reads_after_it(services, record_id):
    pg_only(services)
    ahead, count = ahead_count(services, record_id)

    def other(cur) -> int:
        cur.execute(COUNT_CHUNKS.format(p="%s"), (record_id + 1,))
        return int(cur.fetchone()[0])

    def refused(_cur):
        raise JobNotFound(job_id=7)

    results = await services.db.read_batch_later(
        [on_thread(count), on_thread(refused), on_thread(other), on_thread(count)], ahead=[ahead]
    )
    loop_thread = threading.current_thread().name
    assert results[0] == (41, loop_thread)
    assert isinstance(results[1], JobNotFound)  # answered on the loop, as its error
    (value, thread), (again, thread_after) = results[2], results[3]
    assert (value, again) == (0, 41)  # the rows read ahead still answer the reads sent on
    assert thread == thread_after and thread.startswith("nodeops-read")


async def test_without_ahead_or_when_it_fails_the_batch_is_read_in_a_reader_thread(services, record_id):
    pg_only(services)
    count = chunks_of(services, record_id)
    threads = await services.db.read_batch_later([on_thread(count)] * 2)
    assert [t for _, t in threads] == [threads[0][1]] * 2 and threads[0][1].startswith("nodeops-read")
    failing = AheadRead(sql="SELECT no_such_column FROM step_logs", params=(), answers=lambda _rows: {})
    results = await services.db.read_batch_later([on_thread(count)], ahead=[failing])
    assert results[0][0] == 1 and results[0][1].startswith("nodeops-read")


async def test_a_loop_connection_killed_by_the_server_is_replaced(services, record_id):
    """After ``pg_terminate_backend`` on the loop's connection, the next batch is still answered (in a reader
    thread, without an error), and the one after is read on the loop again, on a new connection."""
    pg_only(services)
    ahead, count = ahead_count(services, record_id)
    loop_thread = threading.current_thread().name
    assert await services.db.read_batch_later([on_thread(count)], ahead=[ahead]) == [(41, loop_thread)]
    with services.db.engine.connect() as conn:
        killed = conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'nodeops-read-loop'"
            )
        ).all()
    assert killed
    await asyncio.sleep(0.1)
    ((value, _thread),) = await services.db.read_batch_later([on_thread(count)], ahead=[ahead])
    assert value in (1, 41)  # 1: read in a reader thread, without the ahead rows; never an error
    assert await services.db.read_batch_later([on_thread(count)], ahead=[ahead]) == [(41, loop_thread)]


async def test_dispose_closes_the_loop_connections(services, record_id):
    pg_only(services)
    ahead, count = ahead_count(services, record_id)
    await services.db.read_batch_later([count], ahead=[ahead])

    def loop_connections() -> int:
        with services.db.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'nodeops-read-loop'")
                ).scalar_one()
            )

    assert loop_connections() == 1
    services.db.dispose()
    for _ in range(50):
        if loop_connections() == 0:
            break
        await asyncio.sleep(0.05)
    assert loop_connections() == 0


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
