"""``refresh_job`` under contention: two processes finishing the last hosts of a job at once each recount it, and
the second recount reads after the first commits, so the job never stays RUNNING with every host finished."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from nodeops.domain.plans import JobType, plan_steps
from nodeops.domain.status import Status
from nodeops.store import jobs, pipelines
from nodeops.store.db import Database
from nodeops.store.models import utcnow

ROUNDS = 200


@pytest.fixture
def two_databases(pg_database_url: str) -> Iterator[tuple[Database, Database]]:
    """Two handles on one PostgreSQL database, as two worker processes have."""
    first, second = Database.connect(pg_database_url), Database.connect(pg_database_url)
    yield first, second
    first.dispose()
    second.dispose()


def running_job(db: Database) -> tuple[int, list[int]]:
    """A RUNNING job with two RUNNING records."""
    instances = [jobs.NewInstance(instance_id=f"host|instance|host|{n}", bk_host_id=n) for n in (1, 2)]
    with db.session() as session:
        created = jobs.create_job(
            session,
            job_type=JobType.UPGRADE_AGENT,
            created_by="admin",
            from_system="esb_test",
            bk_biz_scope=[2],
            instances=instances,
            steps=plan_steps(JobType.UPGRADE_AGENT),
        )
        jobs.set_job_status(session, job_id=created.job_id, status=Status.RUNNING)
        record_ids = list(created.record_ids.values())
        jobs.write_progress(
            db, session, records=[jobs.RecordProgress(rid, Status.RUNNING, utcnow(), None) for rid in record_ids]
        )
    return created.job_id, record_ids


def finish_and_recount(db: Database, barrier: threading.Barrier, job_id: int, record_id: int, ends: Status) -> None:
    """What a worker does when a host's pipeline ends: the record's end in one transaction (the log writer's),
    then the job's recount in another."""
    barrier.wait(timeout=10)
    with db.session() as session:
        jobs.write_progress(db, session, records=[jobs.RecordProgress(record_id, ends, None, utcnow())])
    with db.session() as session:
        pipelines.refresh_job(session, job_id=job_id)


def worker(errors: list[BaseException], *args: object) -> None:
    try:
        finish_and_recount(*args)  # type: ignore[arg-type]
    except BaseException as exc:
        errors.append(exc)


def test_two_workers_ending_a_jobs_last_hosts_at_once_never_leave_it_running(two_databases):
    first, second = two_databases
    seen: set[str] = set()
    for round_ in range(ROUNDS):
        job_id, (a, b) = running_job(first)
        ends = (Status.SUCCESS, Status.FAILED if round_ % 2 else Status.SUCCESS)
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=worker, args=(errors, first, barrier, job_id, a, ends[0])),
            threading.Thread(target=worker, args=(errors, second, barrier, job_id, b, ends[1])),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors, errors
        with first.session() as session:
            status = jobs.job_status(session, job_id)
        expected = Status.SUCCESS if ends[1] is Status.SUCCESS else Status.PART_FAILED
        assert status == expected.value, f"round {round_}: job {job_id} is {status}"
        seen.add(status)
    assert seen == {Status.SUCCESS.value, Status.PART_FAILED.value}


def test_a_recount_waits_for_the_recount_in_progress_and_reads_what_it_wrote(two_databases):
    # the losing order, made certain: the first worker has read its job's records, not yet written; the second
    # ends the last host and recounts meanwhile. Unlocked, the second wrote SUCCESS, then the first RUNNING.
    first, second = two_databases
    job_id, (a, b) = running_job(first)
    with first.session() as session:
        jobs.write_progress(first, session, records=[jobs.RecordProgress(a, Status.SUCCESS, None, utcnow())])
    finished = threading.Event()
    errors: list[BaseException] = []

    def second_worker() -> None:
        try:
            finish_and_recount(second, threading.Barrier(1), job_id, b, Status.SUCCESS)
        except BaseException as exc:
            errors.append(exc)
        finally:
            finished.set()

    with first.session() as session:
        assert pipelines.refresh_job(session, job_id=job_id) is Status.RUNNING  # b is still RUNNING here
        worker = threading.Thread(target=second_worker)
        worker.start()
        assert not finished.wait(1.0)  # its recount waits for this one
    worker.join(timeout=10)
    assert finished.is_set() and not errors, errors
    with first.session() as session:
        assert jobs.job_status(session, job_id) == Status.SUCCESS.value
