"""The webhook deliveries in the store (``store.webhooks``), on SQLite and PostgreSQL: one recorded per end of a
job, in the recount that ends it; claimed by one process at a time, even by many at once; a lapsed claim is
taken over and its late outcome refused."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from nodeops.domain.status import Status
from nodeops.store import cluster, jobs, pipelines, webhooks
from nodeops.store.models import Job, WebhookDelivery, utcnow
from nodeops.store.retention import delete_expired
from tests.support.factories import StepRun, make_job

URL = "http://127.0.0.1:9/hook"
DONE = [StepRun(Status.SUCCESS, "2024-05-01 10:00:00", "2024-05-01 10:00:01", "[2024-05-01 10:00:00 INFO] ok")]


def _ended_job(services, *, url: str | None = URL) -> int:
    job = make_job(services, runs=DONE, record_status=Status.SUCCESS)
    with services.db.session() as session:
        subscription_id = session.scalar(select(Job.subscription_id).where(Job.id == job.job_id))
        webhooks.set_webhook_url(session, subscription_id, url)
    with services.db.session() as session:
        pipelines.refresh_job(session, job_id=job.job_id)
    return job.job_id


def _deliveries(services) -> list[WebhookDelivery]:
    with services.db.session() as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def _claim(services, *, lease_s: float = 30, at=None) -> list[webhooks.Claimed]:
    with services.db.session() as session:
        return webhooks.claim_due(session, now=at or utcnow(), lease_s=lease_s, limit=10)


def test_the_recount_that_ends_a_job_records_one_delivery_with_its_facts(services):
    job_id = _ended_job(services)
    with services.db.session() as session:  # a later recount of the same end records nothing more
        pipelines.refresh_job(session, job_id=job_id)
    with services.db.session() as session:  # nor once the URL changed: an end is notified once
        subscription_id = session.scalar(select(Job.subscription_id).where(Job.id == job_id))
        webhooks.set_webhook_url(session, subscription_id, "http://127.0.0.1:10/other")
        pipelines.refresh_job(session, job_id=job_id)
    (delivery,) = _deliveries(services)
    assert (delivery.job_id, delivery.url, delivery.status, delivery.attempts) == (job_id, URL, "PENDING", 0)
    assert delivery.payload["status"] == "SUCCESS" and delivery.payload["job_id"] == job_id
    assert delivery.payload["statistics"]["success_count"] == 1
    assert delivery.payload["task_id"] == delivery.task_id > 0


def test_a_job_without_a_webhook_url_records_nothing(services):
    _ended_job(services, url=None)
    assert _deliveries(services) == []


def test_many_processes_claiming_at_once_send_each_delivery_once(services):
    _ended_job(services)
    start = threading.Barrier(6)
    claims: list[list[webhooks.Claimed]] = []

    def claim() -> None:
        start.wait()
        claims.append(_claim(services))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(len(c) for c in claims) == [0, 0, 0, 0, 0, 1]
    assert _claim(services) == []  # held: not due until the lease passes


def test_a_lapsed_claim_is_taken_over_and_its_late_outcome_refused(services):
    _ended_job(services)
    (first,) = _claim(services, lease_s=0.2)
    time.sleep(0.3)
    (second,) = _claim(services)
    assert second.id == first.id and second.token != first.token
    attempt = {"at": utcnow().isoformat(), "duration_ms": 5, "http_status": 200}
    with services.db.session() as session:
        assert not webhooks.finish(session, first, attempt=attempt, delivered=True, retry_at=None, at=utcnow())
    retry_at = utcnow() + timedelta(seconds=60)
    failed = {"at": utcnow().isoformat(), "duration_ms": 7, "error": "connection refused or host unreachable"}
    with services.db.session() as session:
        assert webhooks.finish(session, second, attempt=failed, delivered=False, retry_at=retry_at, at=utcnow())
    (delivery,) = _deliveries(services)
    assert (delivery.status, delivery.attempts, delivery.attempt_log) == ("PENDING", 1, [failed])
    assert delivery.claim_token is None and delivery.last_error == failed["error"]
    assert _claim(services) == []  # due in a minute
    (third,) = _claim(services, at=retry_at + timedelta(seconds=1))
    assert third.attempts == 1 and third.attempt_log == [failed]


def test_deliveries_go_with_their_job_when_it_is_deleted(services):
    _ended_job(services)
    delete_expired(services.db, utcnow() + timedelta(days=1), batch=10)
    with services.db.session() as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_revoke_in_celery_mode_is_notified_terminated_once_its_running_host_stopped(services):
    running = [StepRun(Status.RUNNING, "2024-05-01 10:00:00", None, "[2024-05-01 10:00:00 INFO] running")]
    job = make_job(services, runs=running, record_status=Status.RUNNING)
    with services.db.session() as session:
        subscription_id = session.scalar(select(Job.subscription_id).where(Job.id == job.job_id))
        webhooks.set_webhook_url(session, subscription_id, URL)
    with services.db.session() as session:
        cluster.request_revoke(services.db, session, job_id=job.job_id, record_ids=[job.record_id], line="revoked")
    assert _deliveries(services) == []  # its host still runs: the job has not ended yet
    with services.db.session() as session:  # its worker stops it, then recounts
        jobs.write_progress(
            services.db, session, records=[jobs.RecordProgress(job.record_id, Status.FAILED, None, utcnow())]
        )
    with services.db.session() as session:
        assert pipelines.refresh_job_if_settled(session, job_id=job.job_id)
    (delivery,) = _deliveries(services)
    assert delivery.payload["status"] == "TERMINATED" and delivery.payload["statistics"]["failed_count"] == 1
