"""App secret hashing and bk_token signing.

App secrets are stored as salted SHA-256 and compared in constant time; they are random 256-bit strings we
generate (or at least 16 characters chosen by an operator), so a slow password hash would add nothing but
latency on every request. A ``bk_token`` is ``v1.<payload>.<mac>``: base64url JSON ``{"u": user, "iat", "exp"}``
signed with HMAC-SHA256 under a key derived from the service's secret key, so tokens are verifiable and
expirable without a lookup, and all of them die when the secret key changes. One can be taken back before it
expires: its ``token_digest`` goes on the revocation list (``nodeops token revoke``), which the authenticator
checks. A web session is a token of its own, minted at sign-in, whose payload also names the digest of the
bk_token it was opened with (``"s"``), so revoking that bk_token ends its sessions too.
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


def token_digest(token: str) -> str:
    """The name a token goes by on the revocation list (SHA-256 hex); the token itself is never stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    secret_key: bytes,
    *,
    username: str,
    ttl_s: int,
    now: datetime | None = None,
    session_of: str | None = None,
) -> str:
    """A bk_token for ``username`` valid for ``ttl_s`` seconds; ``session_of`` is the digest of the bk_token a
    web session is opened with (``web_session.open_session``)."""
    issued = int((now or datetime.now(UTC)).timestamp())
    claims: dict[str, object] = {"u": username, "iat": issued, "exp": issued + ttl_s}
    if session_of is not None:
        claims["s"] = session_of
        claims["n"] = secrets.token_urlsafe(8)  # two sign-ins in one second are two sessions
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signed = f"{TOKEN_PREFIX}.{payload}"
    mac = _b64(hmac.new(_token_key(secret_key), signed.encode(), hashlib.sha256).digest())
    return f"{signed}.{mac}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenClaims:
    username: str
    expires_at: float  # POSIX seconds
    digest: str  # the token's ``token_digest``
    session_of: str | None = None  # a web session: the digest of the bk_token it was opened with


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
        parent = claims.get("s")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserAuthFailed("User authentication failed: bk_token payload is unreadable") from None
    current = now or datetime.now(UTC)
    if current.timestamp() >= expires:
        at = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        raise UserAuthFailed(f"User authentication failed: bk_token expired at {at}; issue a new one")
    return TokenClaims(
        username=username,
        expires_at=float(expires),
        digest=token_digest(token),
        session_of=parent if isinstance(parent, str) else None,
    )
