"""App secret hashing and bk_token signing.

App secrets are stored as salted SHA-256 and compared in constant time; they are random 256-bit strings we
generate (or at least 16 characters chosen by an operator), so a slow password hash would add nothing but
latency on every request. A ``bk_token`` is ``v1.<payload>.<mac>``: base64url JSON ``{"u": user, "iat", "exp"}``
signed with HMAC-SHA256 under a key derived from the service's secret key, so tokens are verifiable and
expirable without a lookup, and all of them die when the secret key changes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from nodeops.errors import InvalidInput, UserAuthFailed

MIN_SECRET_LENGTH = 16
TOKEN_PREFIX = "v1"


def new_app_secret() -> str:
    """A fresh random app secret (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def new_salt() -> bytes:
    return secrets.token_bytes(16)


def hash_secret(secret: str, salt: bytes) -> bytes:
    """The stored form of an app secret."""
    return hashlib.sha256(salt + secret.encode()).digest()


def check_secret_strength(secret: str) -> None:
    """Refuse operator-chosen secrets too short to resist guessing."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise InvalidInput.field(
            "secret", f"must be at least {MIN_SECRET_LENGTH} characters; omit it to get a random one"
        )


def secret_matches(secret: str, salt: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret, salt), expected)


def _token_key(secret_key: bytes) -> bytes:
    return hmac.new(secret_key, b"nodeops bk_token v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(secret_key: bytes, *, username: str, ttl_s: int, now: datetime | None = None) -> str:
    """A bk_token for ``username`` valid for ``ttl_s`` seconds."""
    issued = int((now or datetime.now(UTC)).timestamp())
    payload = _b64(json.dumps({"u": username, "iat": issued, "exp": issued + ttl_s}, separators=(",", ":")).encode())
    signed = f"{TOKEN_PREFIX}.{payload}"
    mac = _b64(hmac.new(_token_key(secret_key), signed.encode(), hashlib.sha256).digest())
    return f"{signed}.{mac}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenClaims:
    username: str
    expires_at: float  # POSIX seconds


def verify_token(secret_key: bytes, token: str, *, now: datetime | None = None) -> TokenClaims:
    """The claims of a valid, unexpired bk_token; raises UserAuthFailed otherwise."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise UserAuthFailed("User authentication failed: bk_token is not a token issued by this service")
    expected = _b64(hmac.new(_token_key(secret_key), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.encode(), parts[2].encode()):
        raise UserAuthFailed("User authentication failed: bk_token signature is invalid")
    try:
        claims = json.loads(_unb64(parts[1]))
        username, expires = str(claims["u"]), int(claims["exp"])
    except (ValueError, KeyError, TypeError):
        raise UserAuthFailed("User authentication failed: bk_token payload is unreadable") from None
    current = now or datetime.now(UTC)
    if current.timestamp() >= expires:
        at = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        raise UserAuthFailed(f"User authentication failed: bk_token expired at {at}; issue a new one")
    return TokenClaims(username=username, expires_at=float(expires))
