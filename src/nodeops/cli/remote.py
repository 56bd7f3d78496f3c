"""The CLI's HTTP side: where the service is, who calls it, and one call answered in the envelope.

``nodeops job`` and ``nodeops log`` are clients of a running service, not of the database: they take the URL
from ``--url``, ``NODEOPS_URL`` or the service's own address, and the identity from ``NODEOPS_APP_CODE``,
``NODEOPS_APP_SECRET`` and ``NODEOPS_USERNAME`` or ``NODEOPS_BK_TOKEN``, else from the demo access ``make run``
writes under the data dir. The identity travels in the ``X-Bkapi-Authorization`` header (never in a URL), and no
message of this module contains the secret or the token. Imports httpx and nodeops' leaves only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from nodeops.settings import Settings

AUTH_HEADER = "X-Bkapi-Authorization"
DEMO_FILE = "demo.json"
TIMEOUT_S = 30.0  # also the longest silence of an event stream (the service sends a comment every 15 s)
RECONNECTS = 5  # an event stream's reconnections in a row without an event, before giving up


class RemoteError(Exception):
    """A call to the service failed; ``message`` says why and what to do, ``code`` is the envelope's if any."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Unreachable(RemoteError):
    """Nothing answers at the service's URL."""


class NotServed(RemoteError):
    """The service answers, but not at this path (an older service): the caller may fall back."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    app_code: str
    app_secret: str
    username: str = ""
    bk_token: str = ""
    source: str = "environment"

    def __repr__(self) -> str:  # never show the secret or the token
        return f"Identity(app_code={self.app_code!r}, username={self.username!r}, source={self.source!r})"

    def header(self) -> str:
        fields = {"bk_app_code": self.app_code, "bk_app_secret": self.app_secret}
        if self.bk_token:
            fields["bk_token"] = self.bk_token
        elif self.username:
            fields["bk_username"] = self.username
        return json.dumps(fields)


def resolve_url(option: str | None, settings: Settings) -> str:
    """``--url``, else ``NODEOPS_URL``, else the address ``nodeops serve`` binds."""
    url = (option or os.environ.get("NODEOPS_URL") or settings.base_url).strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise RemoteError(f"--url {url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8000)")
    return url


def resolve_identity(settings: Settings, environ: Mapping[str, str] | None = None) -> Identity:
    """The caller's identity from the environment, else from ``data_dir/demo.json``; raises RemoteError if none."""
    env = os.environ if environ is None else environ
    demo = _demo_access(settings.data_dir / DEMO_FILE)
    app_code = env.get("NODEOPS_APP_CODE", "").strip()
    app_secret = env.get("NODEOPS_APP_SECRET", "").strip()
    username = env.get("NODEOPS_USERNAME", "").strip()
    bk_token = env.get("NODEOPS_BK_TOKEN", "").strip()
    source = "environment"
    if not (app_code and app_secret):
        if app_code or app_secret:
            missing = "NODEOPS_APP_SECRET" if app_code else "NODEOPS_APP_CODE"
            raise RemoteError(f"NODEOPS_APP_CODE and NODEOPS_APP_SECRET go together: {missing} is not set")
        if demo is None:
            raise RemoteError(
                "no identity to call the service with: set NODEOPS_APP_CODE and NODEOPS_APP_SECRET "
                "(from `nodeops app add NAME --allow-username`) with NODEOPS_USERNAME, or NODEOPS_BK_TOKEN "
                f"(from `nodeops token issue NAME`); `make run` also writes a demo access to "
                f"{settings.data_dir / DEMO_FILE}"
            )
        app_code, app_secret = demo["app_code"], demo["app_secret"]
        source = str(settings.data_dir / DEMO_FILE)
        if not (username or bk_token):
            username = demo.get("username", "")
    if not (username or bk_token):
        raise RemoteError(
            "no user to act as: set NODEOPS_USERNAME, or NODEOPS_BK_TOKEN (from `nodeops token issue NAME`)"
        )
    return Identity(app_code=app_code, app_secret=app_secret, username=username, bk_token=bk_token, source=source)


def _demo_access(path: Path) -> dict[str, str] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("app_code", "app_secret")):
        return None
    return {k: v for k, v in data.items() if isinstance(v, str)}


class Remote:
    """One service, one identity: ``get``/``post`` answer the envelope's ``data`` or raise RemoteError."""

    def __init__(self, url: str, identity: Identity, *, timeout_s: float = TIMEOUT_S) -> None:
        self.url = url
        self.identity = identity
        self.client = httpx.Client(
            base_url=url,
            headers={AUTH_HEADER: identity.header(), "User-Agent": "nodeops-cli"},
            timeout=timeout_s,
            trust_env=False,  # the service is named by its URL; a proxy from the environment is not asked
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._call("GET", path, params=params)

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self._call("POST", path, body=body)

    def events(self, path: str) -> Iterator[tuple[str, Any]]:
        """The Server-Sent Events of ``path``, as ``(event, data)``, for as long as the caller reads them: a stream
        that ends or drops is opened again, resuming after the last event id it sent (``Last-Event-ID``). Raises
        Unreachable after RECONNECTS failures in a row, and what ``get`` raises when the answer is an envelope
        rather than a stream (NotServed from a service without this stream)."""
        last_id: str | None = None
        failures = 0
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with self.client.stream("GET", path, headers=headers) as response:
                    if not response.headers.get("content-type", "").startswith("text/event-stream"):
                        response.read()
                        self._data(path, response)
                        raise RemoteError(f"{self.url}{path} answered HTTP {response.status_code}, not an event stream")
                    for event, data, event_id in parse_events(response.iter_lines()):
                        failures = 0
                        last_id = event_id or last_id
                        yield event, data
            except httpx.TransportError as exc:
                failures += 1
                if failures > RECONNECTS:
                    raise self.unreachable(exc) from None
            time.sleep(0.2 * (1 + failures))  # the stream ended or dropped: open it again, later after each failure

    def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self.client.request(method, path, params=query, json=body)
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from None
        return self._data(path, response)

    def _data(self, path: str, response: httpx.Response) -> Any:
        try:
            answer = response.json()
        except ValueError:
            if response.status_code in (404, 405):
                raise NotServed(f"{self.url} does not serve {path} (HTTP {response.status_code})") from None
            raise RemoteError(
                f"{self.url}{path} answered HTTP {response.status_code} without JSON: is {self.url} a nodeops service?"
            ) from None
        if not isinstance(answer, dict) or "result" not in answer:
            if response.status_code in (404, 405):
                raise NotServed(f"{self.url} does not serve {path} (HTTP {response.status_code})")
            raise RemoteError(f"{self.url}{path} answered HTTP {response.status_code}, not the API's envelope")
        if not answer["result"]:
            code = answer.get("code")
            message = str(answer.get("message") or "")
            if code in (3800404, 3800405):
                raise NotServed(message, code=code)
            raise RemoteError(message, code=code if isinstance(code, int) else None)
        return answer.get("data")

    def unreachable(self, exc: Exception) -> Unreachable:
        reason = type(exc).__name__ if not str(exc) else str(exc)
        return Unreachable(
            f"cannot reach the nodeops service at {self.url} ({reason}). Start it with `nodeops serve` "
            "(or `make run`), or point to it with --url or NODEOPS_URL."
        )


def parse_events(lines: Iterable[str]) -> Iterator[tuple[str, Any, str | None]]:
    """Server-Sent Events from the lines of a stream: ``(event, data as JSON, id)``, one per blank-line-ended
    block with data; comment lines (``:``) are skipped."""
    event, event_id = "message", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event, json.loads("\n".join(data)), event_id
            event, data, event_id = "message", [], None
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = value
