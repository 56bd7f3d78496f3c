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
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        code = ""
        first_body = True

        async def observed(message: Message) -> None:
            nonlocal status, code, first_body
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and first_body:
                first_body = False
                code = metrics.envelope_code(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception:
            if status == 0:  # answered by the envelope's last handler, outside this middleware: 3800500
                status, code = 200, str(int(ErrorCode.INTERNAL))
            raise
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) if route is not None else None
            metrics.http_answered(
                template or metrics.UNMATCHED, scope["method"], status, code, time.perf_counter() - started
            )
