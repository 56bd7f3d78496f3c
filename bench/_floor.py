"""The HTTP floor of the log API benchmark: a bare ASGI app answering every request with one fixed body.

It runs on the same stack as ``nodeops serve`` (uvicorn, one process, uvloop, httptools, access log off,
proxy headers off) and sends the same headers as the log fast path (content-type, content-length), so what
it costs per request is what HTTP through ASGI costs on this machine.

With ``--lane``, the log API's addresses are answered instead by the log lane (``nodeops.api.fastpath.lane``, the
protocol ``nodeops serve`` uses on SQLite) with the same fixed body and no store: what the lane costs without
reading anything, below ASGI.

Usage: ``.venv/bin/python bench/_floor.py --port 8123 --size 4096 [--lane]`` (binds 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

_HEAD = b'{"result":true,"code":0,"message":"success","data":"'
_TAIL = b'"}'


def fixed_body(size: int) -> bytes:
    """A JSON envelope of exactly ``size`` bytes (at least the bare envelope's length)."""
    return _HEAD + b"x" * max(0, size - len(_HEAD) - len(_TAIL)) + _TAIL


def make_app(size: int) -> ASGIApp:
    body = fixed_body(size)
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    payload = {"type": "http.response.body", "body": body}

    async def app(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] == "http":
            await send(start)
            await send(payload)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    return app


class FixedAnswers:
    """In place of ``LogService`` for the lane floor: every request's ``data`` is the same JSON."""

    class db:  # what the lane reads of the service's database: its answers come inline
        reads_inline = True

    def __init__(self, size: int) -> None:
        self.data = fixed_body(size)[len(_HEAD) - 1 : -1]  # the quoted string that fills the envelope to size

    def answer_batch(self, requests: list[Any], request_ids: list[str] | None = None) -> list[bytes]:
        return [self.data] * len(requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, required=True, help="body size in bytes")
    parser.add_argument("--lane", action="store_true", help="answer the log API's addresses through the log lane")
    args = parser.parse_args()

    import uvicorn

    http: Any = "httptools"
    if args.lane:
        from nodeops.api.fastpath.lane import LogLane

        http = LogLane(FixedAnswers(args.size), enabled=True).protocol()  # type: ignore[arg-type]

    # the same options as `nodeops serve` (src/nodeops/cli/app.py)
    uvicorn.run(
        make_app(args.size),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        loop="uvloop",
        http=http,
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
