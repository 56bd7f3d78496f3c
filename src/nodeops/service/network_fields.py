"""The fields shared by the cloud area, access point and install channel requests, each read into ``problems``
under its name (as ``domain.contract`` readers do): a name, a URL, an IP address and a list of them, and the
rule who may change an area.

Values the caller sent are quoted only through ``shown`` (cut short), so a huge one cannot flood an answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from nodeops.domain.contract import shown
from nodeops.domain.params import list_items
from nodeops.errors import Forbidden
from nodeops.service.auth import Caller

MAX_URL_CHARS = 255  # the URL columns of access_points
MAX_SERVERS = 100  # addresses in one list (jump servers, upstream servers): far more than any channel has
URL_SCHEMES = ("http", "https")


def text(value: object, name: str, problems: dict[str, str], *, limit: int, required: bool = False) -> str | None:
    """A text of at most ``limit`` printable characters, its surrounding spaces dropped; None when absent (with
    ``required``: the problem "this field is required") or bad."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            problems[name] = f"this field is required: a text of 1 to {limit} characters"
        return None
    if not isinstance(value, str) or len(value.strip()) > limit or not value.isprintable():
        problems[name] = f"{shown(value)} must be a text of at most {limit} printable characters"
        return None
    return value.strip()


def url(value: object, name: str, problems: dict[str, str]) -> str | None:
    """An http(s) URL with a host and no user or password (its trailing ``/`` dropped); None when absent or bad.
    The problem never repeats a password the caller put in it."""
    if value is None or value == "":
        return None
    # the value is not quoted: it may hold a password (user:password@host)
    problem = f"must be an http:// or https:// URL with a host, at most {MAX_URL_CHARS} characters"
    if not isinstance(value, str) or len(value) > MAX_URL_CHARS or not value.isprintable() or " " in value:
        problems[name] = problem
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        problems[name] = problem
        return None
    if parts.scheme.lower() not in URL_SCHEMES or not parts.hostname:
        problems[name] = problem
        return None
    if parts.username is not None or parts.password is not None:  # it would be shown in lists and test logs
        problems[name] = "must not carry a user or password (user:password@): it would be shown to every reader"
        return None
    return value.rstrip("/")


def ip(value: object, name: str, problems: dict[str, str]) -> str | None:
    """An IPv4 or IPv6 address, normalised as Node Manager's ``exploded_ip`` (IPv6 in full); None when bad."""
    try:
        return ipaddress.ip_address(value.strip() if isinstance(value, str) else "").exploded
    except ValueError:
        problems[name] = f"{shown(value)} is not an IP address"
        return None


def ips(value: object, name: str, problems: dict[str, str], *, required: bool) -> list[str]:
    """A list of at most ``MAX_SERVERS`` IP addresses (``ip``), each once; with ``required``, at least one."""
    found: list[str] = []
    items = list_items(
        value,
        name,
        problems,
        noun=f"IP addresses (at most {MAX_SERVERS})",
        required=required,
        max_items=MAX_SERVERS,
        single=False,
    )
    for where, item in items:
        address = ip(item, where, problems)
        if address is not None and address not in found:
            found.append(address)
    return found


def can_edit_area(caller: Caller, creators: Sequence[object] | None) -> bool:
    """Whether ``caller`` may change or delete an area: a superuser, or one of its creators (Node Manager without
    IAM). Area 0, which nobody created, is the superusers'."""
    return caller.is_superuser or caller.username in (creators or ())


def require_area_right(caller: Caller, creators: Sequence[object] | None, action: str) -> None:
    """Raise Forbidden (3800403) unless ``caller`` may ``action`` (查看, 编辑, 删除) the area."""
    if not can_edit_area(caller, creators):
        raise Forbidden(
            f"您没有{action}该「管控区域」的权限: user {caller.username!r} did not create this cloud area and is not "
            "a superuser"
        )
