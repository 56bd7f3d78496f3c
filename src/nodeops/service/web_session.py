"""Signing in to the web viewer: a bk_token checked once, then kept by the browser in a cookie."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from nodeops.errors import InvalidInput
from nodeops.service.container import Services
from nodeops.service.security import verify_token


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSession:
    token: str
    username: str
    expires_at: int  # POSIX seconds
    max_age_s: int


async def open_session(services: Services, params: Mapping[str, object]) -> WebSession:
    """Check the ``bk_token`` of a sign-in (3800001 when missing, 1306000 when invalid or expired)."""
    token = params.get("bk_token")
    if not isinstance(token, str) or not token.strip():
        raise InvalidInput.field("bk_token", "this field is required: a bk_token from `nodeops token issue NAME`")
    claims = verify_token(services.auth.secret_key, token.strip())
    expires = int(claims.expires_at) if math.isfinite(claims.expires_at) else 0
    return WebSession(
        token=token.strip(), username=claims.username, expires_at=expires, max_age_s=max(1, expires - int(time.time()))
    )
