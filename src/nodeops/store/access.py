"""Apps, users and business grants: who may call, and on whose behalf (spec §1.1, §10).

The app secret arrives here already hashed; hashing and comparison live in ``nodeops.service.security``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nodeops.errors import Conflict, InvalidInput
from nodeops.store.db import Database
from nodeops.store.models import App, BizGrant, User


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


def add_app(session: Session, *, code: str, salt: bytes, secret_hash: bytes, allow_username: bool) -> None:
    """Register an app; raises Conflict if the code is taken."""
    if session.get(App, code) is not None:
        raise Conflict(f"app {code!r} already exists")
    session.add(App(code=code, secret_salt=salt, secret_hash=secret_hash, allow_username=allow_username))


def add_user(session: Session, *, username: str, is_superuser: bool) -> None:
    """Register a user, or update the superuser flag of an existing one."""
    user = session.get(User, username)
    if user is None:
        session.add(User(username=username, is_superuser=is_superuser))
    else:
        user.is_superuser = is_superuser


def grant_biz(session: Session, *, username: str, bk_biz_ids: list[int]) -> None:
    """Give a user ``task_history_view`` on these businesses; raises InvalidInput for an unknown user."""
    if session.get(User, username) is None:
        raise InvalidInput.field("username", f"no user {username!r}; add it first with `nodeops user add`")
    for biz in bk_biz_ids:
        if session.get(BizGrant, (username, biz)) is None:
            session.add(BizGrant(username=username, bk_biz_id=biz))


def revoke_biz(session: Session, *, username: str, bk_biz_ids: list[int]) -> None:
    """Take businesses away from a user."""
    session.execute(delete(BizGrant).where(BizGrant.username == username, BizGrant.bk_biz_id.in_(bk_biz_ids)))


def user_exists(session: Session, username: str) -> bool:
    return session.get(User, username) is not None


_APP_SQL = "SELECT secret_salt, secret_hash, allow_username FROM apps WHERE code = {p}"
_USER_SQL = "SELECT is_superuser FROM users WHERE username = {p}"
_GRANTS_SQL = "SELECT bk_biz_id FROM biz_grants WHERE username = {p}"


class AccessReads:
    """The per-request lookups of the authentication path, on a raw connection (no ORM overhead)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        p = "?" if db.is_sqlite else "%s"
        self._app_sql = _APP_SQL.format(p=p)
        self._user_sql = _USER_SQL.format(p=p)
        self._grants_sql = _GRANTS_SQL.format(p=p)

    def fetch_app(self, code: str) -> AppRow | None:
        with self.db.raw() as conn:
            cur = conn.cursor()
            cur.execute(self._app_sql, (code,))
            row = cur.fetchone()
        if row is None:
            return None
        return AppRow(code=code, secret_salt=bytes(row[0]), secret_hash=bytes(row[1]), allow_username=bool(row[2]))

    def fetch_user(self, username: str) -> UserRow | None:
        with self.db.raw() as conn:
            cur = conn.cursor()
            cur.execute(self._user_sql, (username,))
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(self._grants_sql, (username,))
            biz_ids = frozenset(int(r[0]) for r in cur.fetchall())
        return UserRow(username=username, is_superuser=bool(row[0]), biz_ids=biz_ids)

    def list_users(self) -> list[UserRow]:
        with self.db.session() as session:
            users = session.scalars(select(User).order_by(User.username)).all()
            grants = session.execute(select(BizGrant.username, BizGrant.bk_biz_id)).all()
        by_user: dict[str, set[int]] = {}
        for username, biz in grants:
            by_user.setdefault(username, set()).add(biz)
        return [
            UserRow(username=u.username, is_superuser=u.is_superuser, biz_ids=frozenset(by_user.get(u.username, ())))
            for u in users
        ]
