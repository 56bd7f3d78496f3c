"""Who is calling: the ESB common args (spec §1.1) turned into a Caller, and the job permission rule (§10).

Precedence as ESB: the ``X-Bkapi-Authorization`` JSON header over request parameters; ``bk_token`` (verified)
over ``bk_username`` (accepted only from apps registered with ``--allow-username``).

The web viewer's session (docs/log-reading.md, "Sign-in") is a third way in: a request with no common args at
all and the ``nodeops_session`` cookie (a bk_token) acts as that token's user, for the app ``nodeops-web``. Only
on GET and HEAD, or on POST with the header ``X-Nodeops-Web: 1``, which a cross-site form cannot send.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from nodeops.errors import AppAuthFailed, MissingAppCredentials, PermissionDenied, UserAuthFailed
from nodeops.service.security import secret_matches, verify_token
from nodeops.store.access import AccessReads
from nodeops.store.log_reads import JobAccess

COMMON_ARGS = ("bk_app_code", "bk_app_secret", "bk_token", "bk_username")
AUTH_HEADER = "x-bkapi-authorization"
WEB_APP_CODE = "nodeops-web"
SESSION_COOKIE = "nodeops_session"
WEB_HEADER = "x-nodeops-web"
_SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True, kw_only=True)
class CommonArgs:
    """The identity fields of one request, wherever they came from."""

    bk_app_code: str = ""
    bk_app_secret: str = ""
    bk_token: str = ""
    bk_username: str = ""
    web_session: bool = False  # bk_token came from the web viewer's session cookie; no app secret

    def __repr__(self) -> str:  # never print the secret or the token
        return f"CommonArgs(bk_app_code={self.bk_app_code!r}, bk_username={self.bk_username!r})"

    @classmethod
    def gather(
        cls,
        params: Mapping[str, object],
        header: str | None,
        *,
        cookie: str | None = None,
        method: str = "GET",
        web_header: str | None = None,
    ) -> CommonArgs:
        """Collect the common args: header fields win over parameter fields, one by one. Without any, the web
        session in ``cookie`` (the request's Cookie header) is used, on POST only with ``X-Nodeops-Web: 1``."""
        if not header and not cookie:  # the common case: all in the parameters
            return cls(
                bk_app_code=_text(params.get("bk_app_code")),
                bk_app_secret=_text(params.get("bk_app_secret")),
                bk_token=_text(params.get("bk_token")),
                bk_username=_text(params.get("bk_username")),
            )
        values = {name: _text(params.get(name)) for name in COMMON_ARGS}
        if header:
            try:
                fields = orjson.loads(header)
            except orjson.JSONDecodeError:
                raise MissingAppCredentials(missing=["a JSON X-Bkapi-Authorization header"]) from None
            if isinstance(fields, dict):
                for name in COMMON_ARGS:
                    if _text(fields.get(name)):
                        values[name] = _text(fields.get(name))
        if cookie and not any(values.values()) and (session := session_token(cookie)):
            if method not in _SAFE_METHODS and (web_header or "").strip() != "1":
                raise UserAuthFailed(
                    f"User authentication failed: the web session is accepted on {method} only with the header "
                    "X-Nodeops-Web: 1 (the web viewer sends it); other callers send bk_app_code and bk_app_secret"
                )
            return cls(bk_app_code=WEB_APP_CODE, bk_token=session, web_session=True)
        return cls(
            bk_app_code=values["bk_app_code"],
            bk_app_secret=values["bk_app_secret"],
            bk_token=values["bk_token"],
            bk_username=values["bk_username"],
        )


def session_token(cookie: str) -> str:
    """The web session's bk_token in a Cookie header ("" when absent)."""
    if SESSION_COOKIE not in cookie:
        return ""
    for part in cookie.split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE:
            return value.strip().strip('"')
    return ""


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else str(value) if isinstance(value, int) else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """An authenticated app acting for a user, with the businesses that user may view."""

    app_code: str
    username: str
    is_superuser: bool
    biz_ids: frozenset[int]

    def require_job_view(self, job: JobAccess) -> None:
        """Raise PermissionDenied unless the caller may view every business of the job (spec §10)."""
        if self.is_superuser:
            return
        missing = sorted(job.bk_biz_scope - self.biz_ids)
        if missing:
            raise PermissionDenied(username=self.username, job_id=job.job_id, missing_biz_ids=missing)


class Authenticator:
    """Turns CommonArgs into a Caller, or raises the ESB error that says what is missing or wrong.

    Successful answers are remembered for the current access epoch (``store.access.bump_epoch``): any change
    to apps, users or grants, by any process, starts a new epoch and empties the memo, so a cached answer is
    never staler than the read of the epoch that precedes it. Failures are never remembered.
    """

    MAX_CACHED = 10_000

    def __init__(self, reads: AccessReads, secret_key: bytes) -> None:
        self.reads = reads
        self.secret_key = secret_key
        self._lock = threading.Lock()  # PostgreSQL reads authenticate from several threads
        self._memo: tuple[int, dict[CommonArgs, tuple[Caller, float]]] = (-1, {})

    def authenticate(self, cur: Any, args: CommonArgs, *, epoch: int | None = None) -> Caller:
        """Check the app and find the user, on a cursor from ``Database.cursor``; raises AuthError.

        ``epoch`` is the access epoch when the caller has just read it along with other rows. An answer is
        remembered only in the memo of the epoch it was read under: if a change lands meanwhile, that memo
        has already been replaced and the answer is dropped with it.
        """
        if epoch is None:
            epoch = self.reads.fetch_epoch(cur)
        memo: dict[CommonArgs, tuple[Caller, float]] | None
        with self._lock:
            memo_epoch, memo = self._memo
            if epoch > memo_epoch:
                memo = {}
                self._memo = (epoch, memo)
            elif epoch < memo_epoch:  # a reader older than the newest change: neither use nor fill the memo
                memo = None
        hit = memo.get(args) if memo is not None else None
        if hit is not None and time.time() < hit[1]:
            return hit[0]
        caller, valid_until = self._authenticate(cur, args)
        if memo is not None:
            with self._lock:
                if len(memo) >= self.MAX_CACHED:
                    memo.clear()
                memo[args] = (caller, valid_until)
        return caller

    def _authenticate(self, cur: Any, args: CommonArgs) -> tuple[Caller, float]:
        if args.web_session:  # the viewer's own sign-in: the token is the whole identity
            claims = verify_token(self.secret_key, args.bk_token)
            return self._caller(cur, WEB_APP_CODE, claims.username), claims.expires_at
        valid_until = math.inf
        missing = [name for name in ("bk_app_code", "bk_app_secret") if not getattr(args, name)]
        if missing:
            raise MissingAppCredentials(missing=missing)
        # a NUL byte can be in no stored name (and PostgreSQL refuses it in text): unknown, without a query
        app = None if "\x00" in args.bk_app_code else self.reads.fetch_app(cur, args.bk_app_code)
        if app is None or not secret_matches(args.bk_app_secret, app.secret_salt, app.secret_hash):
            raise AppAuthFailed(app_code=args.bk_app_code)
        if args.bk_token:
            claims = verify_token(self.secret_key, args.bk_token)
            username, valid_until = claims.username, claims.expires_at
        elif args.bk_username:
            if not app.allow_username:
                raise UserAuthFailed(
                    f"User authentication failed: app {app.code!r} may not pass bk_username; send a bk_token, "
                    f"or register the app with `nodeops app add {app.code} --allow-username`"
                )
            username = args.bk_username
        else:
            raise UserAuthFailed()
        return self._caller(cur, app.code, username), valid_until

    def _caller(self, cur: Any, app_code: str, username: str) -> Caller:
        user = None if "\x00" in username else self.reads.fetch_user(cur, username)
        if user is None:  # a name ESB vouches for but unknown here: authenticated, with no rights
            return Caller(app_code=app_code, username=username, is_superuser=False, biz_ids=frozenset())
        return Caller(app_code=app_code, username=username, is_superuser=user.is_superuser, biz_ids=user.biz_ids)
