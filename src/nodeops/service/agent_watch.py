"""Agents that stop: a RUNNING agent silent for ``NODEOPS_AGENT_MISSED_HEARTBEATS`` of its heartbeat intervals is
marked TERMINATED (Node Manager's 异常), and its next heartbeat makes it RUNNING again.

Node Manager learns this from GSE every 10 minutes; nodeops' agents report to the service itself, so the service
looks at their heartbeats. ``AgentWatch`` runs in every API process (the one process of the embedded mode, each
``nodeops serve`` process of the celery mode: the workers do not serve heartbeats), every half of the shortest
interval of a RUNNING agent (the service's own counts for those without one), within ``MIN_PERIOD_S`` ..
``MAX_PERIOD_S``. A look is one statement
of ``store.agents.mark_silent``, off the event loop; the processes that look at once each mark, and log, other
hosts. Both transitions are logged here, not in any job's log: RUNNING → TERMINATED by the sweeper, TERMINATED →
RUNNING by the heartbeat API (``log_revived``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from nodeops.store import agents as agent_rows
from nodeops.store.agents import Silenced
from nodeops.store.db import Database

log = logging.getLogger(__name__)
MIN_PERIOD_S = 0.5  # an agent reporting every second is found silent within half a second of its last miss
MAX_PERIOD_S = 30.0  # however long the intervals, a silent agent is found within 30 s of its last miss


class AgentWatch:
    """Marks the silent agents TERMINATED in the background; ``start()`` then ``aclose()``."""

    def __init__(self, db: Database, *, misses: int, default_interval_s: float) -> None:
        self.db = db
        self.misses = misses
        self.default_interval_s = default_interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="nodeops-agent-watch")

    async def sweep(self) -> Silenced:
        """One look: mark the silent agents TERMINATED, logging each; returns what the store did."""
        silenced = await self.db.call(
            lambda: agent_rows.mark_silent(self.db, misses=self.misses, default_interval_s=self.default_interval_s)
        )
        for host_id, seen in silenced.hosts:
            log.warning(
                "agent of host %d sent no heartbeat for %d intervals (last at %s): TERMINATED",
                host_id,
                self.misses,
                seen.isoformat(),
                extra={"action": "agent_terminated", "bk_host_id": host_id, "last_heartbeat_at": seen.isoformat()},
            )
        return silenced

    def period_s(self, shortest_interval_s: float | None) -> float:
        """How long until the next look: half the shortest interval, the service's own included (hosts without
        a recorded one are counted in it)."""
        interval = self.default_interval_s if shortest_interval_s is None else shortest_interval_s
        return min(MAX_PERIOD_S, max(MIN_PERIOD_S, min(interval, self.default_interval_s) / 2))

    async def _run(self) -> None:
        # the first look waits a period too: an agent silent since before a restart is marked within one period
        # of it, and a process starting does not open a connection and a thread for it while it starts
        shortest: float | None = None
        while True:
            await asyncio.sleep(self.period_s(shortest))
            try:
                shortest = (await self.sweep()).shortest_interval_s
            except Exception:  # a failed look must not stop the next one
                log.exception("looking for silent agents failed", extra={"action": "agent_watch_failed"})

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def log_revived(host_ids: Sequence[int]) -> None:
    """Log each host a heartbeat made RUNNING again after it was TERMINATED."""
    for host_id in host_ids:
        log.info(
            "agent of host %d reports again: RUNNING",
            host_id,
            extra={"action": "agent_revived", "bk_host_id": host_id},
        )
