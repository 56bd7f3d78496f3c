"""The delivery loop (``service.webhooks.Notifier``) against a real receiver: it sends at most its concurrency at
once, so stalling receivers hold that many slots and no more, and the rest wait their turn."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from nodeops.domain.status import Status
from nodeops.service.webhooks import Notifier
from nodeops.store import pipelines, webhooks
from nodeops.store.models import Job
from tests.support.factories import StepRun, make_job
from tests.support.webhook_receiver import STALL, Receiver, verify

DONE = [StepRun(Status.SUCCESS, "2024-05-01 10:00:00", "2024-05-01 10:00:01", "[2024-05-01 10:00:00 INFO] ok")]


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


def _ended_jobs(services, url: str, count: int) -> list[int]:
    ids = []
    for n in range(count):
        job = make_job(services, runs=DONE, record_status=Status.SUCCESS, bk_host_id=n + 1, ip=f"127.0.0.{n + 1}")
        with services.db.session() as session:
            subscription_id = session.scalar(select(Job.subscription_id).where(Job.id == job.job_id))
            webhooks.set_webhook_url(session, subscription_id, url)
        with services.db.session() as session:
            pipelines.refresh_job(session, job_id=job.job_id)
        ids.append(job.job_id)
    return ids


async def test_stalling_receivers_hold_at_most_the_concurrency_and_the_rest_follow(services, receiver):
    receiver.answers = [STALL, STALL]
    job_ids = _ended_jobs(services, receiver.url, 4)
    settings = services.settings.model_copy(
        update={
            "webhook_concurrency": 2,
            "webhook_timeout_s": 0.5,
            "webhook_poll_s": 0.05,
            "webhook_secret": SecretStr("k"),
        }
    )
    notifier = Notifier(services.db, settings)
    notifier.start()
    try:
        await asyncio.to_thread(receiver.wait, 2)
        await asyncio.sleep(0.2)
        assert len(receiver.requests) == 2  # two slots, both held by the stalling answers (for up to 1 s)
        for _ in range(100):
            if len(receiver.requests) >= 4:
                break
            await asyncio.sleep(0.05)
        sent = {verify(r, b"k")["job_id"] for r in receiver.requests}
        assert sent == set(job_ids)
    finally:
        await notifier.aclose()
