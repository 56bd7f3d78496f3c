"""The webhook deliveries of ended jobs: recorded where a job ends, claimed and finished by delivery loops.

``record_end`` runs inside the transaction that ends a job (``store.pipelines.refresh_job``), so a delivery exists
exactly when the end does. ``claim_due`` and ``finish`` are the delivery loop's (``service.webhooks``): a claim is
a conditional UPDATE that pushes ``next_attempt_at`` forward by a lease and changes ``claim_token``, so of two
processes reading the same due row one claims it; only the claim's holder may write its outcome. Nothing here
knows the signing secret.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from nodeops.domain.webhook import JOB_ENDED
from nodeops.store.models import Job, Subscription, SubscriptionTask, WebhookDelivery, utcnow

PENDING = "PENDING"  # due at next_attempt_at (or being sent, by whoever holds its claim)
DELIVERED = "DELIVERED"  # a 2xx answer
FAILED = "FAILED"  # every attempt failed; no more are made
ERROR_CHARS = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class Claimed:
    """A delivery one process holds until ``lease_until``: what to send, and the token its outcome needs."""

    id: int
    job_id: int
    url: str
    event: str
    payload: dict[str, Any]
    attempts: int  # made before this one
    attempt_log: list[Any]
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """A delivery as details_job shows it."""

    id: int
    task_id: int
    url: str
    event: str
    status: str
    attempts: int
    attempt_log: list[Any]
    next_attempt_at: datetime | None  # None once DELIVERED or FAILED
    delivered_at: datetime | None


def set_webhook_url(session: Session, subscription_id: int, url: str | None) -> None:
    """Where the end of the subscription's job is notified from now on (None: nowhere)."""
    session.execute(update(Subscription).where(Subscription.id == subscription_id).values(webhook_url=url))


def webhook_urls(session: Session, subscription_ids: list[int]) -> dict[int, str | None]:
    """The webhook URL of each subscription."""
    rows = session.execute(
        select(Subscription.id, Subscription.webhook_url).where(Subscription.id.in_(subscription_ids))
    )
    return {int(sub_id): url for sub_id, url in rows}


def record_end(session: Session, job: Job) -> int | None:
    """Record the notification of the job's end, in the caller's transaction (the one that ends it); returns the
    delivery's id, or None when its subscription has no webhook URL or this end (its newest task) is already
    recorded. Call it only once the job is no longer active and none of its records is."""
    url = session.scalar(select(Subscription.webhook_url).where(Subscription.id == job.subscription_id))
    if not url:
        return None
    task_id = int(session.scalar(select(func.max(SubscriptionTask.id)).where(SubscriptionTask.job_id == job.id)) or 0)
    # one per end, even if the URL changed since (a later recount of the same end records nothing)
    known = session.scalar(
        select(WebhookDelivery.id).where(WebhookDelivery.job_id == job.id, WebhookDelivery.task_id == task_id)
    )
    if known is not None:
        return None
    ended_at = job.end_at or utcnow()
    delivery = WebhookDelivery(
        job_id=job.id,
        task_id=task_id,
        url=url,
        event=JOB_ENDED,
        payload={
            "event": JOB_ENDED,
            "job_id": job.id,
            "job_type": job.job_type,
            "status": job.status,
            "statistics": dict(job.statistics),
            "ended_at": ended_at.isoformat(),
            "subscription_id": job.subscription_id,
            "task_id": task_id,
        },
        status=PENDING,
        attempts=0,
        attempt_log=[],
        next_attempt_at=ended_at,
    )
    session.add(delivery)
    session.flush()
    return delivery.id


def claim_due(session: Session, *, now: datetime, lease_s: float, limit: int) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries, oldest first, each until ``now + lease_s``. A row another process
    claimed between the read and the UPDATE is skipped (its token changed). Commit at once: the claim is what
    keeps others away."""
    if limit <= 0:
        return []
    rows = session.execute(
        select(WebhookDelivery)
        .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    ).scalars()
    claimed: list[Claimed] = []
    for row in list(rows):
        token = secrets.token_hex(16)
        result = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == row.id,
                WebhookDelivery.status == PENDING,
                WebhookDelivery.next_attempt_at <= now,
                WebhookDelivery.claim_token.is_not_distinct_from(row.claim_token),
            )
            .values(next_attempt_at=now + timedelta(seconds=lease_s), claim_token=token)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) == 1:
            claimed.append(
                Claimed(
                    id=row.id,
                    job_id=row.job_id,
                    url=row.url,
                    event=row.event,
                    payload=dict(row.payload),
                    attempts=row.attempts,
                    attempt_log=list(row.attempt_log),
                    token=token,
                )
            )
    return claimed


def finish(
    session: Session,
    claimed: Claimed,
    *,
    attempt: dict[str, Any],
    delivered: bool,
    retry_at: datetime | None,
    at: datetime,
) -> bool:
    """Write one attempt's outcome: DELIVERED, due again at ``retry_at``, or (``retry_at`` None) FAILED for good.
    Returns False, writing nothing, when the claim was lost (its lease passed and another process took it)."""
    http_status = attempt.get("http_status")
    error = attempt.get("error")
    status = DELIVERED if delivered else (PENDING if retry_at is not None else FAILED)
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == claimed.id, WebhookDelivery.claim_token == claimed.token)
        .values(
            status=status,
            attempts=claimed.attempts + 1,
            attempt_log=[*claimed.attempt_log, attempt],
            next_attempt_at=retry_at if status == PENDING else at,
            claim_token=None,
            last_http_status=http_status if isinstance(http_status, int) else None,
            last_error=str(error)[:ERROR_CHARS] if error else None,
            delivered_at=at if delivered else None,
        )
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


def deliveries_of(session: Session, job_id: int) -> list[Delivery]:
    """The job's deliveries, oldest first."""
    rows = session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.id))
    return [
        Delivery(
            id=row.id,
            task_id=row.task_id,
            url=row.url,
            event=row.event,
            status=row.status,
            attempts=row.attempts,
            attempt_log=list(row.attempt_log),
            next_attempt_at=row.next_attempt_at if row.status == PENDING else None,
            delivered_at=row.delivered_at,
        )
        for row in rows
    ]
