"""``NoticeRouter``: hands the notices other processes send over PostgreSQL to this process's waiters, by channel.

One ``store.notices.Listener`` per process holds the one listening connection; the router gives it the channels
and, for each, what a notice's payload wakes and what to read again after a reconnect (notices sent while the
connection was down are lost). ``heartbeat_router`` routes heartbeats to ``HeartbeatWaiters``; the worker adds
its own channels (revoke) with ``route``. Imports engine and store only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nodeops.engine.heartbeats import HeartbeatWaiters
from nodeops.store.db import Database
from nodeops.store.notices import HEARTBEAT_CHANNEL, Listener


class NoticeRouter:
    """Per channel, who takes its notices' payloads and who reads again after a reconnect."""

    def __init__(self) -> None:
        self._on_notice: dict[str, Callable[[str], None]] = {}
        self._on_reconnect: list[Callable[[], None]] = []

    def route(
        self, channel: str, on_notice: Callable[[str], None], *, on_reconnect: Callable[[], None] | None = None
    ) -> None:
        """Hand each notice of ``channel`` to ``on_notice(payload)``; call ``on_reconnect()`` each time the
        listener (re)connects. Raises ValueError for a channel already routed."""
        if channel in self._on_notice:
            raise ValueError(f"channel {channel!r} is already routed")
        self._on_notice[channel] = on_notice
        if on_reconnect is not None:
            self._on_reconnect.append(on_reconnect)

    def listener(self, db: Database, **options: Any) -> Listener:
        """The Listener of every routed channel on ``db`` (PostgreSQL), not started: ``start()`` it on the worker's
        event loop and ``aclose()`` it when the worker stops. ``options`` go to ``Listener``."""
        return Listener.of(db, list(self._on_notice), self.on_notice, on_reconnect=self.on_reconnect, **options)

    def on_notice(self, channel: str, payload: str) -> None:
        handler = self._on_notice.get(channel)
        if handler is not None:
            handler(payload)

    def on_reconnect(self) -> None:
        for reread in self._on_reconnect:
            reread()


def heartbeat_router(waiters: HeartbeatWaiters) -> NoticeRouter:
    """A router waking ``waiters`` on heartbeat notices, and every one of them (to read the store) on reconnect."""
    router = NoticeRouter()
    router.route(HEARTBEAT_CHANNEL, waiters.on_notice, on_reconnect=waiters.wake_all)
    return router
