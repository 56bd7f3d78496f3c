"""The one writer of the answers made outside the framework: an envelope, as JSON, with its length.

``send_answer`` sends it through ASGI (the log and heartbeat paths, ``api.limits.BodyLimit``). The headers are
``envelope.JSON_HEADERS`` (content type and nosniff) and the content length, in that order, which the
framework's answers do not need to match but the log lane does (``api.fastpath.lane``): both paths answer byte
for byte alike.
"""

from __future__ import annotations

from starlette.types import Send

from nodeops.api.envelope import JSON_HEADERS


async def send_answer(send: Send, body: bytes) -> None:
    """Send ``body`` (an envelope) as an HTTP 200 JSON answer, in one start and one body message."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
