"""Signing in to the web viewer and out of it.

Signing in checks a bk_token as an API call with it would be checked (``Authenticator.check_sign_in``) and mints
a session token of its own for the cookie: same user, same expiry, naming the bk_token it was opened with. So
signing out ends that session for good (it goes on the revocation list) and leaves the bk_token alone, and
revoking the bk_token (``nodeops token revoke``) ends every session opened with it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from nodeops.errors import InvalidInput, UserAuthFailed
from nodeops.service import admin
from nodeops.service.audit import Actor, audit, token_facts
from nodeops.service.container import Services
from nodeops.service.security import issue_token, verify_token


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSession:
    token: str  # the session's own token, for the cookie
    username: str
    expires_at: int  # POSIX seconds
    max_age_s: int


async def open_session(services: Services, params: Mapping[str, object], *, client: str) -> WebSession:
    """Check the ``bk_token`` of a sign-in from ``client`` and open a session (3800001 when missing; 1306000
    when invalid, expired, revoked or its user disabled; 1306429 while failures block the viewer there)."""
    token = params.get("bk_token")
    if not isinstance(token, str) or not token.strip():
        raise InvalidInput.field("bk_token", "this field is required: a bk_token from `nodeops token issue NAME`")
    auth = services.auth
    claims = await services.db.read(lambda cur: auth.check_sign_in(cur, token.strip(), client))
    expires = int(claims.expires_at)
    ttl_s = max(1, expires - int(time.time()))
    session_token = issue_token(auth.secret_key, username=claims.username, ttl_s=ttl_s, session_of=claims.digest)
    session = verify_token(auth.secret_key, session_token)
    audit("session_opened", Actor(name=claims.username, source=client), **token_facts(session))
    return WebSession(token=session_token, username=claims.username, expires_at=expires, max_age_s=ttl_s)


async def close_session(services: Services, token: str, *, client: str) -> None:
    """End the session of this cookie's token for good, on every process; a cookie that is no longer valid
    (forged, expired, already ended) has nothing to end."""
    try:
        claims = verify_token(services.auth.secret_key, token)
    except UserAuthFailed:
        return
    actor = Actor(name=claims.username, source=client)
    await services.db.call(lambda: admin.end_token(services.db, claims, event="session_closed", actor=actor))
