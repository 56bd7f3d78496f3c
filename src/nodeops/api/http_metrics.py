"""``HttpMetrics``: every answer of the FastAPI app counted by route template, method, status and envelope code.

The route's template (``/api/job/{job_id}/details/``), never the raw path, is the label: Starlette's router puts
the route it matched in the request's scope, and a path no route matches is ``metrics.UNMATCHED``, so the label
set stays as small as the code's routes. The envelope's code is read from the first bytes of the answer's body
(``metrics.envelope_code``). The fast path's answers (log API, log lane, heartbeats) are counted where they are
written, with the same ``metrics.http_answered``.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nodeops import metrics
from nodeops.errors import ErrorCode


class HttpMetrics:
    """Counts and times each HTTP request of the app it wraps (``create_app``: the outermost middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await _Answer(scope, send).observe(self.app, receive)
        else:  # lifespan, websockets: nothing to count
            await self.app(scope, receive, send)


class _Answer:
    """One request's answer as it is sent: its status and envelope code."""

    def __init__(self, scope: Scope, send: Send) -> None:
        self.scope = scope
        self.send = send
        self.started = time.perf_counter()
        self.status = 0
        self.code = ""
        self.first_body = True

    async def observe(self, app: ASGIApp, receive: Receive) -> None:
        """Run ``app`` on the request, then count it with its route's template (set by the router in the scope)."""
        try:
            await app(self.scope, receive, self._sent)
        except Exception:
            if self.status == 0:  # answered by the envelope's last handler, outside this middleware: 3800500
                self.status, self.code = 200, str(int(ErrorCode.INTERNAL))
            raise
        finally:
            route = self.scope.get("route")
            template = getattr(route, "path", None) if route is not None else None
            seconds = time.perf_counter() - self.started
            metrics.http_answered(template or metrics.UNMATCHED, self.scope["method"], self.status, self.code, seconds)

    async def _sent(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body" and self.first_body:
            self.first_body = False
            self.code = metrics.envelope_code(message.get("body", b""))
        await self.send(message)
