"""Apps, users and business grants: who may call, and on whose behalf (spec §1.1, §10).

The app secret arrives here already hashed; hashing and comparison live in ``nodeops.service.security``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nodeops.errors import Conflict, InvalidInput
from nodeops.store.db import Database
from nodeops.store.models import AccessEpoch, App, BizGrant, User


@dataclass(frozen=True, slots=True, kw_only=True)
class AppRow:
    code: str
    secret_salt: bytes
    secret_hash: bytes
    allow_username: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRow:
    username: str
    is_superuser: bool
    biz_ids: frozenset[int]


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


def revoke_biz(session: Session, *, username: str, bk_biz_ids: list[int]) -> None:
    """Take businesses away from a user."""
    session.execute(delete(BizGrant).where(BizGrant.username == username, BizGrant.bk_biz_id.in_(bk_biz_ids)))
    bump_epoch(session)


def user_exists(session: Session, username: str) -> bool:
    return session.get(User, username) is not None


_EPOCH_SQL = "SELECT value FROM access_epoch WHERE id = 1"
_APP_SQL = "SELECT secret_salt, secret_hash, allow_username FROM apps WHERE code = {p}"
_USER_SQL = (
    "SELECT u.is_superuser, g.bk_biz_id FROM users u LEFT JOIN biz_grants g ON g.username = u.username"
    " WHERE u.username = {p}"
)


class AccessReads:
    """The per-request lookups of the authentication path, on a DBAPI cursor from ``Database.cursor``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        p = db.paramstyle
        self._app_sql = _APP_SQL.format(p=p)
        self._user_sql = _USER_SQL.format(p=p)

    def fetch_epoch(self, cur: Any) -> int:
        """The current access epoch; anything cached of apps, users and grants under another one is stale."""
        cur.execute(_EPOCH_SQL)
        row = cur.fetchone()
        return 0 if row is None else int(row[0])

    def fetch_app(self, cur: Any, code: str) -> AppRow | None:
        cur.execute(self._app_sql, (code,))
        row = cur.fetchone()
        if row is None:
            return None
        return AppRow(code=code, secret_salt=bytes(row[0]), secret_hash=bytes(row[1]), allow_username=bool(row[2]))

    def fetch_user(self, cur: Any, username: str) -> UserRow | None:
        cur.execute(self._user_sql, (username,))
        rows = cur.fetchall()
        if not rows:
            return None
        biz_ids = frozenset(int(r[1]) for r in rows if r[1] is not None)
        return UserRow(username=username, is_superuser=bool(rows[0][0]), biz_ids=biz_ids)

    def list_users(self) -> list[UserRow]:
        with self.db.session() as session:
            users = session.scalars(select(User).order_by(User.username)).all()
            grants = session.execute(select(BizGrant.username, BizGrant.bk_biz_id)).all()
        by_user: dict[str, set[int]] = {}
        for username, biz in grants:
            by_user.setdefault(username, set()).add(biz)
        return [
            UserRow(
                username=u.username,
                is_superuser=u.is_superuser,
                biz_ids=frozenset(by_user.get(u.username, ())),
            )
            for u in users
        ]
