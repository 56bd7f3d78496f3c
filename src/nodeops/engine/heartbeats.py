"""``HeartbeatWaiters``: wakes a step waiting for a host's heartbeat as soon as this process records one.

The heartbeat API calls ``notify(bk_host_id, version)`` once the heartbeat is committed; 查询Agent状态 waits with
``watch(bk_host_id)`` instead of polling the store in a tight loop. On PostgreSQL, a heartbeat taken by another
process arrives as a notice (``on_notice``, routed by ``engine.notices``); when notices may have been missed (the
listening connection was lost) ``wake_all`` has every waiter read the store again. The step still reads the store
now and then (``StepTimeouts.poll_interval_s``) as a backstop. ``notify`` and ``wake_all`` may be called from any
thread or event loop: each waiter is woken on its own loop. Imports nothing but the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class HeartbeatWatch:
    """One waiter's view of a host's heartbeats: the versions reported since it started watching."""

    __slots__ = ("_event", "_loop", "_missed", "versions")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        self._missed = False
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

    def take_missed(self) -> bool:
        """Whether heartbeats may have been missed since the last call (``HeartbeatWaiters.wake_all``): then
        ``versions`` is not the whole story and the waiter reads the store. Clears the flag."""
        missed, self._missed = self._missed, False
        return missed

    def _seen(self, version: str) -> None:  # on the waiter's own loop
        self.versions.append(version)
        self._event.set()

    def _may_have_missed(self) -> None:  # on the waiter's own loop
        self._missed = True
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
        for watch in watches:
            _on_its_loop(watch, watch._seen, version)

    def on_notice(self, payload: str) -> None:
        """A heartbeat notice from another process (``bk_host_id:version``, ``store.notices.HEARTBEAT_CHANNEL``):
        wake whoever watches the host. A malformed payload is logged and ignored."""
        host, _, version = payload.partition(":")
        if not (host.isascii() and host.isdigit() and version):
            log.warning("ignored a malformed heartbeat notice %r", payload[:100], extra={"action": "notice_malformed"})
            return
        self.notify(int(host), version)

    def wake_all(self) -> None:
        """Heartbeats may have been missed (the connection receiving notices was lost, or just opened): wake every
        waiter so it reads the store again (``HeartbeatWatch.take_missed``)."""
        with self._lock:
            watches = [watch for host_watches in self._watches.values() for watch in host_watches]
        for watch in watches:
            _on_its_loop(watch, watch._may_have_missed)

    def watched_hosts(self) -> int:
        """How many hosts are watched (for tests and diagnostics)."""
        return len(self._watches)


def _on_its_loop(watch: HeartbeatWatch, callback: Callable[..., None], *args: str) -> None:
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if watch._loop is running:
        callback(*args)
    else:
        with contextlib.suppress(RuntimeError):  # that loop has closed: its waiter is gone
            watch._loop.call_soon_threadsafe(callback, *args)
