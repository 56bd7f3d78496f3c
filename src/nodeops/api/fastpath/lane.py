"""The log lane: the log API's GETs answered by the HTTP protocol itself, below ASGI, in batches.

``nodeops serve`` runs uvicorn with httptools. Through ASGI, each request costs a scope, a task, two sends and
two writes before our code runs at all; the log API needs none of that. So ``LogLane.protocol()`` is uvicorn's
httptools protocol with one change: a GET (without an upgrade) to one of the log API's addresses
(``fastpath.log.log_address``), on a connection with nothing else in flight, is answered by the lane instead of
becoming an ASGI request. Everything else goes on to ASGI unchanged, the log API's POST and HEAD too
(``fastpath.log.LogFastPath``).

The lane collects the log requests that arrive in one turn of the event loop and answers them together
(``LogService.answer_batch``, ``Database.read_batch``):

- on SQLite, at the start of the next turn (``loop.call_soon``), on the loop, in one read transaction: its locks
  are taken once, not once per request, and every request is answered with the store as it was at a moment
  between its arrival and its answer, as when each reads alone;
- on PostgreSQL, the lookups of all the requests in one statement on one of the loop's own connections, then
  the requests those answer on the loop and any other in a reader thread (``Database.read_batch_later``); at
  most ``READING_AT_ONCE`` batches are read at a time, and batches are answered in the order they were taken;
- each answer is one write (status line, headers and body together), and the writes of a batch follow each
  other, so a client waiting on several connections is woken once rather than once per response.

A request that fails to authenticate is counted in the store before it is answered (``Authenticator.refused``,
docs/security.md "Throttling"), so a block holds from the next request on, even within the same batch.

Requests are read, validated and answered by the same functions as on the ASGI path (``fastpath.log.prepare``,
``LogService``, ``fastpath.log.envelope``), so both answer byte for byte alike; the tests run the log API through
the lane on both stores. A connection's answers keep its requests' order: a request the lane does not take, on a
connection with answers still due, first has them written (on SQLite the batch is answered at once; on
PostgreSQL the request waits in uvicorn's pipeline queue until the lane's last answer on that connection).

The protocol relies on uvicorn's httptools protocol (parser callbacks, ``cycle``, ``pipeline``, the keep-alive
timer, ``on_response_complete``); ``pyproject.toml`` pins uvicorn to the versions it was written for, and
``LogLane.protocol`` falls back to the plain protocol if those attributes are missing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from nodeops import metrics
from nodeops.api.fastpath.log import envelope, log_address, log_route, prepare
from nodeops.api.fastpath.respond import encode_answer
from nodeops.domain.i18n import DEFAULT_LANGUAGE
from nodeops.request_context import request_id_of, serving
from nodeops.service.instance_log import LogService, Prepared

log = logging.getLogger(__name__)

# what the protocol uses of uvicorn's: without any of these, the lane is off
_NEEDS = (
    "on_message_begin",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
    "_unset_keepalive_if_required",
    "shutdown",
)
PIPELINE_PAUSE = 64  # a connection's requests waiting in the batch at which the lane stops reading it
READING_AT_ONCE = 2  # PostgreSQL: batches read at a time (one being read while the next is asked for)


@dataclass(slots=True)
class _Request:
    """One log request waiting in the batch."""

    protocol: LaneProtocol
    prepared: Prepared
    path: str
    keep_alive: bool
    route: str  # its address template: the route label of its metrics
    arrived_s: float  # time.perf_counter() when its headers were read
    request_id: str  # its id (``nodeops.request_context``), as ``fastpath.request_ids`` gives the others


class LogLane:
    """Batches of log API GETs answered below ASGI; one per served application (``create_app``), served by one
    uvicorn server (one event loop, the thread whose SQLite cursor the reads use)."""

    def __init__(self, logs: LogService, *, enabled: bool) -> None:
        self.logs = logs
        self.enabled = enabled
        self.inline = logs.db.reads_inline  # SQLite: a batch is answered at once; else when it has been read
        self._waiting: list[_Request] = []
        # batches being read (PostgreSQL), oldest first: answered in that order
        self._reading: collections.deque[tuple[list[_Request], asyncio.Future[list[bytes | Exception]]]] = (
            collections.deque()
        )
        self.batches = 0  # answered so far, and the requests in them: the lane's own figures
        self.requests = 0

    def protocol(self) -> type[HttpToolsProtocol]:
        """The uvicorn ``http`` protocol class to serve with: with the lane when it is on, else uvicorn's own."""
        if not self.enabled:
            return HttpToolsProtocol
        missing = [name for name in _NEEDS if not hasattr(HttpToolsProtocol, name)]
        if missing:
            log.warning("the log lane is off: this uvicorn's httptools protocol has no %s", ", ".join(missing))
            return HttpToolsProtocol
        lane = self
        return type("LaneProtocol", (LaneProtocol,), {"lane": lane})

    def add(self, request: _Request, loop: asyncio.AbstractEventLoop) -> None:
        if not self._waiting:
            loop.call_soon(self.answer_waiting)
        self._waiting.append(request)

    def answer_waiting(self) -> None:
        """Answer every waiting request, in arrival order; it never raises. On PostgreSQL the batch is read
        meanwhile (``Database.read_batch_later``) and answered once it and every batch before it are read, so a
        connection's answers keep their order; at most ``READING_AT_ONCE`` batches are read at a time, and the
        next waits for one of them."""
        if len(self._reading) >= READING_AT_ONCE:
            return  # a batch being read takes these next (``_read``)
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return  # answered early, for a connection's order (LaneProtocol.on_headers_complete)
        prepared = [request.prepared for request in waiting]
        request_ids = [request.request_id for request in waiting]
        if self.inline:
            try:
                outcomes: list[bytes | Exception] = self.logs.answer_batch(prepared, request_ids)
            except Exception as exc:  # the batch itself failed: every request gets the error
                outcomes = [exc] * len(waiting)
            self._respond(waiting, outcomes)
            return
        try:
            reading = self.logs.answer_batch_later(prepared, request_ids)
        except Exception as exc:  # e.g. the loop is closing: every request gets the error
            self._respond(waiting, [exc] * len(waiting))
            return
        self._reading.append((waiting, reading))
        reading.add_done_callback(self._read)

    def _read(self, _done: asyncio.Future[list[bytes | Exception]]) -> None:
        while self._reading and self._reading[0][1].done():
            waiting, reading = self._reading.popleft()
            outcomes: list[bytes | Exception]
            if reading.cancelled():
                outcomes = [ConnectionAbortedError("the server is stopping")] * len(waiting)
            elif (exc := reading.exception()) is not None:
                outcomes = [exc if isinstance(exc, Exception) else RuntimeError(str(exc))] * len(waiting)
            else:
                outcomes = reading.result()
            self._respond(waiting, outcomes)
        if self._waiting:
            self.answer_waiting()

    def _respond(self, waiting: list[_Request], outcomes: list[bytes | Exception]) -> None:
        self.batches += 1
        self.requests += len(waiting)
        now_s = time.perf_counter()
        for request, outcome in zip(waiting, outcomes, strict=True):
            metrics.http_answered(request.route, "GET", 200, metrics.outcome_code(outcome), now_s - request.arrived_s)
            prepared = request.prepared
            language = DEFAULT_LANGUAGE if isinstance(prepared, Exception) else prepared[2]
            try:
                with serving(request.request_id):  # the envelope's request_id, and its error's log record
                    body = envelope(outcome, "GET", request.path, language)
                request.protocol.lane_respond(body, request.keep_alive, request.request_id)
            except Exception:  # one connection's failure is not the others'
                log.exception("could not answer a log request", extra={"action": "unhandled_error"})
                request.protocol.transport.close()


class _LaneBusy:
    """Stands for the lane's answers a connection still waits for, as uvicorn's current ``cycle``: a request
    parsed meanwhile is queued in uvicorn's pipeline instead of starting at once. It has what uvicorn's protocol
    touches of a cycle that has not answered yet."""

    def __init__(self) -> None:
        self.response_complete = False
        self.keep_alive = True
        self.disconnected = False
        self.message_event = asyncio.Event()


def _split_url(url: bytes) -> tuple[bytes, bytes]:
    """The path and query of a request target: split at ``?`` for the origin form every client sends, else as
    the HTTP parser splits it (an absolute URL, a fragment)."""
    if url.startswith(b"/") and b"#" not in url:
        path, _, query = url.partition(b"?")
        return path, query
    parsed = httptools.parse_url(url)
    return parsed.path or b"", parsed.query or b""


class LaneProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the log API's GETs handed to ``lane``."""

    lane: LogLane

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lane_request: _Request | None = None  # the request being parsed, when the lane takes it
        self._lane_waiting = 0  # this connection's requests in the lane's batch
        self._lane_closing = False  # the server is stopping: close once the lane's answers are written

    def on_headers_complete(self) -> None:
        self._lane_request = self._lane_take()
        if self._lane_request is not None:
            return
        if self._lane_waiting:  # answers of this connection come first, in the order asked
            self.lane.answer_waiting()
            self._unset_keepalive_if_required()  # the connection is busy again: no idle timeout
        if self._lane_waiting:  # still being read (PostgreSQL): the request waits in uvicorn's pipeline, and
            self.cycle = cast(Any, _LaneBusy())  # the lane's last answer here starts it (``lane_respond``)
        super().on_headers_complete()

    def _lane_take(self) -> _Request | None:
        """The lane's request for what was just parsed, or None when it goes to ASGI."""
        parser = self.parser
        if parser.get_method() != b"GET" or parser.should_upgrade() or self.limit_concurrency is not None:
            return None
        if not (self.cycle is None or self.cycle.response_complete) or self.pipeline or self.flow.write_paused:
            return None  # an ASGI request in flight, or a client not reading: ASGI keeps the order and the pace
        raw_path, query = _split_url(self.url)
        path = raw_path.decode("latin-1")  # what is not ASCII is no log address: uvicorn answers it as it would
        if "%" in path:
            path = urllib.parse.unquote(path)
        address = log_address(self.root_path + path)
        if address is None:
            return None
        prepared: Prepared
        try:
            client = self.client[0] if self.client else ""
            prepared = prepare("GET", query, self.headers, address[1], None, client=client)
        except Exception as exc:  # answered in its turn, as its error (``fastpath.log.envelope``)
            prepared = exc
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        return _Request(
            protocol=self,
            prepared=prepared,
            path=path,
            keep_alive=keep_alive,
            route=log_route(path, address[1]),
            arrived_s=time.perf_counter(),
            request_id=request_id_of(self.headers),
        )

    def on_body(self, body: bytes) -> None:
        if self._lane_request is None:
            super().on_body(body)
        # else: the body of a GET, which the log API does not read (as on the ASGI path)

    def on_message_complete(self) -> None:
        request, self._lane_request = self._lane_request, None
        if request is None:
            super().on_message_complete()
            return
        self._lane_waiting += 1
        if self._lane_waiting == PIPELINE_PAUSE:  # a client pipelining without reading: read on once answered
            self.flow.pause_reading()
        self.lane.add(request, self.loop)

    def lane_respond(self, body: bytes, keep_alive: bool, request_id: str) -> None:
        """Write one answer of the lane: the status line, uvicorn's default headers (server, date), ours, body."""
        self._lane_waiting -= 1
        if self.transport.is_closing():
            return  # the client went away while its answer was being read
        close = not keep_alive or (self._lane_closing and not self._lane_waiting)
        default_headers = self.server_state.default_headers
        self.transport.write(encode_answer(200, default_headers, body, request_id=request_id, close=close))
        if close:
            self.server_state.total_requests += 1
            self.transport.close()
        elif self._lane_waiting:
            self.server_state.total_requests += 1
        else:  # the last answer this connection waits for: the idle timeout starts (or a request waiting in
            self._unset_keepalive_if_required()  # the pipeline behind the lane's answers starts), as after
            self.on_response_complete()  # any response

    def shutdown(self) -> None:
        if self._lane_waiting:  # answer what was asked before the connection closes
            self.lane.answer_waiting()
        if self._lane_waiting and (self.cycle is None or self.cycle.response_complete):
            self._lane_closing = True  # still being read: the last answer closes the connection
            return
        super().shutdown()
