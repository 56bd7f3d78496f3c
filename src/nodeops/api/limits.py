"""``BodyLimit``: refuse request bodies over ``MAX_BODY_BYTES`` on every framework route (3800413).

The log API's and the heartbeat's fast paths read their own bodies under the same limit and the same
Content-Length check (``bodies.read_json_body``).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nodeops.api.bodies import check_content_length
from nodeops.api.envelope import error_body
from nodeops.api.fastpath.respond import send_answer
from nodeops.errors import BodyTooLarge
from nodeops.settings import MAX_BODY_BYTES


class BodyLimit:
    """Answers 3800413 up front when Content-Length is too large; otherwise counts what is received and
    raises BodyTooLarge (answered by the envelope's handler) once a streamed body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_content_length(scope["headers"], self.max_bytes)
        except BodyTooLarge as exc:
            await send_answer(send, error_body(exc))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge(limit_bytes=self.max_bytes)
            return message

        await self.app(scope, counted, send)
