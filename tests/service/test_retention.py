"""Retention: old finished jobs go with everything they own, in batches; running jobs are never touched or
blocked; the CLI's dry run only counts."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from sqlalchemy import func, select
from typer.testing import CliRunner

from nodeops.cli.app import app
from nodeops.domain.status import Status
from nodeops.service.retention import clean_up, parse_age
from nodeops.store import jobs
from nodeops.store.models import InstanceRecord, Job, RecordAnswer, RecordStep, StepLog, Subscription, SubscriptionTask
from tests.support.factories import make_seed_job
from tests.support.logs import append, running_job

OLD = datetime.now(UTC) - timedelta(days=40)


def old_job(services, n: int):
    job = make_seed_job(services)  # finished and sealed, with its log
    with services.db.session() as session:
        jobs.set_job_status(session, job_id=job.job_id, status=Status.SUCCESS, end_at=OLD)
    return job


def counts(services) -> dict[str, int]:
    with services.db.session() as session:
        return {
            model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Job, Subscription, SubscriptionTask, InstanceRecord, RecordStep, StepLog, RecordAnswer)
        }


def test_cleanup_deletes_old_finished_jobs_and_all_they_own_but_never_running_ones(services):
    for n in range(3):
        old_job(services, n)
    recent = make_seed_job(services)
    with services.db.session() as session:
        jobs.set_job_status(session, job_id=recent.job_id, status=Status.SUCCESS, end_at=datetime.now(UTC))
    running = running_job(services, bk_host_id=9, ip="127.0.0.9")
    with services.db.session() as session:  # started long ago and still running
        jobs.set_job_status(session, job_id=running.job_id, status=Status.RUNNING)
        session.execute(Job.__table__.update().where(Job.id == running.job_id).values(start_at=OLD))
    before = counts(services)
    dry = clean_up(services.db, parse_age("30d"), dry_run=True)
    assert (dry.jobs, dry.records) == (3, 3) and dry.log_chunks == 15
    assert counts(services) == before
    done = clean_up(services.db, parse_age("30d"), batch=1)
    assert (done.jobs, done.records, done.log_chunks) == (3, 3, 15)
    after = counts(services)
    assert after["jobs"] == 2 and after["subscriptions"] == 2 and after["instance_records"] == 2
    assert after["record_steps"] == 10 and after["step_logs"] == 5
    with services.db.session() as session:
        assert set(session.scalars(select(Job.id))) == {recent.job_id, running.job_id}
        assert not session.scalar(select(func.count()).select_from(RecordAnswer).where(RecordAnswer.record_id < 4))


def test_a_running_job_keeps_writing_during_a_cleanup_of_many_old_jobs(services):
    for n in range(40):
        job = old_job(services, n)
        append(services, job.record_id, 2, [f"old {n} line {k}" for k in range(200)])
    running = running_job(services, bk_host_id=9, ip="127.0.0.9")
    commits: list[float] = []
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            append(services, running.record_id, 0, [f"live {n}"])
            commits.append(time.monotonic())
            n += 1
            time.sleep(0.01)

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.1)
    started = time.monotonic()
    cleaned = clean_up(services.db, parse_age("30d"), batch=1)
    ended = time.monotonic()
    time.sleep(0.1)
    stop.set()
    writer.join()
    assert cleaned.jobs == 40
    during = [t for t in commits if started <= t <= ended]
    assert len(during) >= 5, (len(during), ended - started)
    gaps = [b - a for a, b in pairwise(commits)]
    assert max(gaps) < 2.0, max(gaps)
    with services.db.session() as session:
        kept = session.scalar(select(func.count()).select_from(StepLog).where(StepLog.record_id == running.record_id))
    assert kept == len(commits)


def test_the_cli_dry_run_counts_and_bad_ages_are_refused(services):
    old_job(services, 0)
    env = {"NODEOPS_DATABASE_URL": services.settings.database_url, "NODEOPS_DATA_DIR": str(services.settings.data_dir)}
    runner = CliRunner()
    dry = runner.invoke(app, ["cleanup", "--older-than", "30d", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would delete 1 jobs, 1 records, 5 log chunks" in dry.output
    bad = runner.invoke(app, ["cleanup", "--older-than", "soon"], env=env)
    assert bad.exit_code == 2 and "older_than" in bad.output
    real = runner.invoke(app, ["cleanup", "--older-than", "30d", "--batch", "2"], env=env)
    assert real.exit_code == 0 and "deleted 1 jobs" in real.output
