"""``HeartbeatWaiters``: wakes a step waiting for a host's heartbeat as soon as this process records one.

The heartbeat API calls ``notify(bk_host_id, version)`` once the heartbeat is committed; 查询Agent状态 waits with
``watch(bk_host_id)`` instead of polling the store in a tight loop. A heartbeat taken by another process never
reaches these waiters, so the step still reads the store now and then (``StepTimeouts.heartbeat_poll_s``).
``notify`` may be called from any thread or event loop: each waiter is woken on its own loop. Imports nothing
but the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class HeartbeatWatch:
    """One waiter's view of a host's heartbeats: the versions reported since it started watching."""

    __slots__ = ("_event", "_loop", "versions")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        self.versions: list[str] = []

    async def wait(self, timeout_s: float) -> bool:
        """Wait until a heartbeat arrives or ``timeout_s`` passes; True when one arrived. Clears the signal."""
        if not self._event.is_set():
            try:
                async with asyncio.timeout(timeout_s):
                    await self._event.wait()
            except TimeoutError:
                return False
        self._event.clear()
        return True

    def _seen(self, version: str) -> None:  # on the waiter's own loop
        self.versions.append(version)
        self._event.set()


class HeartbeatWaiters:
    """The steps of this process waiting for a heartbeat, by ``bk_host_id``; one per process, shared by the
    engine and the heartbeat API."""

    def __init__(self) -> None:
        self._watches: dict[int, list[HeartbeatWatch]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def watch(self, bk_host_id: int) -> Iterator[HeartbeatWatch]:
        """Receive the host's heartbeats while the block runs. Enter it before reading the store, so a heartbeat
        recorded between the read and the wait is not missed."""
        watch = HeartbeatWatch(asyncio.get_running_loop())
        with self._lock:
            self._watches.setdefault(bk_host_id, []).append(watch)
        try:
            yield watch
        finally:
            with self._lock:
                watches = self._watches.get(bk_host_id, [])
                if watch in watches:
                    watches.remove(watch)
                if not watches:
                    self._watches.pop(bk_host_id, None)

    def notify(self, bk_host_id: int, version: str) -> None:
        """A heartbeat of ``version`` from the host is committed: wake whoever watches it (cheap when nobody does)."""
        if bk_host_id not in self._watches:
            return
        with self._lock:
            watches = list(self._watches.get(bk_host_id, ()))
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for watch in watches:
            if watch._loop is running:
                watch._seen(version)
            else:
                with contextlib.suppress(RuntimeError):  # that loop has closed: its waiter is gone
                    watch._loop.call_soon_threadsafe(watch._seen, version)

    def watched_hosts(self) -> int:
        """How many hosts are watched (for tests and diagnostics)."""
        return len(self._watches)
