"""Agent heartbeats: a host's agent proves itself with its per-host token and reports its version."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from nodeops.domain.params import int_value
from nodeops.engine.heartbeats import HeartbeatWaiters
from nodeops.errors import AgentTokenRejected, InvalidInput
from nodeops.store import agents as agent_rows
from nodeops.store.db import Database

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
    if problems:
        raise InvalidInput(problems)
    assert isinstance(host_id, int) and isinstance(token, str) and isinstance(version, str)
    return host_id, token, version


def accept_heartbeat(db: Database, body: Mapping[str, object]) -> tuple[int, str]:
    """Record a heartbeat; returns ``(bk_host_id, version)``. Raises InvalidInput for a malformed body and
    AgentTokenRejected for a wrong token (or an unknown host)."""
    host_id, token, version = parse_heartbeat(body)
    token_hash = hashlib.sha256(token.encode()).digest()
    if not agent_rows.record_heartbeat(db, bk_host_id=host_id, token_hash=token_hash, version=version):
        raise AgentTokenRejected(bk_host_id=host_id)
    return host_id, version


async def receive_heartbeat(db: Database, waiters: HeartbeatWaiters, body: Mapping[str, object]) -> None:
    """What the heartbeat API does: record the heartbeat (off the event loop), then, once it is committed, wake
    the step of this process waiting for it. Raises as ``accept_heartbeat``."""
    host_id, version = await db.call(lambda: accept_heartbeat(db, body))
    waiters.notify(host_id, version)
