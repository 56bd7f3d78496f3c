"""Administration use cases behind the CLI: apps, users, grants, tokens, and taking each of them back.

Every change is one unit of work that bumps the access epoch (``store.access``), so it holds from the next
request on, on every process, and writes one audit line (``service.audit``) naming who made it; the actor
defaults to the person running this process (``Actor.local``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from nodeops.errors import InvalidInput, UserAuthFailed
from nodeops.service.audit import Actor, audit, token_facts
from nodeops.service.security import (
    TokenClaims,
    check_secret_strength,
    hash_secret,
    issue_token,
    new_app_secret,
    new_salt,
    verify_token,
)
from nodeops.store import access
from nodeops.store.db import Database

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class NewApp:
    code: str
    secret: str  # shown once, never stored in clear
    allow_username: bool


def _check_name(field: str, value: str) -> None:
    if not _NAME.match(value):
        raise InvalidInput.field(field, f"{value!r} must be 1-64 characters of letters, digits, _ . @ -")


def _secret(secret: str | None) -> str:
    if secret is None:
        return new_app_secret()
    check_secret_strength(secret)
    return secret


def add_app(
    db: Database,
    *,
    code: str,
    secret: str | None = None,
    allow_username: bool = False,
    actor: Actor | None = None,
) -> NewApp:
    """Register an app; returns its secret (generated when not given). Raises Conflict if it exists."""
    _check_name("code", code)
    secret = _secret(secret)
    salt = new_salt()
    with db.session() as session:
        access.add_app(
            session,
            code=code,
            salt=salt,
            secret_hash=hash_secret(secret, salt),
            allow_username=allow_username,
        )
    audit("app_added", actor or Actor.local(), app=code, allow_username=allow_username)
    return NewApp(code=code, secret=secret, allow_username=allow_username)


def rotate_app(db: Database, *, code: str, secret: str | None = None, actor: Actor | None = None) -> NewApp:
    """Give an app a new secret (generated when not given); the old one is refused from the next request on.
    Raises InvalidInput for an unknown app."""
    secret = _secret(secret)
    salt = new_salt()
    with db.session() as session:
        allow_username = access.set_app_secret(session, code=code, salt=salt, secret_hash=hash_secret(secret, salt))
    audit("app_secret_rotated", actor or Actor.local(), app=code)
    return NewApp(code=code, secret=secret, allow_username=allow_username)


def set_app_disabled(db: Database, *, code: str, disabled: bool, actor: Actor | None = None) -> bool:
    """Disable (refused from the next request on) or enable an app; returns whether that changed anything.
    Raises InvalidInput for an unknown app."""
    with db.session() as session:
        changed = access.set_app_disabled(session, code=code, disabled=disabled)
    audit("app_disabled" if disabled else "app_enabled", actor or Actor.local(), app=code, changed=changed)
    return changed


def add_user(db: Database, *, username: str, is_superuser: bool = False, actor: Actor | None = None) -> None:
    """Register a user (or change its superuser flag)."""
    _check_name("username", username)
    with db.session() as session:
        access.add_user(session, username=username, is_superuser=is_superuser)
    audit("user_added", actor or Actor.local(), user=username, superuser=is_superuser)


def set_user_disabled(db: Database, *, username: str, disabled: bool, actor: Actor | None = None) -> bool:
    """Disable a user (every request on its behalf refused, whatever the app or token) or enable it again;
    returns whether that changed anything. Raises InvalidInput for an unknown user."""
    with db.session() as session:
        changed = access.set_user_disabled(session, username=username, disabled=disabled)
    audit("user_disabled" if disabled else "user_enabled", actor or Actor.local(), user=username, changed=changed)
    return changed


def _check_biz(bk_biz_ids: list[int]) -> None:
    if not bk_biz_ids or any(b < 0 for b in bk_biz_ids):
        raise InvalidInput.field("biz", "give at least one business id >= 0")


def grant(db: Database, *, username: str, bk_biz_ids: list[int], actor: Actor | None = None) -> None:
    """Let a user view the jobs of these businesses."""
    _check_biz(bk_biz_ids)
    with db.session() as session:
        access.grant_biz(session, username=username, bk_biz_ids=bk_biz_ids)
    audit("grant_added", actor or Actor.local(), user=username, bk_biz_ids=sorted(set(bk_biz_ids)))


def revoke_grant(db: Database, *, username: str, bk_biz_ids: list[int], actor: Actor | None = None) -> list[int]:
    """Take businesses away from a user; returns those it had. Raises InvalidInput for an unknown user."""
    _check_biz(bk_biz_ids)
    with db.session() as session:
        had = access.revoke_biz(session, username=username, bk_biz_ids=bk_biz_ids)
    audit("grant_revoked", actor or Actor.local(), user=username, bk_biz_ids=had)
    return had


def token(db: Database, secret_key: bytes, *, username: str, ttl_s: int, actor: Actor | None = None) -> str:
    """Issue a bk_token for an existing user."""
    if ttl_s <= 0:
        raise InvalidInput.field("ttl", "must be positive, e.g. 30m, 12h, 1d")
    with db.session() as session:
        if not access.user_exists(session, username):
            raise InvalidInput.field("username", f"no user {username!r}; add it first with `nodeops user add`")
    issued = issue_token(secret_key, username=username, ttl_s=ttl_s)
    audit("token_issued", actor or Actor.local(), **token_facts(verify_token(secret_key, issued)))
    return issued


def revoke_token(db: Database, secret_key: bytes, *, token: str, actor: Actor | None = None) -> TokenClaims:
    """Refuse a bk_token (and the web sessions opened with it) from the next request on; returns its claims.
    Raises InvalidInput for a token this service did not issue, or one that has already expired."""
    try:
        claims = verify_token(secret_key, token.strip())
    except UserAuthFailed as exc:
        reason = exc.message.removeprefix("User authentication failed: ")
        raise InvalidInput.field("token", f"cannot be revoked: {reason}") from None
    end_token(db, claims, event="token_revoked", actor=actor or Actor.local())
    return claims


def end_token(db: Database, claims: TokenClaims, *, event: str, actor: Actor) -> None:
    """Put a verified token on the revocation list until it expires, and audit it as ``event``."""
    with db.session() as session:
        access.revoke_token(
            session,
            digest=claims.digest,
            username=claims.username,
            expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
            now=datetime.now(UTC),
        )
    audit(event, actor, **token_facts(claims))


_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhdw]?)\s*$", re.ASCII)  # re.ASCII: \d alone matches any Unicode digit
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration_s(text: str) -> int:
    """Seconds in a duration like ``90``, ``30m``, ``12h``, ``1d``, ``2w``."""
    match = _DURATION.match(text.lower())
    if not match:
        raise InvalidInput.field("ttl", f"{text!r} is not a duration such as 30m, 12h, 1d or 2w")
    return int(match.group(1)) * _UNIT_S[match.group(2)]
