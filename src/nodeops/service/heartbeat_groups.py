"""``HeartbeatGroups``: the heartbeats that arrive while one is being written are written next, together.

Every agent of the fleet heartbeats on a rhythm, so a process may take thousands a second. One transaction each
would spend most of the store's time on commits, and one thread hop each most of the event loop's. Here, a
heartbeat that arrives while no write is in flight is written at once (no timer: an idle store answers the first
heartbeat without delay); those that arrive during that write wait for it, then go together, at most
``max_group`` per transaction (one ``Database.call``). Each caller awaits its own outcome:

- a malformed body fails before it joins a group (``agents.read_heartbeat``), and a wrong token matches no row
  and changes nothing, so neither ever fails the others;
- when the transaction fails, every heartbeat of the group gets its StoreError, and the next group is
  written as usual;
- the steps waiting for a host are woken only once its heartbeat is committed;
- a host the heartbeat brings back from TERMINATED is logged (``agent_watch.log_revived``);
- a caller that goes away (its client disconnected) does not take its heartbeat out of the group.

Imports service, engine and store only, never the API.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import NamedTuple

from nodeops import metrics
from nodeops.engine.heartbeats import HeartbeatWaiters
from nodeops.errors import AgentTokenRejected, InvalidInput, StoreError
from nodeops.service.agent_watch import log_revived
from nodeops.service.agents import read_heartbeat
from nodeops.store import agents as agent_rows
from nodeops.store.agents import AgentHeartbeat
from nodeops.store.db import Database

MAX_GROUP = 256  # heartbeats per transaction: bounds how long a transaction holds the store's write lock


class _Waiting(NamedTuple):
    beat: AgentHeartbeat
    outcome: asyncio.Future[None]


class HeartbeatGroups:
    """The heartbeats of one process, written in groups; one per process (``Services.heartbeat_groups``)."""

    def __init__(self, db: Database, waiters: HeartbeatWaiters, *, max_group: int = MAX_GROUP) -> None:
        if max_group < 1:
            raise ValueError("max_group must be at least 1")
        self.db = db
        self.waiters = waiters
        self.max_group = max_group
        self._queued: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def receive(self, body: Mapping[str, object]) -> None:
        """What the heartbeat API does: record the heartbeat of ``body`` with those that arrive with it, then,
        once it is committed, wake the step of this process waiting for it.

        Raises InvalidInput for a malformed body (at once), AgentTokenRejected for a wrong token or an unknown
        host, and StoreError when its group's transaction fails.
        """
        try:
            await self._receive(read_heartbeat(body))
        except InvalidInput:
            metrics.HEARTBEATS_REFUSED.labels("invalid").inc()
            raise
        except AgentTokenRejected:
            metrics.HEARTBEATS_REFUSED.labels("token").inc()
            raise
        except StoreError:
            metrics.HEARTBEATS_REFUSED.labels("store").inc()
            raise
        metrics.HEARTBEATS_RECEIVED.inc()

    async def _receive(self, beat: AgentHeartbeat) -> None:
        loop = asyncio.get_running_loop()
        writer = self._writer
        if writer is not None and not writer.done() and writer.get_loop() is not loop:
            # another event loop's group is being written (tests drive several loops): this one goes alone
            await self._write_alone(beat)
            return
        outcome: asyncio.Future[None] = loop.create_future()
        self._queued.append(_Waiting(beat, outcome))
        if writer is None or writer.done():
            self._writer = loop.create_task(self._write_groups(), name="heartbeat-groups")
        try:
            # shielded: a caller cancelled (its client gone) leaves its heartbeat and the others' to the writer
            await asyncio.shield(outcome)
        except asyncio.CancelledError:
            outcome.add_done_callback(_consume)
            raise

    async def _write_alone(self, beat: AgentHeartbeat) -> None:
        written = await self.db.call(functools.partial(agent_rows.record_heartbeats, self.db, [beat]))
        log_revived(written.revived)
        if not written.recorded[0]:
            raise AgentTokenRejected(bk_host_id=beat.bk_host_id)
        self.waiters.notify(beat.bk_host_id, beat.version)

    async def _write_groups(self) -> None:
        """Write the queued heartbeats, a group per transaction, until none is left. Between two groups no other
        task runs, so a heartbeat queued while this task lives is always written by it."""
        while self._queued:
            group = self._queued[: self.max_group]
            del self._queued[: self.max_group]
            write = functools.partial(agent_rows.record_heartbeats, self.db, [waiting.beat for waiting in group])
            try:
                written = await self.db.call(write)
            except asyncio.CancelledError:  # the loop is closing: nobody will write what is left
                for waiting in (*group, *self._queued):
                    waiting.outcome.cancel()
                self._queued.clear()
                raise
            except Exception as exc:  # a StoreError, or a fault of ours: every caller of the group answers it
                for waiting in group:
                    _settle(waiting.outcome, exc)
                continue
            log_revived(written.revived)
            for waiting, ok in zip(group, written.recorded, strict=True):
                if ok:
                    self.waiters.notify(waiting.beat.bk_host_id, waiting.beat.version)
                    _settle(waiting.outcome, None)
                else:
                    _settle(waiting.outcome, AgentTokenRejected(bk_host_id=waiting.beat.bk_host_id))


def _settle(outcome: asyncio.Future[None], error: BaseException | None) -> None:
    if outcome.done():  # cancelled with the loop
        return
    if error is None:
        outcome.set_result(None)
    else:
        outcome.set_exception(error)


def _consume(outcome: asyncio.Future[None]) -> None:
    """Retrieve the outcome nobody awaits any more, so asyncio does not report it as never retrieved."""
    if not outcome.cancelled():
        outcome.exception()
