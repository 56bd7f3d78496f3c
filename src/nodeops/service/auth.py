"""Who is calling: the ESB common args (spec §1.1) turned into a Caller, and the job permission rule (§10).

Precedence as ESB: the ``X-Bkapi-Authorization`` JSON header over request parameters; ``bk_token`` (verified)
over ``bk_username`` (accepted only from apps registered with ``--allow-username``).

The web viewer's session (docs/log-reading.md, "Sign-in") is a third way in: a request with no common args at
all and the ``nodeops_session`` cookie (a session token minted at sign-in, ``service.web_session``) acts as
that token's user, for the app ``nodeops-web``. Only on GET and HEAD, or on POST with the header
``X-Nodeops-Web: 1``, which a cross-site form cannot send.

What an operator takes back (a disabled app or user, a revoked token, a closed session, a rotated secret) is
refused from the next request on, on every process (``Authenticator``). Failed authentications are counted
per app and client address, past a threshold refused for a while (``Throttle``), and each is an audit line.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import orjson

from nodeops.domain.i18n import Language
from nodeops.errors import (
    AppAuthFailed,
    AuthError,
    AuthThrottled,
    MissingAppCredentials,
    PermissionDenied,
    StoreError,
    UserAuthFailed,
)
from nodeops.service.audit import Actor, audit
from nodeops.service.security import TokenClaims, secret_matches, verify_token
from nodeops.store import access
from nodeops.store.access import AccessReads
from nodeops.store.db import ReadHandle
from nodeops.store.log_reads import JobAccess

log = logging.getLogger(__name__)

COMMON_ARGS = ("bk_app_code", "bk_app_secret", "bk_token", "bk_username")
AUTH_HEADER = "x-bkapi-authorization"
WEB_APP_CODE = "nodeops-web"
SESSION_COOKIE = "nodeops_session"
WEB_HEADER = "x-nodeops-web"
_SAFE_METHODS = frozenset({"GET", "HEAD"})


class CommonArgs(NamedTuple):
    """The identity fields of one request, wherever they came from (a NamedTuple: built on every request, it builds
    in half the time of a frozen dataclass)."""

    bk_app_code: str = ""
    bk_app_secret: str = ""
    bk_token: str = ""
    bk_username: str = ""
    web_session: bool = False  # bk_token came from the web viewer's session cookie; no app secret
    client: str = ""  # the address the request came from (failures are counted per app and address)

    def __repr__(self) -> str:  # never print the secret or the token
        return f"CommonArgs(bk_app_code={self.bk_app_code!r}, bk_username={self.bk_username!r}, client={self.client!r})"

    @classmethod
    def gather(
        cls,
        params: Mapping[str, object],
        header: str | None,
        *,
        cookie: str | None = None,
        method: str = "GET",
        web_header: str | None = None,
        client: str = "",
    ) -> CommonArgs:
        """Collect the common args: header fields win over parameter fields, one by one. Without any, the web
        session in ``cookie`` (the request's Cookie header) is used, on POST only with ``X-Nodeops-Web: 1``.
        ``client`` is the address the request came from."""
        if not header and not cookie:  # the common case: all in the parameters
            return cls(
                bk_app_code=_text(params.get("bk_app_code")),
                bk_app_secret=_text(params.get("bk_app_secret")),
                bk_token=_text(params.get("bk_token")),
                bk_username=_text(params.get("bk_username")),
                client=client,
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
            return cls(bk_app_code=WEB_APP_CODE, bk_token=session, web_session=True, client=client)
        return cls(
            bk_app_code=values["bk_app_code"],
            bk_app_secret=values["bk_app_secret"],
            bk_token=values["bk_token"],
            bk_username=values["bk_username"],
            client=client,
        )


def session_token(cookie: str) -> str:
    """The web session's bk_token in a Cookie header ("" when absent)."""
    return cookie_value(cookie, SESSION_COOKIE)


def cookie_value(cookie: str, wanted: str) -> str:
    """The value of the cookie named ``wanted`` in a Cookie header ("" when absent)."""
    if wanted not in cookie:
        return ""
    for part in cookie.split(";"):
        name, _, value = part.strip().partition("=")
        if name == wanted:
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
    # the language the request asked its answers in (``api.language``): it changes display texts, never rights
    language: Language = Language.ZH

    def require_job_view(self, job: JobAccess) -> None:
        """Raise PermissionDenied unless the caller may view every business of the job (spec §10)."""
        if self.is_superuser:
            return
        missing = sorted(job.bk_biz_scope - self.biz_ids)
        if missing:
            raise PermissionDenied(username=self.username, job_id=job.job_id, missing_biz_ids=missing)


@dataclass(frozen=True, slots=True, kw_only=True)
class Throttle:
    """When failed authentications refuse an app from an address: ``max_failures`` in ``window_s`` seconds
    refuse it for ``block_s`` seconds (``NODEOPS_AUTH_MAX_FAILURES``, ``..._WINDOW_S``, ``..._BLOCK_S``)."""

    max_failures: int = 10
    window_s: float = 60.0
    block_s: float = 60.0


UNKNOWN_CLIENT = "unknown"  # a request without a peer address (an in-process ASGI client)
_KEY_LENGTH = 64  # the width of the throttle table's key columns; no app code or address is longer


class Authenticator:
    """Turns CommonArgs into a Caller, or raises the ESB error that says what is missing or wrong.

    Successful answers are remembered for the current access epoch (``store.access.bump_epoch``): any change
    to apps, users, grants, revoked tokens or blocks, by any process, starts a new epoch and empties the memo,
    so a cached answer is never staler than the read of the epoch that precedes it, which every request makes
    in the snapshot it reads the rest from (the log API's one statement, ``LogReads.look_up``). Taking access
    back therefore costs the hot path nothing: a memo hit is a dict lookup, as before; only a miss reads the
    app, the user, the revocation list and the block of its app and address.

    Failures are never remembered. Each is counted in the store (``store.access.record_auth_failure``), shared
    by every process, and written to the audit log; the count is written before the failure is answered, so a
    caller learns of its failure only once it is counted. A block this process starts also holds at once for
    the requests answered from the same read snapshot (``_blocks``).
    """

    MAX_CACHED = 10_000

    def __init__(self, reads: AccessReads, secret_key: bytes, *, throttle: Throttle | None = None) -> None:
        self.reads = reads
        self.secret_key = secret_key
        self.throttle = throttle or Throttle()
        self._lock = threading.Lock()  # PostgreSQL reads authenticate from several threads
        self._memo: tuple[int, dict[CommonArgs, tuple[Caller, float]]] = (-1, {})
        self._blocks: dict[tuple[str, str], float] = {}  # blocks this process started: (app, client) -> until

    def authenticate(self, cur: ReadHandle, args: CommonArgs, *, epoch: int | None = None) -> Caller:
        """Check the app and find the user, on a cursor from ``Database.cursor``; raises AuthError.

        ``epoch`` is the access epoch when the caller has just read it along with other rows. An answer is
        remembered only in the memo of the epoch it was read under: if a change lands meanwhile, that memo
        has already been replaced and the answer is dropped with it. A failure is counted and audited before
        it is raised (a short write, on its own connection).
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
        try:
            caller, valid_until = self._authenticate(cur, args)
        except AuthError as exc:
            self.refused(args, exc)
            raise
        if memo is not None:
            with self._lock:
                if len(memo) >= self.MAX_CACHED:
                    memo.clear()
                memo[args] = (caller, valid_until)
        return caller

    def check_sign_in(self, cur: ReadHandle, token: str, client: str) -> TokenClaims:
        """The claims of a bk_token offered to open a web session (``web_session.open_session``): refused as an
        API call with it would be (blocked, revoked, expired, disabled user), counted and audited likewise."""
        args = CommonArgs(bk_app_code=WEB_APP_CODE, bk_token=token, client=client)
        try:
            self._check_block(cur, WEB_APP_CODE, client)
            claims = self._verify(cur, token, session=False)
            self._caller(cur, WEB_APP_CODE, claims.username)
        except AuthError as exc:
            self.refused(args, exc)
            raise
        return claims

    def _authenticate(self, cur: ReadHandle, args: CommonArgs) -> tuple[Caller, float]:
        if args.web_session:  # the viewer's own sign-in: the token is the whole identity
            claims = self._verify(cur, args.bk_token, session=True)
            return self._caller(cur, WEB_APP_CODE, claims.username), claims.expires_at
        valid_until = math.inf
        missing = [name for name in ("bk_app_code", "bk_app_secret") if not getattr(args, name)]
        if missing:
            raise MissingAppCredentials(missing=missing)
        # a NUL byte can be in no stored name (and PostgreSQL refuses it in text): unknown, without a query
        known = "\x00" not in args.bk_app_code
        if known:
            self._check_block(cur, args.bk_app_code, args.client)
        app = self.reads.fetch_app(cur, args.bk_app_code) if known else None
        if app is None or not secret_matches(args.bk_app_secret, app.secret_salt, app.secret_hash):
            raise AppAuthFailed(app_code=args.bk_app_code)
        if app.disabled:
            raise AppAuthFailed(app_code=app.code, disabled=True)
        if args.bk_token:
            claims = self._verify(cur, args.bk_token, session=False)
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

    def _verify(self, cur: ReadHandle, token: str, *, session: bool) -> TokenClaims:
        """A token's claims, unless it is forged, expired or revoked (UserAuthFailed)."""
        claims = verify_token(self.secret_key, token)
        if self.reads.is_revoked(cur, claims.digest, claims.session_of):
            if session:
                raise UserAuthFailed(
                    "User authentication failed: this web session has ended (signed out, or its bk_token was "
                    "revoked); sign in again"
                )
            raise UserAuthFailed(
                "User authentication failed: this bk_token has been revoked; ask for a new one (`nodeops token issue`)"
            )
        return claims

    def _caller(self, cur: ReadHandle, app_code: str, username: str) -> Caller:
        user = None if "\x00" in username else self.reads.fetch_user(cur, username)
        if user is None:  # a name ESB vouches for but unknown here: authenticated, with no rights
            return Caller(app_code=app_code, username=username, is_superuser=False, biz_ids=frozenset())
        if user.disabled:
            raise UserAuthFailed(
                f"User authentication failed: user {username!r} is disabled (`nodeops user enable` restores it)"
            )
        return Caller(app_code=app_code, username=username, is_superuser=user.is_superuser, biz_ids=user.biz_ids)

    # --- throttling -------------------------------------------------------------------------------------------

    @staticmethod
    def _key(app_code: str, client: str) -> tuple[str, str]:
        return app_code[:_KEY_LENGTH], (client or UNKNOWN_CLIENT)[:_KEY_LENGTH]

    def _check_block(self, cur: ReadHandle, app_code: str, client: str) -> None:
        """Raise AuthThrottled while failures block ``app_code`` from ``client``, whatever the credentials."""
        key = self._key(app_code, client)
        now = time.time()
        until = self._blocks.get(key, 0.0) if self._blocks else 0.0
        if until <= now:
            blocked = self.reads.fetch_block(cur, key[0], key[1], datetime.fromtimestamp(now, UTC))
            until = 0.0 if blocked is None else blocked.timestamp()
        if until > now:
            raise AuthThrottled(
                app_code=key[0],
                client=key[1],
                until=datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
                retry_after_s=max(1, math.ceil(until - now)),
            )

    def refused(self, args: CommonArgs, exc: AuthError) -> None:
        """Count a failed authentication against its app and address, and write its audit line.

        Not counted: missing credentials (nothing was guessed), a refusal while blocked (it would only extend
        the block), and the web viewer's own cookie (a browser replaying a session that ended guesses nothing).
        """
        app_code, client = self._key(args.bk_app_code, args.client)
        facts: dict[str, object] = {"app": app_code, "code": int(exc.code), "reason": exc.message}
        if args.bk_username:
            facts["user"] = args.bk_username[:_KEY_LENGTH]
        if args.web_session:
            facts["web_session"] = True
        counted = not (args.web_session or isinstance(exc, MissingAppCredentials | AuthThrottled))
        if counted:
            try:
                count = self._count(app_code, client)
            except StoreError:  # the refusal stands; only its count is lost (the store error is logged)
                log.warning("a failed authentication could not be counted", extra={"action": "auth_count_failed"})
            else:
                facts["failures"] = count.failures
                if count.blocked_until is not None:
                    facts["blocked_until"] = count.blocked_until.isoformat(timespec="seconds")
        event = "auth_throttled" if isinstance(exc, AuthThrottled) else "auth_failed"
        audit(event, Actor(name=f"app:{app_code}", source=client), **facts)

    def _count(self, app_code: str, client: str) -> access.FailureCount:
        throttle = self.throttle
        with self.reads.db.session() as session:
            count = access.record_auth_failure(
                session,
                app_code=app_code,
                client=client,
                now=datetime.now(UTC),
                window_s=throttle.window_s,
                max_failures=throttle.max_failures,
                block_s=throttle.block_s,
            )
        if count.newly_blocked and count.blocked_until is not None:
            with self._lock:
                now = time.time()
                self._blocks = {k: v for k, v in self._blocks.items() if v > now}
                self._blocks[(app_code, client)] = count.blocked_until.timestamp()
                # successes remembered before the block must not answer for this pair in the meantime
                self._memo = (self._memo[0], {})
        return count
