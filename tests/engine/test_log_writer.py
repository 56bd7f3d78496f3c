"""The engine's LogWriter: one flush of many hosts' lines and status changes lands as if each had been written
in order, and ``flush`` returns only once everything queued before it is committed."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from nodeops.domain.status import Status
from nodeops.engine.logwriter import LogWriter
from tests.support.factories import make_job

T0 = datetime(2024, 5, 1, 2, 0, 0, tzinfo=UTC)


def _rows(services, sql: str, **params: object) -> list[tuple[object, ...]]:
    with services.db.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql), params).all()]


def _revision(services, record_id: int) -> int:
    return int(_rows(services, "SELECT revision FROM instance_records WHERE id = :r", r=record_id)[0][0])


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
