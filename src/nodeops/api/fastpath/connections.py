"""Connections: how long a client may take to send a request, and how many connections are open at once.

uvicorn waits for ever for a request's headers and for a body shorter than its Content-Length, and its only
bound on connections (``limit_concurrency``) answers a bare 503 and turns the log lane off. So every protocol
``nodeops serve`` runs with (the lane's and uvicorn's own) is wrapped by ``guard_protocol`` in
``ConnectionGuard``, which adds, from the settings (``ConnectionLimits``):

- a header timeout: from a connection's opening, or from the first byte of each request, to the end of its
  headers; past it a started request is answered 408 (code 3800408) and an empty connection just closed;
- a body timeout: from the end of the headers to the end of the body; past it, 408 (if nothing was answered
  yet; the application then reads a disconnect) and the connection is closed;
- a send timeout: a client that leaves its answer unread (more than the transport's high-water mark, 64 KiB,
  waiting to be sent) for longer than it has its connection aborted; the application's next write returns at
  once and its later ones go nowhere, as after any disconnect;
- a cap on open connections: past it, a new connection is answered 503 (code 3800503) and closed, in the
  envelope, without ever reaching the application.

No timer is allocated per request: the parser's callbacks only stamp the phase a connection is in with a clock
that one timer per server (``ConnectionWatch``) advances, and the same timer sweeps the open connections a few
times per timeout, closing those whose phase lasted too long. A connection is never closed early; it is closed
at most two sweep intervals (``ConnectionWatch.tick_s``, at most 1 s) after its deadline. A client is not held
to a deadline while the server is not reading it (flow control, a pipelined request waiting its turn) or is
still answering its previous request.

It builds on uvicorn's httptools protocol, as ``fastpath.lane`` does, and answers in the envelope (``api.envelope``);
only ``fastpath.wrap_app`` uses it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from nodeops.api.envelope import error_body
from nodeops.api.fastpath.respond import encode_answer
from nodeops.errors import NodeopsError, RequestTimeout, TooManyConnections
from nodeops.request_context import new_request_id, request_id_of, serving
from nodeops.settings import Settings

log = logging.getLogger(__name__)

# what a connection is waiting for, and so which deadline it is held to
_IDLE = 0  # nothing: a request is being answered, or the keep-alive timer (uvicorn's) runs
_OPENED = 1  # the first byte of a new connection (header timeout; closed without an answer, as nginx does)
_HEADERS = 2  # the rest of a request's line and headers (header timeout)
_BODY = 3  # the rest of a request's body (body timeout)
REFUSAL_LINGER_S = 1.0  # how long a refused connection waits for its request, so the client reads the 503


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLimits:
    """The read timeouts and the connection cap of one server (``NODEOPS_HEADER_TIMEOUT_S``,
    ``NODEOPS_BODY_TIMEOUT_S``, ``NODEOPS_MAX_CONNECTIONS``)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    send_timeout_s: float = 60.0
    max_connections: int = 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            send_timeout_s=settings.send_timeout_s,
            max_connections=settings.max_connections,
        )


class ConnectionWatch:
    """The open connections of one server, and the one timer that sweeps them while any is open."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.tick_s = min(1.0, limits.header_timeout_s / 4, limits.body_timeout_s / 4, limits.send_timeout_s / 4)
        self.open: set[ConnectionGuard] = set()
        self.now = 0.0  # the loop's time at the last sweep: what connections stamp their phase with
        self.refused = 0  # connections refused since the cap was last reached
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def admit(self, connection: ConnectionGuard, loop: asyncio.AbstractEventLoop) -> bool:
        """Count ``connection`` as open and return True, or return False when the cap is reached."""
        if len(self.open) >= self.limits.max_connections:
            if not self.refused:
                log.warning(
                    "%d connections open, the limit (NODEOPS_MAX_CONNECTIONS): refusing new ones until some close",
                    len(self.open),
                    extra={"action": "connection_cap_reached", "limit": self.limits.max_connections},
                )
            self.refused += 1
            return False
        self.open.add(connection)
        if self._timer is None:
            self._loop = loop
            self.now = loop.time()
            self._timer = loop.call_later(self.tick_s, self._sweep)
        return True

    def release(self, connection: ConnectionGuard) -> None:
        """Forget a closed connection; the timer stops with the last one."""
        self.open.discard(connection)
        if self.refused and len(self.open) < self.limits.max_connections:
            log.info(
                "below the connection limit again; %d connection(s) were refused meanwhile",
                self.refused,
                extra={"action": "connection_cap_left", "refused": self.refused},
            )
            self.refused = 0
        if not self.open and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sweep(self) -> None:
        assert self._loop is not None
        self.now = now = self._loop.time()
        for connection in tuple(self.open):
            try:
                connection.check_deadline(now)
            except Exception:  # one connection's failure must not stop the timer of all the others
                log.exception("could not check a connection's deadline", extra={"action": "unhandled_error"})
                connection.transport.close()
        self._timer = self._loop.call_later(self.tick_s, self._sweep) if self.open else None


class ConnectionGuard(HttpToolsProtocol):
    """uvicorn's httptools protocol (or a subclass, such as the log lane's) with read timeouts and the cap; used
    through ``guard_protocol``, which gives each server its own ``watch``."""

    watch: ClassVar[ConnectionWatch]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = _IDLE
        self._since = 0.0  # when the phase began, on the watch's clock
        self._unread_since = 0.0  # when the transport last paused our writes (the client not reading)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self.watch.admit(self, self.loop):
            _refuse(transport, self.server_state.default_headers, self.watch.limits, self.loop)
            return
        super().connection_made(transport)
        self._phase, self._since = _OPENED, self.watch.now

    def connection_lost(self, exc: Exception | None) -> None:
        self.watch.release(self)
        self._phase = _IDLE
        super().connection_lost(exc)

    # the parser's callbacks: each stamps the phase it begins, nothing more
    def on_message_begin(self) -> None:
        self._phase, self._since = _HEADERS, self.watch.now
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._phase, self._since = _BODY, self.watch.now
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        super().on_message_complete()

    # the transport's flow control: above its high-water mark it pauses our writes, below its low mark resumes them
    def pause_writing(self) -> None:
        self._unread_since = self.watch.now
        super().pause_writing()

    def check_deadline(self, now: float) -> None:
        """Close the connection if the phase it is in has lasted past its timeout, or if the client has left its
        answer unread too long (called by the watch's sweep)."""
        if self.flow.write_paused and now - self._unread_since >= self.watch.limits.send_timeout_s + self.watch.tick_s:
            self._phase = _IDLE
            self._abort_unread()
            return
        phase = self._phase
        if phase == _IDLE:
            return
        limits = self.watch.limits
        timeout_s = limits.body_timeout_s if phase == _BODY else limits.header_timeout_s
        if now - self._since < timeout_s + self.watch.tick_s:  # the stamp may be up to one tick old
            return
        cycle = self.cycle
        if phase == _BODY:  # is the client waiting for our "100 Continue"?
            waiting_for_us = cycle is not None and cycle.waiting_for_100_continue
        else:  # or for the answer to its previous request?
            waiting_for_us = cycle is not None and not cycle.response_complete
        if waiting_for_us or self.flow.read_paused:  # (or we stopped reading it: flow control, pipelining)
            self._since = now  # the client's time has not begun
            return
        self._phase = _IDLE
        if not self.transport.is_closing():
            self._time_out(phase, timeout_s)

    def _abort_unread(self) -> None:
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        unsent = self.transport.get_write_buffer_size()
        timeout_s = self.watch.limits.send_timeout_s
        log.info(
            "closed the connection of %s: it left %d bytes of its answer unread for %g s",
            client,
            unsent,
            timeout_s,
            extra={"action": "send_timeout", "client": client, "unsent_bytes": unsent},
        )
        self.transport.abort()  # close() would wait for the client to read what is left

    def _time_out(self, phase: int, timeout_s: float) -> None:
        # once its headers are in, the request has its id; before, its answer and log line get a fresh one
        request_id = request_id_of(self.headers) if phase == _BODY else new_request_id()
        with serving(request_id):
            self._time_out_request(phase, timeout_s, request_id)

    def _time_out_request(self, phase: int, timeout_s: float, request_id: str) -> None:
        part = "body" if phase == _BODY else "headers"
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        log.info(
            "closed the connection of %s: the request's %s did not arrive within %g s",
            client,
            part,
            timeout_s,
            extra={"action": "request_timeout", "part": part, "client": client},
        )
        answer = phase != _OPENED
        cycle = self.cycle
        if phase == _BODY and cycle is not None:
            if cycle.response_started:  # answered already (a refusal before the body, or a previous request's)
                answer = False
            else:  # the application waiting for the body reads a disconnect, and what it sends goes nowhere
                cycle.disconnected = True
                cycle.message_event.set()
        if answer:
            error = RequestTimeout(part=part, timeout_s=timeout_s)
            self.transport.write(_closing_answer(408, error, self.server_state.default_headers, request_id))
        self.transport.close()


def guard_protocol(base: type[HttpToolsProtocol], limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """``base`` (uvicorn's httptools protocol or a subclass) with the read timeouts and the cap of ``limits``;
    each call makes a class with its own watch, for one server."""
    return type(f"Guarded{base.__name__}", (ConnectionGuard, base), {"watch": ConnectionWatch(limits)})


def _closing_answer(
    status: int, error: NodeopsError, default_headers: list[tuple[bytes, bytes]], request_id: str
) -> bytes:
    """A whole HTTP answer carrying ``error`` in the envelope, announcing that the connection closes; called with
    ``request_id`` current."""
    extra = b"retry-after: 1\r\n" if status == 503 else b""
    return encode_answer(status, default_headers, error_body(error), request_id=request_id, close=True, extra=extra)


def _refuse(
    transport: asyncio.Transport,
    default_headers: list[tuple[bytes, bytes]],
    limits: ConnectionLimits,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Answer a connection past the cap with 503 and close it once its request has arrived (read, so that the
    close is not a reset the client would see instead of the answer), or after ``REFUSAL_LINGER_S``."""
    request_id = new_request_id()  # no request has arrived: the answer's own
    with serving(request_id):
        refusal = TooManyConnections(limit=limits.max_connections)
        transport.write(_closing_answer(503, refusal, default_headers, request_id))
    transport.set_protocol(_Refused(transport, loop.call_later(REFUSAL_LINGER_S, transport.close)))


class _Refused(asyncio.Protocol):
    """A refused connection, answered already: whatever the client sends closes it."""

    def __init__(self, transport: asyncio.Transport, linger: asyncio.TimerHandle) -> None:
        self.transport = transport
        self.linger = linger

    def data_received(self, data: bytes) -> None:
        self.transport.close()

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.linger.cancel()
