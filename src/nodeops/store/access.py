"""Apps, users and business grants: who may call, and on whose behalf (spec §1.1, §10); what was taken back
(disabled apps and users, revoked tokens) and the failed authentications that block an app from an address.

The app secret arrives here already hashed, and a token only as its digest; hashing and comparison live in
``nodeops.service.security``. Every change bumps the access epoch, in its own transaction, so each process
drops what it cached of access on its next request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from nodeops.errors import Conflict, InvalidInput
from nodeops.store.db import Database, ReadHandle, lock_for_update
from nodeops.store.log_scans import _utc
from nodeops.store.models import AccessEpoch, App, AuthFailure, BizGrant, RevokedToken, User


@dataclass(frozen=True, slots=True, kw_only=True)
class AppRow:
    code: str
    secret_salt: bytes
    secret_hash: bytes
    allow_username: bool
    disabled: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRow:
    username: str
    is_superuser: bool
    biz_ids: frozenset[int]
    disabled: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureCount:
    """Where one app from one address stands after a failed authentication."""

    failures: int  # in the current window
    blocked_until: datetime | None  # set when this failure (or an earlier one) crossed the threshold
    newly_blocked: bool  # this failure started the block


def bump_epoch(session: Session) -> None:
    """Mark apps, users or grants as changed, so every process drops what it cached of them."""
    epoch = session.get(AccessEpoch, 1)
    if epoch is None:
        session.add(AccessEpoch(id=1, value=1))
    else:
        # an SQL expression, so concurrent bumps from several processes all count
        epoch.value = AccessEpoch.value + 1


def add_app(session: Session, *, code: str, salt: bytes, secret_hash: bytes, allow_username: bool) -> None:
    """Register an app; raises Conflict if the code is taken."""
    if session.get(App, code) is not None:
        raise Conflict(f"app {code!r} already exists")
    session.add(App(code=code, secret_salt=salt, secret_hash=secret_hash, allow_username=allow_username))
    bump_epoch(session)


def add_user(session: Session, *, username: str, is_superuser: bool) -> None:
    """Register a user, or update the superuser flag of an existing one."""
    user = session.get(User, username)
    if user is None:
        session.add(User(username=username, is_superuser=is_superuser))
    else:
        user.is_superuser = is_superuser
    bump_epoch(session)


def grant_biz(session: Session, *, username: str, bk_biz_ids: list[int]) -> None:
    """Give a user ``task_history_view`` on these businesses; raises InvalidInput for an unknown user."""
    if session.get(User, username) is None:
        raise InvalidInput.field("username", f"no user {username!r}; add it first with `nodeops user add`")
    for biz in bk_biz_ids:
        if session.get(BizGrant, (username, biz)) is None:
            session.add(BizGrant(username=username, bk_biz_id=biz))
    bump_epoch(session)


def revoke_biz(session: Session, *, username: str, bk_biz_ids: list[int]) -> list[int]:
    """Take businesses away from a user; returns those it had. Raises InvalidInput for an unknown user."""
    if session.get(User, username) is None:
        raise InvalidInput.field("username", f"no user {username!r}; add it first with `nodeops user add`")
    had = session.scalars(
        select(BizGrant.bk_biz_id).where(BizGrant.username == username, BizGrant.bk_biz_id.in_(bk_biz_ids))
    ).all()
    session.execute(delete(BizGrant).where(BizGrant.username == username, BizGrant.bk_biz_id.in_(bk_biz_ids)))
    bump_epoch(session)
    return sorted(had)


def user_exists(session: Session, username: str) -> bool:
    return session.get(User, username) is not None


def set_user_disabled(session: Session, *, username: str, disabled: bool) -> bool:
    """Disable (or enable) a user; returns whether that changed anything. Raises InvalidInput if unknown."""
    user = session.get(User, username)
    if user is None:
        raise InvalidInput.field("username", f"no user {username!r}; add it first with `nodeops user add`")
    changed = user.disabled != disabled
    user.disabled = disabled
    bump_epoch(session)
    return changed


def set_app_disabled(session: Session, *, code: str, disabled: bool) -> bool:
    """Disable (or enable) an app; returns whether that changed anything. Raises InvalidInput if unknown."""
    app = _existing_app(session, code)
    changed = app.disabled != disabled
    app.disabled = disabled
    bump_epoch(session)
    return changed


def set_app_secret(session: Session, *, code: str, salt: bytes, secret_hash: bytes) -> bool:
    """Replace an app's secret (the old one stops working); returns whether the app may pass bk_username.
    Raises InvalidInput for an unknown app."""
    app = _existing_app(session, code)
    app.secret_salt, app.secret_hash = salt, secret_hash
    bump_epoch(session)
    return app.allow_username


def _existing_app(session: Session, code: str) -> App:
    app = session.get(App, code)
    if app is None:
        raise InvalidInput.field("code", f"no app {code!r}; add it first with `nodeops app add`")
    return app


def revoke_token(session: Session, *, digest: str, username: str, expires_at: datetime, now: datetime) -> bool:
    """Put a token on the revocation list until it expires; returns False when it already was. Entries of
    tokens that have expired meanwhile are dropped: an expired token is refused anyway."""
    session.execute(delete(RevokedToken).where(RevokedToken.expires_at <= now))
    if session.get(RevokedToken, digest) is not None:
        return False
    session.add(RevokedToken(token_digest=digest, username=username, expires_at=expires_at, revoked_at=now))
    bump_epoch(session)
    return True


def record_auth_failure(
    session: Session,
    *,
    app_code: str,
    client: str,
    now: datetime,
    window_s: float,
    max_failures: int,
    block_s: float,
) -> FailureCount:
    """Count one failed authentication of ``app_code`` from ``client``: failures are counted in a window that
    opens with the first of them and lasts ``window_s``; the ``max_failures``-th in a window blocks the pair
    for ``block_s`` (and starts a new window). Serialized with other processes' counts."""
    lock_for_update(session, "auth_failures")
    window_floor = now - timedelta(seconds=window_s)
    session.execute(
        delete(AuthFailure).where(
            AuthFailure.window_started_at < window_floor,
            or_(AuthFailure.blocked_until.is_(None), AuthFailure.blocked_until < now),
            or_(AuthFailure.app_code != app_code, AuthFailure.client != client),
        )
    )
    row = session.get(AuthFailure, (app_code, client))
    if row is None:
        row = AuthFailure(app_code=app_code, client=client, window_started_at=now, failures=0, blocked_until=None)
        session.add(row)
    elif row.window_started_at < window_floor:
        row.window_started_at, row.failures = now, 0
    row.failures += 1
    blocked_until = row.blocked_until if row.blocked_until is not None and row.blocked_until > now else None
    if blocked_until is not None or row.failures < max_failures:
        return FailureCount(failures=row.failures, blocked_until=blocked_until, newly_blocked=False)
    row.blocked_until = now + timedelta(seconds=block_s)
    failures = row.failures
    row.window_started_at, row.failures = now, 0
    bump_epoch(session)  # every process drops what it remembered of this app's successes
    return FailureCount(failures=failures, blocked_until=row.blocked_until, newly_blocked=True)


_EPOCH_SQL = "SELECT value FROM access_epoch WHERE id = 1"
_APP_SQL = "SELECT secret_salt, secret_hash, allow_username, disabled FROM apps WHERE code = {p}"
_USER_SQL = (
    "SELECT u.is_superuser, g.bk_biz_id, u.disabled FROM users u LEFT JOIN biz_grants g ON g.username = u.username"
    " WHERE u.username = {p}"
)
_REVOKED_SQL = "SELECT 1 FROM revoked_tokens WHERE token_digest IN ({p}, {p})"
_BLOCK_SQL = "SELECT blocked_until FROM auth_failures WHERE app_code = {p} AND client = {p} AND blocked_until > {p}"


class AccessReads:
    """The per-request lookups of the authentication path, on a DBAPI cursor from ``Database.cursor``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        p = db.paramstyle
        self._app_sql = _APP_SQL.format(p=p)
        self._user_sql = _USER_SQL.format(p=p)
        self._revoked_sql = _REVOKED_SQL.format(p=p)
        self._block_sql = _BLOCK_SQL.format(p=p)

    def fetch_epoch(self, cur: ReadHandle) -> int:
        """The current access epoch; anything cached of apps, users and grants under another one is stale."""
        cur.execute(_EPOCH_SQL)
        row = cur.fetchone()
        return 0 if row is None else int(row[0])

    def fetch_app(self, cur: ReadHandle, code: str) -> AppRow | None:
        cur.execute(self._app_sql, (code,))
        row = cur.fetchone()
        if row is None:
            return None
        return AppRow(
            code=code,
            secret_salt=bytes(row[0]),
            secret_hash=bytes(row[1]),
            allow_username=bool(row[2]),
            disabled=bool(row[3]),
        )

    def fetch_user(self, cur: ReadHandle, username: str) -> UserRow | None:
        cur.execute(self._user_sql, (username,))
        rows = cur.fetchall()
        if not rows:
            return None
        biz_ids = frozenset(int(r[1]) for r in rows if r[1] is not None)
        return UserRow(username=username, is_superuser=bool(rows[0][0]), biz_ids=biz_ids, disabled=bool(rows[0][2]))

    def is_revoked(self, cur: ReadHandle, digest: str, session_of: str | None) -> bool:
        """Whether the token of ``digest``, or the bk_token a web session was opened with, has been revoked."""
        cur.execute(self._revoked_sql, (digest, session_of or digest))
        return cur.fetchone() is not None

    def fetch_block(self, cur: ReadHandle, app_code: str, client: str, now: datetime) -> datetime | None:
        """Until when ``app_code`` is refused from ``client`` (``record_auth_failure``), or None."""
        cur.execute(self._block_sql, (app_code, client, self.db.bind_time(now)))
        row = cur.fetchone()
        return None if row is None else _utc(row[0])
