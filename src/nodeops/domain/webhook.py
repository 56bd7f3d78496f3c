"""Notifications when a job ends: the rules of a webhook URL, the signature a receiver checks, the backoff.

Pure: imports only the standard library. The table, the delivery loop and the HTTP client are in
``store.webhooks`` and ``service.webhooks``; docs/notifications.md shows how a receiver verifies a signature.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from urllib.parse import urlsplit

MAX_URL_CHARS = 2048
SIGNATURE_HEADER = "X-Nodeops-Signature"  # t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
DELIVERY_HEADER = "X-Nodeops-Delivery"  # the delivery's id: the same on every attempt, so a receiver can dedupe
EVENT_HEADER = "X-Nodeops-Event"
JOB_ENDED = "job.ended"
_ALLOWED = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")
URL_RULE = (
    f"must be an http:// or https:// URL of at most {MAX_URL_CHARS} ASCII characters with a host and no "
    "user:password (put a token in the path or query instead), e.g. http://127.0.0.1:9000/hooks/nodeops"
)


def webhook_url_problem(value: object) -> str | None:
    """Why ``value`` is not an acceptable webhook URL (None: it is). A URL carrying credentials is refused,
    never stored, so no answer or log can show them; non-ASCII must be percent-encoded (or the host punycode)."""
    if not isinstance(value, str):
        return f"{URL_RULE}; got a {type(value).__name__}"
    if len(value) > MAX_URL_CHARS:
        return f"{URL_RULE}; got {len(value)} characters"
    if not value or any(char not in _ALLOWED for char in value):
        return f"{URL_RULE}; it has characters a URL may not (spaces, control or non-ASCII characters)"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return f"{URL_RULE}; its host or port is not valid"
    if parts.scheme.lower() not in ("http", "https"):
        scheme = parts.scheme if 0 < len(parts.scheme) <= 16 else ("missing" if not parts.scheme else "not one")
        return f"{URL_RULE}; its scheme is {scheme}"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return f"{URL_RULE}; it carries user:password"
    if not parts.hostname:
        return f"{URL_RULE}; it has no host"
    if port == 0:
        return f"{URL_RULE}; port 0 is not a port"
    return None


def read_webhook_url(value: object, name: str, problems: dict[str, str]) -> str | None:
    """A request's webhook URL: None when left out, null or empty; a bad one is a problem under ``name``."""
    if value is None or value == "":
        return None
    problem = webhook_url_problem(value)
    if problem is not None:
        problems[name] = problem
        return None
    assert isinstance(value, str)
    return value


def mask_url(url: str) -> str:
    """``url`` with any user:password replaced by ``***`` (stored URLs have none; this is the last guard)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"***@{host}").geturl()


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value: ``t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def backoff_s(attempts: int, *, base_s: float, cap_s: float = 3600.0) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: base, 2x base, 4x base, ... at most ``cap_s``."""
    return float(min(cap_s, base_s * 2 ** max(0, min(attempts - 1, 30))))
