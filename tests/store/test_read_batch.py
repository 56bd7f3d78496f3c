"""``Database.read_batch``: several reads in one snapshot on SQLite (the log lane's), each failing on its own."""

from __future__ import annotations

import pytest

from nodeops.domain.plans import JobType
from nodeops.domain.status import Status
from nodeops.errors import JobNotFound, StoreError
from nodeops.store import jobs
from tests.support.factories import StepRun, make_job

COUNT_CHUNKS = "SELECT COUNT(*) FROM step_logs WHERE record_id = ?"


@pytest.fixture
def record_id(services) -> int:
    """A running record with one chunk of log, on SQLite (``read_batch`` is SQLite's)."""
    if not services.db.reads_inline:
        pytest.skip("read_batch is SQLite's (PostgreSQL reads in threads)")
    job = make_job(
        services,
        runs=[StepRun(Status.RUNNING, "2024-05-01 10:00:00", log="line 1")],
        job_type=JobType.UPGRADE_AGENT,
    )
    return job.record_id


def chunks_of(record_id: int):
    def count(cur) -> int:
        cur.execute(COUNT_CHUNKS, (record_id,))
        return int(cur.fetchone()[0])

    return count


def test_every_read_of_a_batch_sees_the_same_snapshot(services, record_id):
    count = chunks_of(record_id)

    def append_then_count(cur) -> int:
        with services.db.session() as session:  # another connection commits in the middle of the batch
            jobs.write_progress(services.db, session, chunks=[(record_id, 0, "line 2")])
        return count(cur)

    assert services.db.read_batch([count, append_then_count, count]) == [1, 1, 1]
    assert services.db.read_batch([count]) == [2]  # the next batch, a new snapshot


def test_a_failing_read_fails_alone(services, record_id):
    count = chunks_of(record_id)

    def not_found(_cur) -> int:
        raise JobNotFound(job_id=9)

    def bad_sql(cur) -> int:
        cur.execute("SELECT no_such_column FROM step_logs")
        return 0

    first, missing, broken, last = services.db.read_batch([count, not_found, bad_sql, count])
    assert (first, last) == (1, 1)
    assert isinstance(missing, JobNotFound)
    assert isinstance(broken, StoreError)
    assert "no_such_column" not in str(broken)  # the driver's text goes to the log, not to callers
    assert services.db.read_batch([count]) == [1]  # the connection is usable after the failures


def test_postgresql_has_no_batch_reads(services):
    if services.db.reads_inline:
        pytest.skip("PostgreSQL only")
    with pytest.raises(RuntimeError, match="SQLite"):
        services.db.read_batch([lambda cur: 1])
