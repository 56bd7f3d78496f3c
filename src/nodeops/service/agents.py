"""Agent heartbeats: a host's agent proves itself with its per-host token and reports its version."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from nodeops.errors import AgentTokenRejected, InvalidInput
from nodeops.store import pipelines
from nodeops.store.db import Database

_VERSION_MAX = 64


def parse_heartbeat(body: Mapping[str, object]) -> tuple[int, str, str]:
    """``(bk_host_id, token, version)`` of a heartbeat body; InvalidInput names each bad field."""
    problems: dict[str, str] = {}
    host_id = body.get("bk_host_id")
    if isinstance(host_id, bool) or not isinstance(host_id, int) or host_id <= 0:
        problems["bk_host_id"] = "must be a positive integer"
    token, version = body.get("token"), body.get("version")
    if not isinstance(token, str) or not token:
        problems["token"] = "is required"
    if not isinstance(version, str) or not 0 < len(version) <= _VERSION_MAX:
        problems["version"] = f"must be a string of 1 to {_VERSION_MAX} characters"
    if problems:
        raise InvalidInput(problems)
    assert isinstance(host_id, int) and isinstance(token, str) and isinstance(version, str)
    return host_id, token, version


def accept_heartbeat(db: Database, body: Mapping[str, object]) -> None:
    """Record a heartbeat; raises AgentTokenRejected for a wrong token (or an unknown host)."""
    host_id, token, version = parse_heartbeat(body)
    with db.session() as session:
        _version, _seen, expected = pipelines.agent_state(session, bk_host_id=host_id)
        given = hashlib.sha256(token.encode()).digest()
        if expected is None or not hmac.compare_digest(given, expected):
            raise AgentTokenRejected(bk_host_id=host_id)
        pipelines.record_heartbeat(session, bk_host_id=host_id, version=version)
