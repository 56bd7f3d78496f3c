"""``X-Content-Type-Options: nosniff`` on every answer: a browser never takes a JSON answer or a downloaded log
for a page or a script, whatever a host wrote into it.

The framework's answers get it from ``NoSniff`` (a middleware of the FastAPI app); the answers written outside
the framework (the log fast path, the heartbeat path, the body limit, the log lane's raw HTTP) carry it in
``envelope.JSON_HEADERS``, so the log lane and the ASGI path still answer byte for byte alike.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOSNIFF = (b"x-content-type-options", b"nosniff")


class NoSniff:
    """Adds ``NOSNIFF`` to every HTTP answer that does not carry an ``X-Content-Type-Options`` of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if all(name.lower() != NOSNIFF[0] for name, _value in headers):
                    message = {**message, "headers": [*headers, NOSNIFF]}
            await send(message)

        await self.app(scope, receive, send_with_header)
