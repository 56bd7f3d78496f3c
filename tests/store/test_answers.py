"""Sealed answers, on SQLite and PostgreSQL: a finished record's log API answer stored beside it is the same
bytes the reader renders, is sealed by the engine's writer when the record finishes, and is never served once
the record changed again or for another zone."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy import select

from nodeops.domain.answer import AnswerRenderer
from nodeops.domain.instance_id import parse_instance_id
from nodeops.domain.status import Status
from nodeops.engine.logwriter import LogWriter
from nodeops.service.container import Services
from nodeops.store import answers, jobs
from nodeops.store.log_reads import LogReads
from nodeops.store.models import RecordAnswer
from tests.support.factories import StepRun, make_job

SHANGHAI = ZoneInfo("Asia/Shanghai")

FINISHED = [
    StepRun(Status.SUCCESS, "2024-05-01 10:00:00", "2024-05-01 10:00:01", "[2024-05-01 10:00:00 INFO] 开始"),
    StepRun(Status.FAILED, "2024-05-01 10:00:01", "2024-05-01 10:00:09", "[2024-05-01 10:00:01 ERROR] 失败"),
]


def _answer(services, job, zone="Asia/Shanghai"):
    """The sealed answer the log API's lookup finds for the job's instance (None when there is none)."""
    with services.db.cursor() as cur:
        found = LogReads(services.db).look_up(cur, job.job_id, parse_instance_id(job.instance_id), None, zone)
    assert found.record is not None
    return found.record.answer


def _rendered(services, job):
    with services.db.cursor() as cur:
        steps = LogReads(services.db).fetch_steps(cur, job.record_id)
    return AnswerRenderer(SHANGHAI).render(steps)


def _seal(services, *record_ids):
    with services.db.session() as session:
        return answers.seal(session, LogReads(services.db), AnswerRenderer(SHANGHAI), record_ids)


def test_a_sealed_answer_is_the_rendered_answer_byte_for_byte(services):
    job = make_job(services, runs=FINISHED, record_status=Status.FAILED)
    assert _answer(services, job) is None

    assert _seal(services, job.record_id) == 1
    assert _answer(services, job) == _rendered(services, job)


def test_records_still_pending_or_running_are_not_sealed(services):
    running = make_job(services, runs=[*FINISHED[:1], StepRun(Status.RUNNING, "2024-05-01 10:00:01")])
    pending = make_job(services, runs=[], bk_host_id=2, ip="127.0.0.2")
    assert _seal(services, running.record_id, pending.record_id) == 0
    assert _answer(services, running) is None and _answer(services, pending) is None


def test_a_write_after_sealing_makes_the_answer_stale_until_sealed_again(services):
    job = make_job(services, runs=FINISHED, record_status=Status.FAILED)
    _seal(services, job.record_id)

    with services.db.session() as session:  # a late line, as a retried step would add
        jobs.write_progress(services.db, session, chunks=[(job.record_id, 1, "[2024-05-01 10:00:10 INFO] late")])
    assert _answer(services, job) is None
    assert b"late" in _rendered(services, job)

    _seal(services, job.record_id)  # sealing again replaces the row, never adds a second
    assert _answer(services, job) == _rendered(services, job)
    with services.db.session() as session:
        assert len(session.scalars(select(RecordAnswer).where(RecordAnswer.record_id == job.record_id)).all()) == 1


def test_an_answer_sealed_in_another_zone_is_not_served(services):
    job = make_job(services, runs=FINISHED, record_status=Status.FAILED)
    _seal(services, job.record_id)
    assert _answer(services, job, zone="UTC") is None
    assert _answer(services, job, zone="Asia/Shanghai") is not None


async def test_the_engine_writer_seals_a_record_in_the_batch_that_finishes_it(services):
    job = make_job(services, runs=[*FINISHED[:1], StepRun(Status.RUNNING, "2024-05-01 10:00:01")])
    writer = LogWriter(services.db, SHANGHAI)
    writer.line(job.record_id, 1, "ERROR", "exit status 3")
    writer.step(job.record_id, 1, Status.FAILED)
    await writer.flush()
    assert _answer(services, job) is None  # the record itself is still RUNNING

    writer.record(job.record_id, Status.FAILED)
    writer.line(job.record_id, 1, "INFO", "written in the same batch, after the record's status")
    await writer.flush()
    sealed = _answer(services, job)
    assert sealed == _rendered(services, job)
    assert b"written in the same batch" in sealed


async def test_the_engine_seals_with_the_log_api_settings_so_its_answers_are_served(settings):
    capped = Services.build(settings.model_copy(update={"log_step_max_bytes": 64}))
    try:
        job = make_job(capped, runs=[*FINISHED[:1], StepRun(Status.RUNNING, "2024-05-01 10:00:01")])
        writer = capped.engine.writer
        writer.line(job.record_id, 1, "ERROR", "x" * 200)
        writer.step(job.record_id, 1, Status.FAILED)
        writer.record(job.record_id, Status.FAILED)
        await writer.flush()
        with capped.db.cursor() as cur:
            found = capped.logs.reads.look_up(
                cur, job.job_id, parse_instance_id(job.instance_id), None, capped.logs.renderer.zone
            )
        assert found.record is not None and found.record.answer is not None  # sealed under the same settings
        assert b"more bytes of this step not shown" in found.record.answer
    finally:
        capped.close()
