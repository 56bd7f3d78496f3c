"""Agent heartbeats: a host's agent proves itself with its per-host token and reports its version.

``read_heartbeat`` turns a body into what the store records; the heartbeat API goes through
``service.heartbeat_groups``, which writes the heartbeats that arrive together in one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from nodeops.domain.params import int_value
from nodeops.errors import InvalidInput
from nodeops.store.agents import AgentHeartbeat

_VERSION_MAX = 64


def parse_heartbeat(body: Mapping[str, object]) -> tuple[int, str, str]:
    """``(bk_host_id, token, version)`` of a heartbeat body; InvalidInput names each bad field."""
    problems: dict[str, str] = {}
    host_id = int_value(body.get("bk_host_id"), "bk_host_id", problems)  # never past the store's BIGINT
    token, version = body.get("token"), body.get("version")
    if not isinstance(token, str) or not token:
        problems["token"] = "is required"
    if not isinstance(version, str) or not 0 < len(version) <= _VERSION_MAX:
        problems["version"] = f"must be a string of 1 to {_VERSION_MAX} characters"
    elif not is_storable_text(version):
        # PostgreSQL refuses a NUL in text, and neither driver can encode a lone surrogate: written together with
        # others, such a version would fail the whole group's transaction
        problems["version"] = "must not contain NUL or an unpaired surrogate"
    if problems:
        raise InvalidInput(problems)
    assert isinstance(host_id, int) and isinstance(token, str) and isinstance(version, str)
    return host_id, token, version


def is_storable_text(text: str) -> bool:
    """Whether both databases store ``text`` as it is: no NUL, valid UTF-8 once encoded."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def read_heartbeat(body: Mapping[str, object]) -> AgentHeartbeat:
    """What the store records of a heartbeat body: the host, the SHA-256 of its token (all the store keeps),
    the version. Raises InvalidInput as ``parse_heartbeat``."""
    host_id, token, version = parse_heartbeat(body)
    return AgentHeartbeat(host_id, hashlib.sha256(token.encode()).digest(), version)
