"""Notifications when a job ends: the delivery loop that POSTs what ``store.webhooks`` recorded, and how the
webhook URL of a request, and the default of the settings, are read.

Every process that runs the service's background work runs a ``Notifier``: the API process in both modes, and
each ``nodeops worker`` (``service.container.run_worker``). Each pass claims the deliveries due (a conditional
UPDATE with a lease, ``store.webhooks.claim_due``), at most as many as free sending slots, and sends each in its
own task: a receiver that stalls holds one slot for at most twice the timeout, never the loop, another delivery
or a job. A 2xx answer delivers; anything else (another status, a timeout, a refused connection, a redirect) is
retried after an exponential backoff, until ``webhook_max_attempts``. The answer's body is read up to
``BODY_CAP_BYTES`` and dropped. The signing secret is used here and nowhere else: it is never stored, logged or
answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
import orjson

from nodeops.domain import webhook
from nodeops.errors import NodeopsError
from nodeops.settings import Settings
from nodeops.store import webhooks
from nodeops.store.db import Database
from nodeops.store.models import utcnow

log = logging.getLogger(__name__)
STORE_CALL_WAIT_S = 30.0  # how long ``aclose`` waits for store calls still running in their threads
BODY_CAP_BYTES = 4096  # of a receiver's answer: read (so the connection ends cleanly) and dropped
USER_AGENT = "nodeops-webhook"
T = TypeVar("T")


def default_webhook_url(settings: Settings) -> str | None:
    """NODEOPS_WEBHOOK_URL (None: unset), as ``Settings`` checked it when it was read."""
    return settings.webhook_url or None


def job_page_url(settings: Settings, job_id: int) -> str:
    """The job's page in the viewer (``#/task-list/{id}``), at NODEOPS_PUBLIC_URL (else the service's address)."""
    return f"{settings.agent_server_url}/#/task-list/{job_id}"


def notifications(
    deliveries: Sequence[webhooks.Delivery], show_time: Callable[[datetime | None], str | None]
) -> list[dict[str, Any]]:
    """details_job's ``notifications``: each delivery with its URL (credentials masked), status and attempts
    (``[{at, duration_ms, http_status | error}]``); ``show_time`` formats times as the rest of the answer."""
    return [
        {
            "id": d.id,
            "event": d.event,
            "task_id": d.task_id,
            "url": webhook.mask_url(d.url),
            "status": d.status,
            "attempt_count": d.attempts,
            "attempts": d.attempt_log,
            "next_attempt_time": show_time(d.next_attempt_at),
            "delivered_time": show_time(d.delivered_at),
        }
        for d in deliveries
    ]


class Notifier:
    """Sends the deliveries due, from this process; ``start()`` on the running loop, ``aclose()`` at the end."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.timeout_s = settings.webhook_timeout_s
        # a claim outlives the longest send (connect + answer, each up to the timeout), so no other process sends
        # it meanwhile; one that dies mid-send leaves it due again once this has passed
        self.lease_s = 2 * settings.webhook_timeout_s + 5.0
        self._secret = settings.webhook_secret.get_secret_value().encode()
        self._slots = settings.webhook_concurrency
        self._sending: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        # store calls running in their threads: a cancelled task leaves its call running, and ``aclose`` waits for
        # it, so none still holds a connection once the process disposes of the database
        self._store_calls: set[asyncio.Future[Any]] = set()

    def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s),
            follow_redirects=False,
            trust_env=False,  # a receiver is reached directly, never through a proxy of the environment
            limits=httpx.Limits(max_connections=self._slots, max_keepalive_connections=self._slots),
            headers={"User-Agent": USER_AGENT},
        )
        self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="nodeops-webhooks")

    async def aclose(self) -> None:
        """Stop: sends in flight are abandoned unrecorded, like a process that died; their claims lapse."""
        tasks = [t for t in (self._loop_task, *self._sending) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._store_calls:
            await asyncio.wait(set(self._store_calls), timeout=STORE_CALL_WAIT_S)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except Exception:  # the loop outlives any one failure (a database away for a while)
                log.exception("reading due notifications failed", extra={"action": "webhook_claim_failed"})
            await asyncio.sleep(self.settings.webhook_poll_s)

    async def deliver_due(self) -> int:
        """Claim the deliveries due (as many as free slots) and start sending each; returns how many."""
        free = self._slots - len(self._sending)
        if free <= 0:
            return 0

        def claim() -> list[webhooks.Claimed]:
            with self.db.session() as session:
                return webhooks.claim_due(session, now=utcnow(), lease_s=self.lease_s, limit=free)

        claimed = await self._store(claim)
        for item in claimed:
            task = asyncio.get_running_loop().create_task(self._deliver(item), name=f"webhook-{item.id}")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return len(claimed)

    async def _deliver(self, claimed: webhooks.Claimed) -> None:
        started_at = utcnow()
        started = time.monotonic()
        http_status, error = await self._post(claimed)
        attempt: dict[str, Any] = {
            "at": started_at.isoformat(),
            "duration_ms": int((time.monotonic() - started) * 1000),
        }
        if http_status is not None:
            attempt["http_status"] = http_status
        if error is not None:
            attempt["error"] = error
        delivered = http_status is not None and 200 <= http_status < 300
        made = claimed.attempts + 1
        retry_at: datetime | None = None
        if not delivered and made < self.settings.webhook_max_attempts:
            retry_at = utcnow() + timedelta(seconds=webhook.backoff_s(made, base_s=self.settings.webhook_backoff_s))

        def finish() -> bool:
            with self.db.session() as session:
                return webhooks.finish(
                    session, claimed, attempt=attempt, delivered=delivered, retry_at=retry_at, at=utcnow()
                )

        extra = {"action": "webhook_attempt", "job_id": claimed.job_id, "delivery_id": claimed.id, "attempt": made}
        try:
            kept = await self._store(finish)
        except NodeopsError:
            log.exception("recording a notification's attempt failed; it is sent again", extra=extra)
            return
        outcome = "delivered" if delivered else ("retried later" if retry_at is not None else "given up")
        level = logging.INFO if delivered or not kept else logging.WARNING
        log.log(
            level,
            "notification %d of job %d, attempt %d: %s (%s)%s",
            claimed.id,
            claimed.job_id,
            made,
            http_status if http_status is not None else error,
            outcome,
            "" if kept else "; its claim had lapsed, so another process sends it",
            extra=extra,
        )

    async def _store(self, fn: Callable[[], T]) -> T:
        """``Database.call(fn)``, run to its end even if the caller is cancelled (``aclose`` waits for it)."""
        call = asyncio.ensure_future(self.db.call(fn))
        self._store_calls.add(call)
        call.add_done_callback(self._store_calls.discard)
        return await asyncio.shield(call)

    async def _post(self, claimed: webhooks.Claimed) -> tuple[int | None, str | None]:
        """POST the delivery once: ``(http_status, None)`` when the receiver answered, else ``(None, why)``."""
        assert self._client is not None, "start() the Notifier first"
        payload: Mapping[str, Any] = {
            **claimed.payload,
            "delivery_id": claimed.id,
            "job_url": job_page_url(self.settings, claimed.job_id),
        }
        body = orjson.dumps(payload)
        headers = {
            "Content-Type": "application/json",
            webhook.EVENT_HEADER: claimed.event,
            webhook.DELIVERY_HEADER: str(claimed.id),
        }
        if self._secret:
            headers[webhook.SIGNATURE_HEADER] = webhook.signature(self._secret, int(time.time()), body)
        status: int | None = None
        try:
            # the whole exchange is bounded too: a receiver dripping its answer byte by byte ends here
            async with asyncio.timeout(2 * self.timeout_s):
                async with self._client.stream("POST", claimed.url, content=body, headers=headers) as response:
                    status = response.status_code
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read >= BODY_CAP_BYTES:
                            break
        except (TimeoutError, httpx.TimeoutException):
            if status is None:
                return None, f"no answer within {2 * self.timeout_s:g} s"
        except httpx.ConnectError:
            return None, "connection refused or host unreachable"
        except Exception as exc:  # any other failure of the exchange (httpx's, or an address it cannot use)
            if status is None:
                return None, type(exc).__name__
        # its status is its answer: a body cut short, or too slow to come, changes nothing
        return status, None
