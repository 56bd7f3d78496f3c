"""The one writer of the answers made outside the framework: an envelope, as JSON, with its length.

``send_answer`` sends it through ASGI (the log and heartbeat paths, ``api.limits.BodyLimit``); ``encode_answer``
writes the same answer as raw HTTP, for the protocol to write itself (the log lane's answers, and the 408 and 503
of ``fastpath.connections``). Both put ``envelope.JSON_HEADERS`` (content type and nosniff) and the content
length in that order, after uvicorn's default headers (server, date), then the request's ``X-Request-Id`` (on
the ASGI path added by ``fastpath.request_ids``), so the log lane and the ASGI path answer byte for byte alike.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from nodeops.api.envelope import JSON_HEADERS
from nodeops.request_context import REQUEST_ID_HEADER

# our headers, up to the content length's value, as raw HTTP
_JSON_HEAD = b"".join(name + b": " + value + b"\r\n" for name, value in JSON_HEADERS) + b"content-length: "
_ID_HEAD = b"\r\n" + REQUEST_ID_HEADER + b": "


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


def encode_answer(
    status: int,
    default_headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
    *,
    request_id: str,
    close: bool,
    extra: bytes = b"",
) -> bytes:
    """``body`` (an envelope) as a whole raw HTTP answer: the status line, the server's ``default_headers``, ours,
    ``request_id`` (``X-Request-Id``), ``extra`` (whole header lines), ``connection: close`` when ``close``, then
    the body; written in one piece."""
    head = [STATUS_LINE[status]]
    for name, value in default_headers:
        head += (name, b": ", value, b"\r\n")
    head += (_JSON_HEAD, str(len(body)).encode(), _ID_HEAD, request_id.encode(), b"\r\n", extra)
    head.append(b"connection: close\r\n\r\n" if close else b"\r\n")
    head.append(body)
    return b"".join(head)
