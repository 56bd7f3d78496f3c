"""The engine's LogWriter: one flush of many hosts' lines and status changes lands as if each had been written
in order, and ``flush`` returns only once everything queued before it is committed."""

from __future__ import annotations

import asyncio
import re
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import make_url, text

from nodeops.domain.status import Status
from nodeops.engine.logwriter import MAX_FAILED_WRITES, LogWriter
from nodeops.errors import StoreError
from nodeops.store.db import Database
from tests.support.factories import make_job

T0 = datetime(2024, 5, 1, 2, 0, 0, tzinfo=UTC)


def _rows(services, sql: str, **params: object) -> list[tuple[object, ...]]:
    with services.db.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql), params).all()]


def _revision(services, record_id: int) -> int:
    return int(_rows(services, "SELECT revision FROM instance_records WHERE id = :r", r=record_id)[0][0])


class _Writes:
    count = 0


def _count_writes(writer: LogWriter) -> _Writes:
    """Count the writer's transactions (its ``_write`` calls, each still writing)."""
    writes, original = _Writes(), writer._write

    def counted(batch):
        writes.count += 1
        original(batch)

    writer._write = counted  # type: ignore[method-assign]
    return writes


async def test_one_flush_merges_each_step_and_record_and_keeps_every_line_in_order(services):
    first = make_job(services, runs=[], bk_host_id=1, ip="127.0.0.1")
    second = make_job(services, runs=[], bk_host_id=2, ip="127.0.0.2")
    before = {job.record_id: _revision(services, job.record_id) for job in (first, second)}
    writer = LogWriter(services.db, UTC)
    a, b = first.record_id, second.record_id

    writer.record(a, Status.RUNNING, start_at=T0)
    writer.step(a, 0, Status.RUNNING, start_at=T0)
    writer.line(a, 0, "INFO", "a0 one")
    writer.record(b, Status.RUNNING, start_at=T0)
    writer.line(b, 0, "INFO", "b0 one")
    writer.line(a, 0, "INFO", "a0 two")
    writer.line(a, 0, "INFO", "a0 three")
    writer.step(a, 0, Status.SUCCESS, finish_at=T0 + timedelta(seconds=1))
    writer.step(a, 1, Status.RUNNING, start_at=T0 + timedelta(seconds=1))
    writer.line(a, 1, "ERROR", "a1 failed")
    writer.step(a, 1, Status.FAILED, finish_at=T0 + timedelta(seconds=2))
    writer.record(a, Status.FAILED, finish_at=T0 + timedelta(seconds=2))
    await writer.flush()

    steps = _rows(
        services,
        "SELECT record_id, step_index, status, start_at IS NOT NULL, finish_at IS NOT NULL FROM record_steps "
        "WHERE record_id IN (:a, :b) AND step_index < 3 ORDER BY record_id, step_index",
        a=a,
        b=b,
    )
    assert steps == [
        (a, 0, "SUCCESS", True, True),  # RUNNING then SUCCESS in one batch: both times kept
        (a, 1, "FAILED", True, True),
        (a, 2, "PENDING", False, False),
        (b, 0, "PENDING", False, False),  # only lines: the status is untouched
        (b, 1, "PENDING", False, False),
        (b, 2, "PENDING", False, False),
    ]
    records = _rows(
        services,
        "SELECT id, status, start_at IS NOT NULL, finish_at IS NOT NULL FROM instance_records "
        "WHERE id IN (:a, :b) ORDER BY id",
        a=a,
        b=b,
    )
    assert records == [(a, "FAILED", True, True), (b, "RUNNING", True, False)]
    logs = _rows(
        services,
        "SELECT record_id, step_index, text FROM step_logs WHERE record_id IN (:a, :b) "
        "ORDER BY record_id, step_index, id",
        a=a,
        b=b,
    )
    assert [(r, s, [line.split("] ", 1)[1] for line in str(t).split("\n")]) for r, s, t in logs] == [
        (a, 0, ["a0 one", "a0 two", "a0 three"]),
        (a, 1, ["a1 failed"]),
        (b, 0, ["b0 one"]),
    ]
    stamped = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|ERROR)\] ")
    assert all(stamped.match(line) for _r, _s, t in logs for line in str(t).split("\n"))
    assert _revision(services, a) > before[a] and _revision(services, b) > before[b]


async def test_flush_waits_for_the_batch_an_earlier_flush_is_still_writing(services):
    job = make_job(services, runs=[])
    writer = LogWriter(services.db, UTC)
    writer.step(job.record_id, 0, Status.RUNNING, start_at=T0)
    writer.line(job.record_id, 0, "INFO", "started")
    earlier = asyncio.create_task(writer.flush())  # takes the batch and writes it in a thread
    await asyncio.sleep(0)
    await writer.flush()  # nothing new queued: returns only once the earlier batch is committed
    assert _rows(
        services, "SELECT status FROM record_steps WHERE record_id = :r AND step_index = 0", r=job.record_id
    ) == [("RUNNING",)]
    await earlier


async def test_each_physical_line_of_a_message_gets_its_own_stamp_and_level(services):
    job = make_job(services, runs=[], bk_host_id=1, ip="127.0.0.1")
    writer = LogWriter(services.db, UTC)
    writer.line(job.record_id, 0, "ERROR", "连接失败: Traceback\n  line two\r\nline three")
    writer.line(job.record_id, 0, "INFO", "")
    await writer.flush()

    rows = _rows(services, "SELECT text FROM step_logs WHERE record_id = :r ORDER BY id", r=job.record_id)
    logged = "\n".join(str(row[0]) for row in rows)
    lines = logged.split("\n")
    stamp = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (ERROR|INFO)\] "
    assert [re.sub(stamp, "", line) for line in lines] == ["连接失败: Traceback", "  line two", "line three", ""]
    assert all(re.match(stamp, line) for line in lines)


def _texts(services, record_id: int) -> list[tuple[int, str]]:
    """Every line of the record's log as ``(step_index, text after the stamp)``, in the order they were written."""
    rows = _rows(services, "SELECT step_index, text FROM step_logs WHERE record_id = :r ORDER BY id", r=record_id)
    return [(int(s), line.split("] ", 1)[1]) for s, t in rows for line in str(t).split("\n")]


def _execute(services, *statements: str) -> None:
    with services.db.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


async def test_a_flush_failing_for_a_passing_reason_is_written_again_and_later_lines_follow_it(services):
    if services.db.is_sqlite:
        pytest.skip("a real serialization failure (SQLSTATE 40001) is PostgreSQL's")
    job = make_job(services, runs=[])
    # the first two transactions that update a record fail as a serialization failure does; a sequence counts the
    # tries, as it is not rolled back with them
    _execute(
        services,
        "CREATE SEQUENCE progress_tries",
        "CREATE FUNCTION fail_twice() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF nextval('progress_tries') <= 2 THEN "
        "RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER fail_twice BEFORE UPDATE ON instance_records FOR EACH STATEMENT EXECUTE FUNCTION fail_twice()",
    )
    writer = LogWriter(services.db, UTC)
    r = job.record_id
    writer.record(r, Status.RUNNING, start_at=T0)
    writer.step(r, 0, Status.RUNNING, start_at=T0)
    writer.line(r, 0, "INFO", "one\ntwo")
    writer.step(r, 0, Status.SUCCESS, finish_at=T0 + timedelta(seconds=1))
    writer.line(r, 1, "INFO", "three")
    flushing = asyncio.create_task(writer.flush())
    await asyncio.sleep(0.05)  # the first try has failed; the batch waits for its next try
    writer.line(r, 1, "INFO", "four")  # queued while the batch is retried: goes after it
    writer.step(r, 1, Status.FAILED, finish_at=T0 + timedelta(seconds=2))
    writer.record(r, Status.FAILED, finish_at=T0 + timedelta(seconds=2))
    async with asyncio.timeout(5):
        await flushing  # returns once the batch is committed
    assert _rows(services, "SELECT last_value FROM progress_tries") == [(3,)]
    assert _texts(services, r) == [(0, "one"), (0, "two"), (1, "three")]
    await writer.flush()
    _execute(services, "DROP TRIGGER fail_twice ON instance_records")

    assert _texts(services, r) == [(0, "one"), (0, "two"), (1, "three"), (1, "four")]
    steps = _rows(
        services,
        "SELECT step_index, status FROM record_steps WHERE record_id = :r AND step_index < 3 ORDER BY step_index",
        r=r,
    )
    assert steps == [(0, "SUCCESS"), (1, "FAILED"), (2, "PENDING")]
    assert _rows(services, "SELECT status, finish_at IS NOT NULL FROM instance_records WHERE id = :r", r=r) == [
        ("FAILED", True)
    ]


@pytest.fixture
def refuse_poison(services) -> None:
    """A trigger refusing any log chunk that contains 'poison', as a database refuses a row it cannot take."""
    if services.db.is_sqlite:
        _execute(
            services,
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON step_logs WHEN NEW.text LIKE '%poison%' "
            "BEGIN SELECT RAISE(ABORT, 'poison refused'); END",
        )
    else:
        _execute(
            services,
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.text LIKE '%poison%' THEN RAISE EXCEPTION 'poison refused'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON step_logs FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        )


async def test_a_refused_batch_is_written_first_by_the_next_flush_once_the_database_takes_it(services, refuse_poison):
    job = make_job(services, runs=[])
    writer = LogWriter(services.db, UTC)
    r = job.record_id
    writer.line(r, 0, "INFO", "one")
    writer.line(r, 0, "INFO", "poison two")
    with pytest.raises(StoreError):
        await writer.flush()
    writer.line(r, 0, "INFO", "three")
    writer.line(r, 1, "INFO", "four")
    with pytest.raises(StoreError):  # still refused: the lines after it wait
        await writer.flush()
    assert _texts(services, r) == []
    _execute(services, "DROP TRIGGER refuse_poison" + ("" if services.db.is_sqlite else " ON step_logs"))
    await writer.flush()
    assert _texts(services, r) == [(0, "one"), (0, "poison two"), (0, "three"), (1, "four")]


async def test_a_batch_refused_every_time_is_dropped_loudly_and_the_lines_after_it_are_written(
    services, refuse_poison, caplog
):
    job = make_job(services, runs=[])
    writer = LogWriter(services.db, UTC)
    r = job.record_id
    writer.line(r, 0, "INFO", "one")
    writer.line(r, 0, "INFO", "poison two")
    writer.step(r, 0, Status.RUNNING, start_at=T0)
    for n in range(MAX_FAILED_WRITES - 1):
        with pytest.raises(StoreError):
            await writer.flush()
        writer.line(r, 1, "INFO", f"after {n}")
    assert _texts(services, r) == []
    await writer.flush()  # the last refusal drops it; what came after is written
    dropped = [rec for rec in caplog.records if getattr(rec, "action", "") == "log_batch_dropped"]
    assert len(dropped) == 1 and dropped[0].lines == 2 and dropped[0].record_ids == [r]
    assert _texts(services, r) == [(1, f"after {n}") for n in range(MAX_FAILED_WRITES - 1)]
    assert _rows(services, "SELECT status FROM record_steps WHERE record_id = :r AND step_index = 0", r=r) == [
        ("PENDING",)  # the dropped batch's change is gone with it, as the log says
    ]


async def test_pipelines_ending_together_share_one_background_flush(services):
    job = make_job(services, runs=[])
    writer = LogWriter(services.db, UTC, flush_interval_s=0.3)
    writes = _count_writes(writer)
    writer.start()
    try:
        await asyncio.sleep(0.35)  # past one (empty) background flush
        writer.line(job.record_id, 0, "INFO", "first host done")
        first = asyncio.create_task(writer.settled())
        writer.line(job.record_id, 0, "INFO", "second host done")
        second = asyncio.create_task(writer.settled())
        await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
        assert writes.count == 1  # one transaction for both
        assert _texts(services, job.record_id) == [(0, "first host done"), (0, "second host done")]
        writer.line(job.record_id, 0, "INFO", "third")
        await asyncio.wait_for(writer.settled(), timeout=5)
        assert _texts(services, job.record_id)[-1] == (0, "third")
    finally:
        await writer.aclose()


@pytest.mark.parametrize(
    ("first_s", "second_s"), [(0.2, 0.2), (10.0, 0.1)], ids=["settles-within-share-a-flush", "the-soonest-wins"]
)
async def test_settled_within_a_time_is_written_then_in_one_flush_for_those_settling_meanwhile(
    services, first_s: float, second_s: float
):
    """``settled(within_s=...)`` does not wait for the next tick (here 30 s away): the flush comes at the soonest
    time asked for, one transaction for every host that settled meanwhile. A settle with nothing left to write
    asks for no flush, and what is queued after a plain ``settled`` waits for the ticks again."""
    job = make_job(services, runs=[])
    writer = LogWriter(services.db, UTC, flush_interval_s=30)
    writes = _count_writes(writer)
    writer.start()
    loop = asyncio.get_running_loop()
    try:
        writer.line(job.record_id, 0, "INFO", "first host done 完成")
        started = loop.time()
        first = asyncio.create_task(writer.settled(within_s=first_s))
        await asyncio.sleep(0.05)
        writer.line(job.record_id, 0, "INFO", "second host done")
        second = asyncio.create_task(writer.settled(within_s=second_s))
        await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
        soonest = min(first_s, 0.05 + second_s)
        assert soonest - 0.05 <= loop.time() - started < 2.0  # the soonest time asked for, not the 30 s tick
        assert writes.count == 1
        assert _texts(services, job.record_id) == [(0, "first host done 完成"), (0, "second host done")]
        await asyncio.wait_for(writer.settled(within_s=0.05), timeout=1)  # everything is written: returns at once
        await asyncio.sleep(0.3)
        assert writes.count == 1 and writer._soon is None
        writer.line(job.record_id, 0, "INFO", "no hurry")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(writer.settled()), timeout=0.5)
        assert writes.count == 1
    finally:
        await asyncio.wait_for(writer.aclose(), timeout=5)
    assert _texts(services, job.record_id)[-1] == (0, "no hurry")  # closing wrote it


async def test_settled_without_a_background_task_flushes_itself(services):
    job = make_job(services, runs=[])
    writer = LogWriter(services.db, UTC)
    writer.line(job.record_id, 0, "INFO", "alone")
    await writer.settled()
    assert _texts(services, job.record_id) == [(0, "alone")]


async def test_an_idle_writer_sleeps_and_wakes_for_what_is_queued_after_its_idle_time(services):
    """With nothing queued the background task waits without a timer (no flush at all while idle); a line queued
    after a long idle time is written at the next tick, as on a busy writer, and closing an idle writer ends it."""
    job = make_job(services, runs=[])
    writer = LogWriter(services.db, UTC, flush_interval_s=0.1)
    flushes = 0
    original = writer.flush

    async def counted() -> None:
        nonlocal flushes
        flushes += 1
        await original()

    writer.flush = counted  # type: ignore[method-assign]
    writer.start()
    try:
        await asyncio.sleep(0.5)  # five ticks with nothing to write
        assert flushes == 0
        for round_ in range(3):
            writer.line(job.record_id, 0, "INFO", f"after idle {round_} 空闲")
            started = asyncio.get_running_loop().time()
            await asyncio.wait_for(writer.settled(), timeout=5)
            assert asyncio.get_running_loop().time() - started < 1.0  # a tick, a write: not a backstop's seconds
            await asyncio.sleep(0.3)
        assert flushes == 3
        assert [text for _, text in _texts(services, job.record_id)] == [f"after idle {r} 空闲" for r in range(3)]
    finally:
        await asyncio.wait_for(writer.aclose(), timeout=5)
    assert writer._task is None


async def test_a_flush_cancelled_past_the_statement_timeout_waits_the_stall_out_and_loses_nothing(services, caplog):
    if services.db.is_sqlite:
        pytest.skip("the statement timeout is PostgreSQL's (NODEOPS_DB_STATEMENT_TIMEOUT_S)")
    job = make_job(services, runs=[])
    db = Database.connect(services.settings.database_url, statement_timeout_s=0.2)
    driver_url = make_url(services.settings.database_url).set(drivername="postgresql")
    holder = psycopg.connect(driver_url.render_as_string(hide_password=False))
    release = threading.Timer(1.5, holder.rollback)
    try:
        holder.execute("LOCK TABLE step_logs IN ACCESS EXCLUSIVE MODE")  # the database stalls for 1.5 s
        release.start()
        writer = LogWriter(db, UTC)
        writer.line(job.record_id, 0, "INFO", "written once the stall is over")
        async with asyncio.timeout(10):
            await writer.flush()
    finally:
        release.join()
        holder.close()
        db.dispose()
    cancelled = [r for r in caplog.records if getattr(r, "action", "") == "store_error_cancelled"]
    assert cancelled, "the flush was never cancelled: the stall did not last past the statement timeout"
    assert _texts(services, job.record_id) == [(0, "written once the stall is over")]
