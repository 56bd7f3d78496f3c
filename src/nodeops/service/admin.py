"""Administration use cases behind the CLI: apps, users, grants, tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nodeops.errors import InvalidInput
from nodeops.service.security import check_secret_strength, hash_secret, issue_token, new_app_secret, new_salt
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


def add_app(db: Database, *, code: str, secret: str | None = None, allow_username: bool = False) -> NewApp:
    """Register an app; returns its secret (generated when not given). Raises Conflict if it exists."""
    _check_name("code", code)
    if secret is None:
        secret = new_app_secret()
    else:
        check_secret_strength(secret)
    salt = new_salt()
    with db.session() as session:
        access.add_app(
            session,
            code=code,
            salt=salt,
            secret_hash=hash_secret(secret, salt),
            allow_username=allow_username,
        )
    return NewApp(code=code, secret=secret, allow_username=allow_username)


def add_user(db: Database, *, username: str, is_superuser: bool = False) -> None:
    """Register a user (or change its superuser flag)."""
    _check_name("username", username)
    with db.session() as session:
        access.add_user(session, username=username, is_superuser=is_superuser)


def grant(db: Database, *, username: str, bk_biz_ids: list[int]) -> None:
    """Let a user view the jobs of these businesses."""
    if not bk_biz_ids or any(b < 0 for b in bk_biz_ids):
        raise InvalidInput.field("biz", "give at least one business id >= 0")
    with db.session() as session:
        access.grant_biz(session, username=username, bk_biz_ids=bk_biz_ids)


def token(db: Database, secret_key: bytes, *, username: str, ttl_s: int) -> str:
    """Issue a bk_token for an existing user."""
    if ttl_s <= 0:
        raise InvalidInput.field("ttl", "must be positive, e.g. 30m, 12h, 1d")
    with db.session() as session:
        if not access.user_exists(session, username):
            raise InvalidInput.field("username", f"no user {username!r}; add it first with `nodeops user add`")
    return issue_token(secret_key, username=username, ttl_s=ttl_s)


_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhdw]?)\s*$", re.ASCII)  # re.ASCII: \d alone matches any Unicode digit
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration_s(text: str) -> int:
    """Seconds in a duration like ``90``, ``30m``, ``12h``, ``1d``, ``2w``."""
    match = _DURATION.match(text.lower())
    if not match:
        raise InvalidInput.field("ttl", f"{text!r} is not a duration such as 30m, 12h, 1d or 2w")
    return int(match.group(1)) * _UNIT_S[match.group(2)]
