"""Request bodies: their size limit, and a JSON object, tolerating the trailing comma of the log API
documentation's example."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson
from starlette.requests import ClientDisconnect

from nodeops.errors import BodyTooLarge, InvalidInput
from nodeops.settings import MAX_BODY_BYTES

log = logging.getLogger(__name__)
# No request of the API nests more than 8 levels (an inventory import). Past a few hundred, what reads a body
# recursively (Python's recursion limit is 1000; orjson.dumps stops at 255 when a value is stored) fails.
MAX_BODY_DEPTH = 32
_TOO_DEEP = f"is nested too deep: at most {MAX_BODY_DEPTH} levels of objects and arrays"


def check_content_length(headers: Iterable[tuple[bytes, bytes]], max_bytes: int = MAX_BODY_BYTES) -> None:
    """Raise BodyTooLarge when the request's Content-Length says more than ``max_bytes``: it is refused before a
    byte of its body is read (a body without one is counted as it arrives)."""
    for name, value in headers:
        if name == b"content-length" and value.isdigit() and int(value) > max_bytes:
            raise BodyTooLarge(limit_bytes=max_bytes)


async def read_json_body(
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]], headers: Iterable[tuple[bytes, bytes]]
) -> dict[str, Any]:
    """Read a JSON object body of at most ``MAX_BODY_BYTES`` straight from an ASGI ``receive`` channel; raises
    BodyTooLarge past the limit (at once when ``headers`` declare more), InvalidInput as ``parse_json_object``,
    and ClientDisconnect (as Starlette's ``Request.body``) when the client goes away before the end of its body."""
    check_content_length(headers)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge(limit_bytes=MAX_BODY_BYTES)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return parse_json_object(b"".join(chunks))


def log_client_gone(method: object, path: object) -> None:
    """Log, in one line, a request whose client went away before sending its whole body: the client's doing,
    not an error of ours (no traceback), and nobody is left to answer."""
    log.info(
        "%s %s: the client closed the connection before sending its whole body",
        method,
        path,
        extra={"action": "client_disconnected"},
    )


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object body (``{}`` when empty) of at most ``MAX_BODY_DEPTH`` levels of objects and arrays;
    raises InvalidInput naming ``body`` otherwise."""
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            value = orjson.loads(strip_trailing_commas(raw.decode("utf-8", errors="replace")))
        except orjson.JSONDecodeError as exc:
            if "depth" in exc.msg:  # orjson's own limit, 1024 levels
                raise InvalidInput.field("body", _TOO_DEEP) from None
            raise InvalidInput.field("body", f"is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(value, dict):
        raise InvalidInput.field("body", 'must be a JSON object such as {"job_id": 1, "instance_id": "..."}')
    # a body cannot nest deeper than it has brackets: most bodies are settled by counting them
    if raw.count(b"{") + raw.count(b"[") > MAX_BODY_DEPTH and _is_deeper(value, MAX_BODY_DEPTH):
        raise InvalidInput.field("body", _TOO_DEEP)
    return value


def _is_deeper(value: object, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` levels deep (walked without recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, dict | list):
                if depth == limit:
                    return True
                stack.append((child, depth + 1))
    return False


def strip_trailing_commas(text: str) -> str:
    """Drop commas that directly precede ``}`` or ``]`` outside strings (the seed's example has one)."""
    out: list[str] = []
    in_string = escaped = False
    pending_comma = -1
    for char in text:
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char in "}]" and pending_comma >= 0:
            del out[pending_comma]
        if char == ",":
            pending_comma = len(out)
        elif not char.isspace():
            pending_comma = -1
        if char == '"':
            in_string = True
        out.append(char)
    return "".join(out)


COMMON_ARGS = frozenset({"bk_app_code", "bk_app_secret", "bk_token", "bk_username"})  # authentication reads them


def refuse_nul(params: dict[str, Any]) -> None:
    """Raise InvalidInput naming every text (key or value, at any depth) holding a NUL byte: no stored text may
    contain one (PostgreSQL refuses it), so it is refused before it can reach a lookup or a write."""
    problems: dict[str, str] = {}

    def walk(value: object, where: str) -> None:
        if isinstance(value, str):
            if "\x00" in value:
                problems[where] = "must not contain a NUL byte (\\x00)"
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{where}.{key}" if where else str(key)
                if "\x00" in str(key):
                    problems[name.replace("\x00", "\\x00")] = "a key must not contain a NUL byte (\\x00)"
                else:
                    walk(item, name)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]")

    walk({k: v for k, v in params.items() if k not in COMMON_ARGS}, "")
    if problems:
        raise InvalidInput(problems)
