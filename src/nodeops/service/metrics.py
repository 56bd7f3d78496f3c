"""What a metrics scrape reads beyond the process's own figures: the store's counts, and in celery mode the live
workers and the broker's queue depth (``nodeops.metrics.StoreCounts``).

``read_counts`` runs in a thread (the API's ``MetricsReader.read``, bounded in time) or in the worker's listener
thread; a part that fails (the store, the broker) leaves its figures out and says so (``StoreCounts.failed``,
exported as ``nodeops_store_scrape_ok 0``), so the process's own metrics are still answered. Imports engine and
store only.
"""

from __future__ import annotations

import asyncio
import logging
import time

from nodeops.domain.agent_status import AgentStatus, agent_status_count
from nodeops.metrics import StoreCounts
from nodeops.settings import Settings
from nodeops.store import metrics_reads
from nodeops.store.db import Database

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 10.0  # a scrape waits no longer for the store and the broker; Prometheus' default timeout


def read_counts(db: Database, settings: Settings) -> StoreCounts:
    """The store's figures now (and in celery mode the workers alive and the queue depth); never raises: what
    could not be read is named in ``failed``."""
    started = time.perf_counter()
    celery = settings.executor == "celery"
    failed: list[str] = []
    figures = None
    try:
        with db.session() as session:
            figures = metrics_reads.read_figures(session, workers=celery)
    except Exception as exc:
        failed.append("store")
        log.warning("metrics: reading the store failed: %s", exc, extra={"action": "metrics_read_failed"})
    depth = None
    if celery:
        from nodeops.engine.dispatch.celery import queue_depth

        try:
            depth = queue_depth(settings.broker_url)
        except Exception as exc:
            failed.append("broker")
            # the exception's type only: a broker client's message may repeat its URL, password included
            log.warning(
                "metrics: reading the broker's queue failed (%s)",
                type(exc).__name__,
                extra={"action": "metrics_read_failed"},
            )
    if figures is None:
        return StoreCounts(queue_depth=depth, read_seconds=time.perf_counter() - started, failed=", ".join(failed))
    agents = agent_status_count(figures.agents_by_status)
    return StoreCounts(
        jobs=figures.jobs,
        instances=figures.instances,
        agents={
            "running": agents[AgentStatus.RUNNING.value],
            "abnormal": agents[AgentStatus.TERMINATED.value],
            "not_installed": agents[AgentStatus.NOT_INSTALLED.value],
        },
        workers_alive=figures.workers_alive,
        queue_depth=depth,
        read_seconds=time.perf_counter() - started,
        failed=", ".join(failed),
    )


class MetricsReader:
    """The API's scrape-time reads: one at a time per process (a slow store is not asked twice at once), each
    answered within ``READ_TIMEOUT_S``."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._reading: asyncio.Future[StoreCounts] | None = None

    async def read(self) -> StoreCounts:
        """The store's counts, from a thread; a read still running (a stalled store) is shared, not repeated, and
        past ``READ_TIMEOUT_S`` the scrape goes on without them."""
        reading = self._reading
        if reading is None or reading.done():
            reading = self._reading = asyncio.ensure_future(asyncio.to_thread(read_counts, self.db, self.settings))
        try:
            return await asyncio.wait_for(asyncio.shield(reading), timeout=READ_TIMEOUT_S)
        except TimeoutError:
            return StoreCounts(read_seconds=READ_TIMEOUT_S, failed=f"no answer within {READ_TIMEOUT_S:g} s")

    async def aclose(self) -> None:
        """Wait (up to ``READ_TIMEOUT_S``) for a read still running in its thread, so it holds no connection once
        the process disposes of the database."""
        if self._reading is not None and not self._reading.done():
            await asyncio.wait({self._reading}, timeout=READ_TIMEOUT_S)
