"""Wake-ups between processes over PostgreSQL: ``NOTIFY`` to send one, a ``Listener`` to receive them.

A notice only says "look again": it carries a short payload (a host and the version it reported, a job id) and is
lost if nobody listens at that moment, or if the listening connection is down. What it announces is always in the
tables, so whoever acts on a notice reads them, and a ``Listener`` calls ``on_reconnect`` after it (re)connects so
its caller reads again what it may have missed. SQLite has no other process to wake: sending is a no-op there.

The channels: ``HEARTBEAT_CHANNEL`` (payload ``bk_host_id:version``, sent by ``store.agents.record_heartbeats``
for the first heartbeat after an agent (re)started) and ``REVOKE_CHANNEL`` (payload: a job_id). psycopg is
imported only when a Listener runs, so the embedded mode never loads it. Imports store and the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from nodeops.store.db import Database, WriteHandle

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

HEARTBEAT_CHANNEL = "nodeops_heartbeat"  # payload "bk_host_id:version"
REVOKE_CHANNEL = "nodeops_revoke"  # payload: the job_id
LISTEN_APPLICATION_NAME = "nodeops-listen"  # how the listening connections show in pg_stat_activity
RECONNECT_FIRST_S = 0.1  # after a lost connection, the first try again comes this soon, doubling...
RECONNECT_MAX_S = 5.0  # ...up to this
CHECK_INTERVAL_S = 30.0  # a connection without notices for this long is checked with a query


def notify(session: Session, channel: str, payload: str) -> None:
    """Send ``payload`` on ``channel`` when ``session``'s transaction commits (nothing if it rolls back); a no-op
    on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload})


def notify_many(db: Database, cur: WriteHandle, channel: str, payloads: Sequence[str]) -> None:
    """Send each of ``payloads`` on ``channel`` when the transaction of ``cur`` (a ``Database.transaction``
    cursor) commits, in one statement; a no-op on SQLite or without payloads."""
    if db.is_sqlite or not payloads:
        return
    cur.execute("SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload", (channel, list(payloads)))
    cur.fetchall()


def libpq_url(url: str) -> str:
    """The libpq connection URL of a SQLAlchemy PostgreSQL URL (``postgresql+psycopg://...``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    """One dedicated connection LISTENing on some channels, handing each notice to ``on_notice(channel,
    payload)``, on the event loop it was started on.

    Start it with ``start()`` and end it with ``aclose()``. When the connection is lost (a server restart,
    ``pg_terminate_backend``, a broken network found by the check every ``check_interval_s``) it logs once, then
    connects again after ``RECONNECT_FIRST_S`` doubling up to ``RECONNECT_MAX_S``, until it succeeds. After each
    connection is LISTENing, the first included, it calls ``on_reconnect()``: notices sent while nobody listened
    are lost, and the caller reads again what they would have told. A callback that raises is logged, never
    stops the listener. Callbacks must be quick: they run on the event loop, between two notices.
    """

    def __init__(
        self,
        url: str,
        channels: Sequence[str],
        on_notice: Callable[[str, str], None],
        *,
        on_reconnect: Callable[[], None] | None = None,
        application_name: str = LISTEN_APPLICATION_NAME,
        check_interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        """``url`` is the database's SQLAlchemy URL (``postgresql+psycopg://...``); raises ValueError for another
        database, or without a channel."""
        if make_url(url).get_backend_name() != "postgresql":
            raise ValueError("a Listener needs PostgreSQL: SQLite has no NOTIFY")
        if not channels:
            raise ValueError("a Listener needs at least one channel")
        self._conninfo = libpq_url(url)
        self.channels = tuple(channels)
        self._on_notice = on_notice
        self._on_reconnect = on_reconnect
        self.application_name = application_name
        self.check_interval_s = check_interval_s
        self.connections = 0  # how many times a connection started listening (diagnostics, tests)
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, db: Database, channels: Sequence[str], on_notice: Callable[[str, str], None], **options: Any) -> Self:
        """A Listener on ``db``'s database (see ``__init__`` for ``options``)."""
        return cls(db.engine.url.render_as_string(hide_password=False), channels, on_notice, **options)

    def start(self) -> None:
        """Start listening in the background, on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="nodeops-listener")

    async def wait_listening(self, timeout_s: float) -> None:
        """Until the connection LISTENs on every channel; raises TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            await self._listening.wait()

    @property
    def is_listening(self) -> bool:
        return self._listening.is_set()

    async def aclose(self) -> None:
        """Stop listening and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        import psycopg  # only a PostgreSQL deployment gets here

        delay_s = RECONNECT_FIRST_S
        lost = False  # logged once per loss, not once per try
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, application_name=self.application_name
                )
            except (psycopg.Error, OSError) as exc:
                if not lost:
                    log.warning("cannot listen for notices: %s", exc, extra={"action": "listen_failed"})
                    lost = True
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RECONNECT_MAX_S)
                continue
            try:
                await self._listen(conn)
                if lost:
                    log.info("listening for notices again", extra={"action": "listen_resumed"})
                lost, delay_s = False, RECONNECT_FIRST_S
                self._call(self._on_reconnect)
                await self._receive(conn)
            except (psycopg.Error, OSError) as exc:
                if not lost:
                    log.warning(
                        "the connection listening for notices was lost: %s; connecting again",
                        exc,
                        extra={"action": "listen_lost"},
                    )
                    lost = True
            finally:
                self._listening.clear()
                with contextlib.suppress(Exception):
                    await conn.close()
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RECONNECT_MAX_S)

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        from psycopg import sql

        for channel in self.channels:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self.connections += 1
        self._listening.set()

    async def _receive(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Hand over notices until the connection fails; a quiet connection is checked now and then, so a
        connection the network lost silently is found.

        The wait is the event loop's on the connection's socket, with no timer but the check's: psycopg's own
        ``notifies()`` wakes every 0.1 s to look for interrupts, which an idle worker would pay ten times a
        second for each of its listening connections.
        """
        pgconn, encoding = conn.pgconn, conn.info.encoding
        conn.add_notify_handler(lambda n: self._call(self._on_notice, n.channel, n.payload))  # during a query
        loop = asyncio.get_running_loop()
        while True:
            readable = loop.create_future()
            loop.add_reader(pgconn.socket, _set_done, readable)
            try:
                async with asyncio.timeout(self.check_interval_s):
                    await readable
            except TimeoutError:
                await conn.execute("SELECT 1")
                continue
            finally:
                loop.remove_reader(pgconn.socket)
            pgconn.consume_input()  # raises OperationalError when the connection is gone
            while (notice := pgconn.notifies()) is not None:
                self._call(self._on_notice, notice.relname.decode(encoding), notice.extra.decode(encoding))

    def _call(self, callback: Callable[..., None] | None, *args: str) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("a notice's callback failed", extra={"action": "notice_callback_failed"})


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
