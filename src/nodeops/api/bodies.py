"""Request bodies: a JSON object, tolerating the trailing comma of the log API documentation's example."""

from __future__ import annotations

from typing import Any

import orjson

from nodeops.errors import InvalidInput


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object body (``{}`` when empty); raises InvalidInput naming ``body`` otherwise."""
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            value = orjson.loads(strip_trailing_commas(raw.decode("utf-8", errors="replace")))
        except orjson.JSONDecodeError as exc:
            raise InvalidInput.field("body", f"is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(value, dict):
        raise InvalidInput.field("body", 'must be a JSON object such as {"job_id": 1, "instance_id": "..."}')
    return value


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
