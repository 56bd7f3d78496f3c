"""The id of the request being served: what the envelope's ``request_id`` (spec §1.2) and the log records made
while serving it carry, so an answer can be found in the service's log.

The API sets it once per request (``api.fastpath.request_ids``; the log lane and the connection guard for the
answers they write themselves), from the caller's ``X-Request-Id`` when it is sane, else a new one; the envelope
(``api.envelope``) and the log formatter (``process_logging``) read it. It lives in a ``ContextVar``, so each
request's task sees its own, and nothing outside a request sees any. Imports nothing else from nodeops.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextvars import ContextVar, Token
from random import getrandbits
from types import TracebackType

REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID_CHARS = 64
# what a caller's id may be: echoed in a header and logged, so nothing that could split a line or a header,
# close a JSON string or an HTML attribute, and nothing that is not ASCII
_SANE = re.compile(rb"[A-Za-z0-9._-]{1,%d}" % MAX_REQUEST_ID_CHARS)

REQUEST_ID: ContextVar[str | None] = ContextVar("nodeops_request_id", default=None)


def new_request_id() -> str:
    """A fresh id: 32 random hex digits, the shape of ESB's uuid4 hex.

    From ``random``, not ``os.urandom``: an id only finds log lines and guards nothing, and the log lane makes one
    per answer, where a system call would cost more than the rest of the id. ``random`` is seeded from the
    system's entropy and re-seeded in a forked child, so processes never share a sequence."""
    return getrandbits(128).to_bytes(16).hex()


def accept_request_id(value: bytes | None) -> str:
    """The caller's ``X-Request-Id`` when it is 1 to 64 of ``[A-Za-z0-9._-]``, else a fresh id (a bad one is
    dropped, never echoed)."""
    if value is not None and _SANE.fullmatch(value):
        return value.decode("ascii")
    return new_request_id()


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The id for a request with these (lower-cased) headers: its first ``X-Request-Id`` if sane, else a fresh one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            return accept_request_id(value)
    return new_request_id()


def current_request_id() -> str | None:
    """The id of the request being served, or None outside any request."""
    return REQUEST_ID.get()


class serving:  # used as a function would be: ``with serving(request_id):``
    """Within the block, ``request_id`` is the current request's id; the previous one is restored after. For the
    answers written outside a request's own task (the log lane's batches, the connection guard's timer). A class
    rather than a generator: the log lane enters one per answer."""

    __slots__ = ("_request_id", "_token")

    def __init__(self, request_id: str) -> None:
        self._request_id = request_id
        self._token: Token[str | None] | None = None

    def __enter__(self) -> None:
        self._token = REQUEST_ID.set(self._request_id)

    def __exit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        assert self._token is not None
        REQUEST_ID.reset(self._token)
