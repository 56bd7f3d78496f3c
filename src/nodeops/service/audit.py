"""The audit log: one JSON line per failed authentication and per change of apps, users, grants and tokens.

Lines go to the logger ``nodeops.audit`` at INFO, which is always on (whatever the process's log level), through
the process's handlers and their redacting filter. Each line is a JSON object with ``event`` (what), ``actor``
(who), ``source`` (from where: a client address, or ``cli:<host>`` for a command on this machine), ``at`` (when,
UTC, ISO 8601) and the facts of the event. A line never holds a secret: no app secret, no token (a token is
named by its digest's first 12 hex digits). docs/security.md lists the events. Must not import api, web or cli.
"""

from __future__ import annotations

import getpass
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import orjson

from nodeops.service.security import TokenClaims

AUDIT_LOGGER = "nodeops.audit"
log = logging.getLogger(AUDIT_LOGGER)
log.setLevel(logging.INFO)  # audit lines are kept even when the process logs only warnings (the CLI)


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """Who makes a change, and from where."""

    name: str  # a username, or ``os:<login>`` for a command run on this machine
    source: str  # a client address, or ``cli:<host>``

    @classmethod
    def local(cls) -> Actor:
        """The person running this process (the CLI)."""
        return _local_actor()


@lru_cache(maxsize=1)
def _local_actor() -> Actor:
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        login = "unknown"
    return Actor(name=f"os:{login}", source=f"cli:{socket.gethostname()}")


def token_ref(digest: str) -> str:
    """How a line names a token: the start of its digest, enough to match ``token revoke``'s output."""
    return digest[:12]


def audit(event: str, actor: Actor, **facts: object) -> None:
    """Write one audit line; ``facts`` are JSON values and must not include a secret."""
    line = {
        "event": event,
        "actor": actor.name,
        "source": actor.source,
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        **facts,
    }
    log.info(orjson.dumps(line).decode(), extra={"action": "audit", "event": event})


def token_facts(claims: TokenClaims) -> dict[str, object]:
    """What a line says of a token: its user, a reference to its digest, and when it expires."""
    return {
        "user": claims.username,
        "token": token_ref(claims.digest),
        "expires_at": datetime.fromtimestamp(claims.expires_at, UTC).isoformat(timespec="seconds"),
    }
