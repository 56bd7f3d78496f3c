"""``RequestIds``: the outermost ASGI layer, which gives every HTTP request its id (``nodeops.request_context``).

The id is the caller's ``X-Request-Id`` when it is sane, else a fresh one; within the request it is the current
request id, so the envelope's ``request_id`` (``api.envelope``) and every log record made while serving the
request carry it, and every answer carries it in an ``X-Request-Id`` header. The log lane, below ASGI, does the
same for its answers itself (``fastpath.lane``), as the connection guard does for its 408 and 503
(``fastpath.connections``).

It also carries the uvicorn ``http`` protocol the application is served with (``wrap_app``).
"""

from __future__ import annotations

import asyncio

from nodeops.api.fastpath.log import ASGIApp, Message, Receive, Scope, Send
from nodeops.request_context import REQUEST_ID, REQUEST_ID_HEADER, request_id_of


class RequestIds:
    """ASGI app giving each HTTP request of ``app`` its id: current while ``app`` serves it, and in the answer's
    ``X-Request-Id`` header (after the answer's own headers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # the uvicorn ``http`` protocol to serve this application with (``wrap_app`` sets the lane's)
        self.http_protocol: type[asyncio.Protocol] | str = "httptools"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope["headers"])
        header = (REQUEST_ID_HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        token = REQUEST_ID.set(request_id)
        await self.app(scope, receive, send_with_id)
        # not in ``finally``: an exception that escapes is logged by the server once this returns, with this id
        # still current (each request runs in a task of its own, which ends with it)
        REQUEST_ID.reset(token)
