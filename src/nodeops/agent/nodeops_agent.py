#!/usr/bin/env python3
"""nodeops agent: the program nodeops installs on a host, which reports heartbeats with its version to the service.

It runs on the host's own ``python3`` (3.6 or newer), alone: it imports only the standard library, never nodeops,
and keeps to 3.6 syntax, so annotations 3.6 cannot evaluate are quoted. Its home folder (``--home``, by default the
folder this file is in) holds ``VERSION``, ``agent.json`` (``server_url``, ``bk_host_id``, ``instance_id``,
``token``, ``interval_s``, and on a proxy ``relay``), ``agent.pid`` and ``agent.log`` (rotated at 1 MiB, one old
file kept).

Commands: ``start`` (daemonize, exit 0 once running), ``stop``, ``restart``, ``status`` (``running <pid> <version>``
exit 0, or ``stopped`` exit 3), ``run`` (the foreground loop the daemon runs), ``version``, and ``relay`` (below).
A running agent holds an exclusive ``flock`` on ``agent.pid``, so a pid file left by a crash, or a pid since reused
by another process, never reads as running; and an agent whose pid file disappears (its files removed without
``stop``) exits. The token goes to the service in each heartbeat and nowhere else: every log line passes a
formatter that masks it.

Relay (proxy mode). The agents of a cloud area cannot reach the service; their proxy's agent can. When agent.json
holds ``"relay": {"listen": "IP:PORT"}`` (an IP literal, IPv6 in brackets, and a port: Node Manager's is
``RELAY_PORT``; optional ``max_clients`` and ``client_timeout_s``), the daemon also serves HTTP there and forwards
what those agents send (``POST`` to a path under ``/api/agent/``, nothing else) to its own ``server_url``, answering
each with the service's status, Content-Type and body; ``start`` fails, saying why, if it cannot listen there. It
forwards Content-Type, User-Agent, Accept and Authorization (a heartbeat authenticates by the token in its body),
adds ``X-Forwarded-For``, and answers itself, in the service's envelope, what it does not forward: 404 (not an
agent path), 405 (not POST), 411/400 (no or a bad Content-Length), 413 (a body over 64 KiB, refused unread), 502
(the service refused, timed out or answered badly: never a hang), 503 (``max_clients`` connections are being
served). A client has ``client_timeout_s`` for each request, waiting included, so a kept-alive connection left
idle that long is closed, as is one that stalls. Its log lines (start, where it listens and forwards to, the
service going away and coming back, counts every 10 minutes and at stop) never hold a request's body or headers.
``relay --listen IP:PORT --upstream URL`` runs the same relay alone in the foreground, logging to stderr, until
SIGTERM or SIGINT: on a jump server of an install channel.
"""

import argparse
import fcntl
import http.client
import http.server
import ipaddress
import json
import logging
import logging.handlers
import os
import re
import select
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone

CONFIG_FILE = "agent.json"
VERSION_FILE = "VERSION"
PID_FILE = "agent.pid"
LOG_FILE = "agent.log"
HEARTBEAT_PATH = "/api/agent/heartbeat/"

DEFAULT_INTERVAL_S = 5.0
MAX_INTERVAL_S = 3600.0
HTTP_TIMEOUT_S = 5.0
MAX_BACKOFF_S = 60.0
# Until its first heartbeat is accepted, an agent retries this soon (doubling, never slower than its interval):
# the service's 查询Agent状态 is waiting for that heartbeat, and the interval may be long.
FIRST_RETRY_S = 2.0
LOG_MAX_BYTES = 1024 * 1024
START_WAIT_S = 5.0
STOP_WAIT_S = 10.0
KILL_WAIT_S = 5.0
START_REPORT_BYTES = 1024
READY = "ready"
LOCK_WAIT_S = 1.0  # a status probe holds the pid file's lock for microseconds; a running agent holds it for good
POLL_S = 0.05
MAX_BODY_BYTES = 64 * 1024
MAX_DETAIL_CHARS = 200
REDACTED = "***"

# The relay (proxy mode): see the module's docstring.
RELAY_PORT = 17981  # Node Manager's proxy-pass port, where its proxy's nginx takes its area's agents' requests
RELAY_PATH_PREFIX = "/api/agent/"  # the only requests it forwards: the agents' own API
# each segment plain letters, digits and ._~- without a leading dot, so no "..", no %-escape, nothing that could
# reach past /api/agent/ once the service decodes it; "(?:segment/)*" cannot backtrack badly on a long path
_SEGMENT = r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*"
RELAY_PATH = re.compile(r"{}(?:{}/)*(?:{})?".format(re.escape(RELAY_PATH_PREFIX), _SEGMENT, _SEGMENT))
RELAY_QUERY = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@/?%-]*")  # RFC 3986 query characters
RELAY_FORWARDED_HEADERS = ("Content-Type", "User-Agent", "Accept", "Authorization")
RELAY_MAX_BODY_BYTES = 64 * 1024  # a heartbeat is a few hundred bytes
RELAY_CLIENT_TIMEOUT_S = 5.0
MAX_RELAY_CLIENT_TIMEOUT_S = 300.0
# under the agents' own HTTP_TIMEOUT_S, so an agent hears the relay's 502 before it gives up waiting itself
RELAY_UPSTREAM_TIMEOUT_S = 4.0
RELAY_MAX_CLIENTS = 256
MAX_RELAY_CLIENTS = 4096
RELAY_BUSY_TIMEOUT_S = 1.0  # what a client past max_clients has to send its request before it hears 503
RELAY_LINGER_S = 1.0  # after refusing a body unread, how long the relay keeps reading it so the client hears why
RELAY_LINGER_BYTES = 1024 * 1024
RELAY_RECV_BYTES = 16 * 1024
RELAY_REPORT_S = 600.0
RELAY_POLL_S = 0.5
ENVELOPE_CODE_BASE = 3800000  # the service's codes: 3800000 + the HTTP status (e.g. 3800502)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_STOPPED = 3  # LSB init-script convention for "program is not running"

DEFAULT_HOME = os.path.dirname(os.path.abspath(__file__))
LOGGER_NAME = "nodeops_agent"


class AgentError(Exception):
    """A problem a command reports in one line before exiting 1: a bad agent.json, a missing VERSION."""


class HeartbeatFailed(Exception):
    """The service did not take a heartbeat; the message says why, for agent.log, and never holds the token."""


class RelaySettings:
    """agent.json's ``relay`` (or the ``relay`` command's options), checked: where to listen, and the bounds."""

    __slots__ = ("client_timeout_s", "host", "max_clients", "port")

    def __init__(self, *, host: str, port: int, max_clients: int, client_timeout_s: float) -> None:
        self.host = host
        self.port = port
        self.max_clients = max_clients
        self.client_timeout_s = client_timeout_s

    @property
    def listen(self) -> str:
        return "[{}]:{}".format(self.host, self.port) if ":" in self.host else "{}:{}".format(self.host, self.port)

    def __repr__(self) -> str:
        return "RelaySettings(listen={!r}, max_clients={!r}, client_timeout_s={!r})".format(
            self.listen, self.max_clients, self.client_timeout_s
        )


class Config:
    """agent.json, checked: where to report, as which host, with which secret, how often, and whether to relay."""

    __slots__ = ("bk_host_id", "instance_id", "interval_s", "relay", "server_url", "token")

    def __init__(
        self,
        *,
        server_url: str,
        bk_host_id: int,
        instance_id: str,
        token: str,
        interval_s: float,
        relay: "RelaySettings | None" = None,
    ) -> None:
        self.server_url = server_url
        self.bk_host_id = bk_host_id
        self.instance_id = instance_id
        self.token = token
        self.interval_s = interval_s
        self.relay = relay

    def __repr__(self) -> str:
        return (
            f"Config(server_url={self.server_url!r}, bk_host_id={self.bk_host_id!r}, "
            f"instance_id={self.instance_id!r}, token={REDACTED!r}, interval_s={self.interval_s!r}, "
            f"relay={self.relay!r})"
        )


# --- configuration and version -------------------------------------------------------------------------------

LISTEN_FORM = "IP:PORT (an IPv4 address, or an IPv6 one in brackets, and a port 1-65535, e.g. 127.0.0.1:{})".format(
    RELAY_PORT
)


def server_url_problem(server_url: object) -> "str | None":
    """What is wrong with a URL to report (or forward) to, or None if it will do."""
    if not isinstance(server_url, str) or not server_url.startswith(("http://", "https://")):
        return "must be an http:// or https:// URL"
    if not server_url.split("://", 1)[1].strip("/"):
        return "has no host"
    return None


def parse_listen(text: object) -> "tuple[str, int]":
    """``(ip, port)`` of an ``IP:PORT`` to listen on; raise ValueError saying what is accepted otherwise.

    The port is required: the service writes the one it configured (by default ``RELAY_PORT``), and an operator
    typing one by hand sees which port the relay takes.
    """
    if not isinstance(text, str):
        raise ValueError("must be " + LISTEN_FORM)
    version = None  # no port: an address of either version, refused below for want of the port
    port = None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        version = 6
        if rest:
            port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
        version = 4
    else:
        host = text
    try:
        address = ipaddress.ip_address(host)  # type: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    except ValueError:
        address = None
    if address is None or version not in (None, address.version):
        raise ValueError("{!r} must be {}".format(_shorten(text), LISTEN_FORM))
    if port is None or not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise ValueError("{!r} has no port 1-65535: it must be {}".format(_shorten(text), LISTEN_FORM))
    return str(address), int(port)


def parse_relay(raw: object) -> RelaySettings:
    """Check agent.json's ``relay`` object; raise AgentError naming each bad field."""
    if not isinstance(raw, dict):
        raise AgentError('relay must be an object such as {{"listen": "127.0.0.1:{}"}}'.format(RELAY_PORT))
    problems = []
    unknown = sorted(set(raw) - {"listen", "max_clients", "client_timeout_s"})
    if unknown:
        problems.append("relay has unknown fields {} (it takes listen, max_clients, client_timeout_s)".format(unknown))
    try:
        host, port = parse_listen(raw.get("listen"))
    except ValueError as exc:
        problems.append("relay.listen {}".format(exc))
    max_clients = raw.get("max_clients", RELAY_MAX_CLIENTS)
    if not isinstance(max_clients, int) or isinstance(max_clients, bool) or not 1 <= max_clients <= MAX_RELAY_CLIENTS:
        problems.append("relay.max_clients must be an integer in [1, {}]".format(MAX_RELAY_CLIENTS))
    timeout_s = raw.get("client_timeout_s", RELAY_CLIENT_TIMEOUT_S)
    if (
        not isinstance(timeout_s, (int, float))
        or isinstance(timeout_s, bool)
        or not 0 < timeout_s <= MAX_RELAY_CLIENT_TIMEOUT_S
    ):
        problems.append(
            "relay.client_timeout_s must be a number of seconds in (0, {:g}]".format(MAX_RELAY_CLIENT_TIMEOUT_S)
        )
    if problems:
        raise AgentError("; ".join(problems))
    return RelaySettings(host=host, port=port, max_clients=max_clients, client_timeout_s=float(timeout_s))


def parse_config(raw: object) -> Config:
    """Check the decoded agent.json; raise AgentError naming each bad field (and never quoting the token)."""
    if not isinstance(raw, dict):
        raise AgentError(f"{CONFIG_FILE} must hold a JSON object, not {type(raw).__name__}")
    problems = []
    server_url = raw.get("server_url")
    url_problem = server_url_problem(server_url)
    if url_problem is not None:
        problems.append("server_url " + url_problem)
    bk_host_id = raw.get("bk_host_id")
    if not isinstance(bk_host_id, int) or isinstance(bk_host_id, bool) or bk_host_id < 0:
        problems.append("bk_host_id must be a non-negative integer")
    instance_id = raw.get("instance_id")
    if not isinstance(instance_id, str) or not instance_id.strip():
        problems.append("instance_id must be a non-empty string")
    token = raw.get("token")
    if not isinstance(token, str) or not token.strip():
        problems.append("token must be a non-empty string")
    interval_s = raw.get("interval_s", DEFAULT_INTERVAL_S)
    if not isinstance(interval_s, (int, float)) or isinstance(interval_s, bool) or not 0 < interval_s <= MAX_INTERVAL_S:
        problems.append(f"interval_s must be a number of seconds in (0, {MAX_INTERVAL_S:g}]")
    relay = None
    if raw.get("relay") is not None:
        try:
            relay = parse_relay(raw["relay"])
        except AgentError as exc:
            problems.append(str(exc))
    if problems:
        raise AgentError(f"{CONFIG_FILE}: " + "; ".join(problems))
    assert isinstance(server_url, str) and isinstance(bk_host_id, int)
    assert isinstance(instance_id, str) and isinstance(token, str) and isinstance(interval_s, (int, float))
    return Config(
        server_url=server_url.rstrip("/"),
        bk_host_id=bk_host_id,
        instance_id=instance_id,
        token=token,
        interval_s=float(interval_s),
        relay=relay,
    )


def load_config(home: str) -> Config:
    """Read and check ``home/agent.json``; raise AgentError if it is missing, not JSON or has a bad field."""
    path = os.path.join(home, CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise AgentError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        raw = json.loads(text)
    except ValueError as exc:
        # json's message gives a position, never the text itself, so the token cannot leak through it
        raise AgentError(f"{path} is not valid JSON: {exc}") from exc
    return parse_config(raw)


def read_version(home: str) -> str:
    """The version in ``home/VERSION``; raise AgentError if the file is missing or empty."""
    path = os.path.join(home, VERSION_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            version = handle.read().strip()
    except OSError as exc:
        raise AgentError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not version:
        raise AgentError(f"{path} is empty")
    return version


# --- heartbeats ----------------------------------------------------------------------------------------------


def heartbeat_url(config: Config) -> str:
    return config.server_url + HEARTBEAT_PATH


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def build_heartbeat(config: Config, version: str, *, pid: int, hostname: str, sent_at: str) -> "dict[str, object]":
    """The JSON body of one heartbeat, as the service's heartbeat endpoint reads it."""
    return {
        "bk_host_id": config.bk_host_id,
        "instance_id": config.instance_id,
        "token": config.token,
        "version": version,
        "pid": pid,
        "hostname": hostname,
        "sent_at": sent_at,
    }


def next_delay_s(interval_s: float, failures: int, *, delivered: bool = True) -> float:
    """Seconds until the next heartbeat: the interval, doubled per consecutive failure up to MAX_BACKOFF_S.

    Never sooner than the interval itself, so a host told to report rarely does not report faster while failing;
    except before the first heartbeat since start is ``delivered``: FIRST_RETRY_S, doubling up to the interval.
    """
    if failures <= 0:
        return interval_s
    if not delivered:
        return min(interval_s, FIRST_RETRY_S * 2.0 ** min(failures - 1, 32))
    return max(interval_s, min(MAX_BACKOFF_S, interval_s * 2.0 ** min(failures, 32)))


class AnswerTooLarge(http.client.HTTPException):
    """The service's answer is longer than MAX_BODY_BYTES: no answer the agent (or a relay) expects is."""


class ServiceClient:
    """Posts to the service (heartbeats, or the requests a relay forwards) on one HTTP/1.1 connection, kept open
    between them for as long as the service keeps it.

    A request on a connection the service has closed since the last one (idle past its keep-alive) is sent again,
    once, on a new connection: that is not a failure. Straight to server_url, never through a proxy: the service
    hands each host the address to report to, and a proxy set for the shell that ran `start` must not reroute the
    daemon.
    """

    def __init__(self, server_url: str, timeout_s: float = HTTP_TIMEOUT_S) -> None:
        parts = urllib.parse.urlsplit(server_url)
        self.url = server_url
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._base_path = parts.path.rstrip("/")
        self._timeout_s = timeout_s
        self._connection = None  # type: http.client.HTTPConnection | None
        self.connections_opened = 0

    def post(self, target: str, body: bytes, headers: "dict[str, str]") -> "tuple[int, str, str, bytes]":
        """``(status, reason, content type, body)`` of the service's answer to ``target`` (a path and query under
        server_url); raises OSError or HTTPException (AnswerTooLarge among them) if none came."""
        while True:
            reused = self._connection is not None
            connection = self._connection or self._open()
            try:
                connection.request("POST", self._base_path + target, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read(MAX_BODY_BYTES + 1)
                if len(data) > MAX_BODY_BYTES:
                    raise AnswerTooLarge("the answer is longer than {} bytes".format(MAX_BODY_BYTES))
                if response.will_close or not response.isclosed():  # closing, or a body longer than we read
                    self.close()
                return response.status, response.reason, response.getheader("Content-Type", ""), data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if not reused:
                    raise
            except BaseException:
                self.close()
                raise

    def _open(self) -> http.client.HTTPConnection:
        if self._https:
            self._connection = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout_s)
        else:
            self._connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        self.connections_opened += 1
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def failure_detail(exc: BaseException) -> str:
    """Why a request got no answer, in a few words: the OS's reason, else the exception's class and message."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _shorten("{}: {}".format(type(exc).__name__, exc))


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL_CHARS else text[:MAX_DETAIL_CHARS] + "..."


def _rejection(body: bytes) -> "str | None":
    """Why an HTTP 200 body refuses the heartbeat: the envelope's message when ``result`` is false, else None."""
    try:
        envelope = json.loads(body.decode("utf-8"))
    except ValueError:
        return None
    if isinstance(envelope, dict) and envelope.get("result") is False:
        return _shorten(f"{envelope.get('message', '')} (code {envelope.get('code')})")
    return None


def send_heartbeat(client: ServiceClient, payload: "dict[str, object]") -> None:
    """POST one heartbeat; return when the service took it, raise HeartbeatFailed with the reason otherwise.

    The service answers business errors (a wrong token, an unknown host) with HTTP 200 and ``"result": false``,
    like Node Manager, so those count as rejections too.
    """
    headers = {"Content-Type": "application/json", "User-Agent": "nodeops-agent/{}".format(payload.get("version"))}
    try:
        status, reason, _, body = client.post(HEARTBEAT_PATH, json.dumps(payload).encode("utf-8"), headers)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise HeartbeatFailed("cannot reach {}: {}".format(client.url + HEARTBEAT_PATH, failure_detail(exc))) from None
    if status != 200:
        detail = _shorten(body.decode("utf-8", "replace"))
        raise HeartbeatFailed("rejected with HTTP {}: {}".format(status, detail or reason))
    rejection = _rejection(body)
    if rejection is not None:
        raise HeartbeatFailed("rejected: {}".format(rejection))


# --- logging ---------------------------------------------------------------------------------------------------


class RedactingFormatter(logging.Formatter):
    """UTC timestamps, and every secret masked in the whole line, traceback included."""

    def __init__(self, secrets: "list[str]") -> None:
        super().__init__("%(asctime)s %(levelname)s [%(process)d] %(message)s", "%Y-%m-%dT%H:%M:%SZ")
        self.converter = time.gmtime
        masked = set()
        for secret in secrets:
            if secret:
                masked.add(secret)
                masked.add(json.dumps(secret)[1:-1])  # as it appears inside a JSON body the service echoes
        self._secrets = sorted(masked, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def setup_logging(
    home: "str | None", *, secrets: "list[str]", echo: bool = False, max_bytes: int = LOG_MAX_BYTES
) -> logging.Logger:
    """The agent's logger, writing to ``home/agent.log`` (rotated at ``max_bytes``, one old file kept), and to
    stderr with ``echo``; with no ``home`` (the ``relay`` command), to stderr only."""
    log = logging.getLogger(LOGGER_NAME)
    close_logging(log)
    formatter = RedactingFormatter(secrets)
    handlers: list[logging.Handler] = []
    if home is not None:
        handlers.append(
            logging.handlers.RotatingFileHandler(
                os.path.join(home, LOG_FILE), maxBytes=max_bytes, backupCount=1, encoding="utf-8"
            )
        )
    if echo or home is None:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def close_logging(log: logging.Logger) -> None:
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


# --- the pid file and its lock ---------------------------------------------------------------------------------


def _same_file(fd: int, path: str) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PidFile:
    """``agent.pid``, written and locked by the running agent for as long as it lives."""

    def __init__(self, home: str) -> None:
        self.path = os.path.join(home, PID_FILE)
        self._fd: int | None = None  # not evaluated inside a function, so 3.6 is fine with it

    def acquire(self, wait_s: float = LOCK_WAIT_S) -> bool:
        """Lock the pid file and write our pid; False if another agent holds it."""
        deadline = time.monotonic() + wait_s
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    return False
                time.sleep(POLL_S / 2)
                continue
            if not _same_file(fd, self.path):  # `stop` removed a stale file between our open and our lock
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            self._fd = fd
            return True

    def is_current(self) -> bool:
        """True while the file at ``path`` is the one we locked: false once uninstall removed it without `stop`."""
        return self._fd is not None and _same_file(self._fd, self.path)

    def release(self) -> None:
        """Remove the pid file (if still ours) and drop the lock."""
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        try:
            if _same_file(fd, self.path):
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)


def _read_pid(fd: int) -> "int | None":
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def running_pid(home: str) -> "int | None":
    """The pid of the agent running from ``home``, or None: the pid file must exist and be locked."""
    path = os.path.join(home, PID_FILE)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                # an agent that has just taken the lock may not have written its pid yet
                if pid is not None and _is_alive(pid):
                    return pid
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
        finally:
            os.close(fd)
        if time.monotonic() >= deadline:
            raise AgentError(f"{path} is locked but holds no live pid")
        time.sleep(POLL_S / 2)


def remove_stale_pid_file(home: str) -> None:
    """Remove a pid file no agent holds (one left by a crash); leave it if an agent holds it."""
    path = os.path.join(home, PID_FILE)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        if _same_file(fd, path):
            os.unlink(path)
    finally:
        os.close(fd)


# --- the loop ------------------------------------------------------------------------------------------------


class StopSignal:
    """SIGTERM and SIGINT set ``requested`` and wake the sleeping loop through a self-pipe."""

    def __init__(self) -> None:
        self.requested = False
        self.signum = 0
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._previous_wakeup_fd = signal.set_wakeup_fd(self._write_fd)
        self._previous = [(signum, signal.signal(signum, self._handle)) for signum in (signal.SIGTERM, signal.SIGINT)]

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True
        self.signum = signum

    def wait(self, timeout_s: float) -> None:
        """Sleep ``timeout_s`` seconds, or less if a stop signal arrives."""
        if self.requested:
            return
        select.select([self._read_fd], [], [], max(0.0, timeout_s))
        try:
            while os.read(self._read_fd, 512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        for signum, previous in self._previous:
            if previous is not None:  # None: a handler installed outside Python, which cannot be put back
                signal.signal(signum, previous)
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        os.close(self._read_fd)
        os.close(self._write_fd)


def heartbeat_loop(config: Config, version: str, log: logging.Logger, stop: StopSignal, pid_file: PidFile) -> None:
    """Send a heartbeat now, then every interval until ``stop``; failures are logged and retried with backoff.

    Also returns once ``pid_file`` is gone: the agent's files were removed under it, and an agent nobody can find
    to stop must not report for ever.
    """
    client = ServiceClient(config.server_url)
    try:
        _beat_until_stopped(config, version, log, stop, pid_file, client)
    finally:
        client.close()


def _beat_until_stopped(
    config: Config, version: str, log: logging.Logger, stop: StopSignal, pid_file: PidFile, client: ServiceClient
) -> None:
    url = heartbeat_url(config)
    hostname = socket.gethostname()
    failures = 0
    accepted = 0
    while not stop.requested and pid_file.is_current():
        payload = build_heartbeat(config, version, pid=os.getpid(), hostname=hostname, sent_at=utc_now())
        try:
            send_heartbeat(client, payload)
        except HeartbeatFailed as exc:
            failures += 1
            delay_s = next_delay_s(config.interval_s, failures, delivered=accepted > 0)
            log.warning("heartbeat failed (%d in a row): %s; next try in %.1f s", failures, exc, delay_s)
        except Exception:  # one bad heartbeat must never end the agent
            failures += 1
            delay_s = next_delay_s(config.interval_s, failures, delivered=accepted > 0)
            log.exception("heartbeat failed (%d in a row) unexpectedly; next try in %.1f s", failures, delay_s)
        else:
            accepted += 1
            if failures:
                log.info("heartbeat accepted by %s after %d failures", url, failures)
            elif accepted == 1:
                log.info("first heartbeat accepted by %s", url)
            failures = 0
            delay_s = config.interval_s
        stop.wait(delay_s)


def _warn_if_config_is_readable(home: str, log: logging.Logger) -> None:
    path = os.path.join(home, CONFIG_FILE)
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        return
    if mode & 0o077:
        log.warning("%s is mode %o and holds this host's token: chmod 600 it", path, mode)


class StartReport:
    """The pipe on which the daemon tells the `start` that forked it that it runs (READY), or why it will not, so
    `start` fails with the reason (a relay address in use) rather than after a wait with "see the log"."""

    def __init__(self, fd: "int | None") -> None:
        self._fd = fd

    def send(self, message: str) -> None:
        """Say ``message`` (READY, or a reason) and close: `start` reads one message."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.write(fd, message.encode("utf-8", "replace")[:START_REPORT_BYTES])
        except OSError:
            pass  # `start` gave up waiting
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close without a message: `start` then waits for the pid file as it always did."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def run(home: str, *, echo: bool = False, report: "StartReport | None" = None) -> int:
    """The agent in the foreground, until SIGTERM or SIGINT: what `start` runs in its daemon, telling ``report``
    once it runs. With a relay configured, that relay serves too, and an agent whose relay cannot listen stops."""
    report = report or StartReport(None)
    config = load_config(home)
    version = read_version(home)
    log = setup_logging(home, secrets=[config.token], echo=echo)
    pid_file = PidFile(home)
    try:
        if not pid_file.acquire():
            log.error("not starting: an agent is already running from %s", home)
            return EXIT_FAILED
        relay = None
        if config.relay is not None:
            relay = Relay(config.relay, config.server_url, log)
            try:
                relay.bind()
            except AgentError as exc:
                log.error("not starting: %s", exc)
                report.send(str(exc))
                return EXIT_FAILED
        stop = StopSignal()
        try:
            log.info(
                "nodeops agent %s started (pid %d): bk_host_id %s, instance %s, reporting to %s every %g s",
                version,
                os.getpid(),
                config.bk_host_id,
                config.instance_id,
                config.server_url,
                config.interval_s,
            )
            _warn_if_config_is_readable(home, log)
            if relay is not None:
                relay.start()
            report.send(READY)
            heartbeat_loop(config, version, log, stop, pid_file)
            if stop.requested:
                log.info("nodeops agent %s stopped on signal %d", version, stop.signum)
            else:
                log.warning("nodeops agent %s exiting: %s was removed (uninstalled?)", version, pid_file.path)
            return EXIT_OK
        except Exception:
            log.exception("nodeops agent %s crashed", version)
            return EXIT_FAILED
        finally:
            if relay is not None:
                relay.stop()
            stop.close()
    finally:
        pid_file.release()
        close_logging(log)


# --- the relay (proxy mode) ----------------------------------------------------------------------------------


class RelayCounts:
    """What a relay did, counted across its threads: in all, and since the last report."""

    FIELDS = ("forwarded", "refused", "failed", "busy", "dropped")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = dict.fromkeys(self.FIELDS, 0)
        self._recent = dict.fromkeys(self.FIELDS, 0)

    def add(self, field: str) -> None:
        with self._lock:
            self._total[field] += 1
            self._recent[field] += 1

    def total(self) -> "dict[str, int]":
        with self._lock:
            return dict(self._total)

    def take_recent(self) -> "dict[str, int]":
        """The counts since the last call (or the start), which start again from zero."""
        with self._lock:
            recent, self._recent = self._recent, dict.fromkeys(self.FIELDS, 0)
            return recent


def describe_counts(counts: "dict[str, int]") -> str:
    return (
        "{forwarded} forwarded, {refused} refused (not an agent request, or malformed), {failed} failed (502: the "
        "service did not answer), {busy} turned away (503: too many clients), {dropped} dropped (stalled or gone)"
    ).format(**counts)


class Relay:
    """An HTTP server forwarding its area's agents' requests to ``upstream_url`` (see the module's docstring).

    ``bind`` (raises AgentError saying why it cannot listen), then ``start`` (serves in a thread) and ``stop``: the
    daemon runs it beside its heartbeats, the ``relay`` command alone. It logs where it listens and forwards to,
    the service going away and coming back, and counts; never a request's headers or body, which hold other
    hosts' tokens.
    """

    def __init__(self, settings: RelaySettings, upstream_url: str, log: logging.Logger) -> None:
        self.settings = settings
        self.upstream_url = upstream_url
        self.log = log
        self.counts = RelayCounts()
        self._server = None  # type: _RelayServer | None
        self._thread = None  # type: threading.Thread | None
        self._lock = threading.Lock()
        self._failures = 0  # requests the service has not answered since it last did
        self._reported_at = time.monotonic()

    def bind(self) -> None:
        try:
            self._server = _RelayServer(self)
        except OSError as exc:
            raise AgentError(
                "relay cannot listen on {}: {}".format(self.settings.listen, exc.strerror or failure_detail(exc))
            ) from None

    def start(self) -> None:
        server = self._server
        assert server is not None, "bind() first"
        self._thread = threading.Thread(target=server.serve_forever, args=(RELAY_POLL_S,), name="relay")
        self._thread.daemon = True
        self._thread.start()
        self.log.info(
            "relay listening on %s, forwarding POST %s... to %s (at most %d clients at once, %g s per request)",
            self.settings.listen,
            RELAY_PATH_PREFIX,
            self.upstream_url,
            self.settings.max_clients,
            self.settings.client_timeout_s,
        )

    def stop(self) -> None:
        """Stop listening (requests being forwarded end with the process); log what it did in all."""
        server = self._server
        if server is None:
            return
        self._server = None
        if self._thread is not None:
            server.shutdown()
            self._thread.join()
            self._thread = None
        server.server_close()
        self.log.info("relay on %s stopped: %s", self.settings.listen, describe_counts(self.counts.total()))

    def upstream_answered(self) -> None:
        with self._lock:
            failures, self._failures = self._failures, 0
        if failures:
            self.log.info("relay: %s answers again, after %d requests it did not answer", self.upstream_url, failures)

    def upstream_failed(self, detail: str) -> None:
        """Log the first of a run of failures only: an area's agents would otherwise repeat it every interval."""
        with self._lock:
            self._failures += 1
            first = self._failures == 1
        if first:
            self.log.warning(
                "relay: cannot forward to %s: %s; answering 502 until it answers", self.upstream_url, detail
            )

    def report(self) -> None:
        """Every RELAY_REPORT_S, log the counts since the last report, if anything happened."""
        now = time.monotonic()
        if now - self._reported_at < RELAY_REPORT_S:
            return
        self._reported_at = now
        recent = self.counts.take_recent()
        if any(recent.values()):
            self.log.info("relay in the last %g s: %s", RELAY_REPORT_S, describe_counts(recent))


class _RelayServer(http.server.HTTPServer):
    """Each connection served in a thread of its own: at most ``max_clients`` forwarding, and as many more that only
    read a request (for up to RELAY_BUSY_TIMEOUT_S) to answer it 503; past those, a connection is closed at once."""

    request_queue_size = 128  # the listen backlog: an area's agents may all come back at once

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.address_family = socket.AF_INET6 if ":" in relay.settings.host else socket.AF_INET
        self._serving = threading.BoundedSemaphore(relay.settings.max_clients)
        self._turning_away = threading.BoundedSemaphore(relay.settings.max_clients)
        super().__init__((relay.settings.host, relay.settings.port), _RelayHandler)

    def server_bind(self) -> None:
        # HTTPServer's own looks the address's host name up (getfqdn): slow, or stuck, on a host without DNS
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.relay.settings.host
        self.server_port = self.server_address[1]

    def process_request(self, request: "socket.socket", client_address: "tuple[str, int]") -> None:  # type: ignore[override]
        busy = False
        slots = self._serving
        if not slots.acquire(blocking=False):
            busy = True
            slots = self._turning_away
            if not slots.acquire(blocking=False):
                self.relay.counts.add("busy")
                self.shutdown_request(request)
                return
        thread = threading.Thread(
            target=self._serve_client, args=(request, client_address, busy, slots), name="relay-client"
        )
        thread.daemon = True
        thread.start()

    def _serve_client(
        self,
        request: "socket.socket",
        client_address: "tuple[str, int]",
        busy: bool,
        slots: "threading.BoundedSemaphore",
    ) -> None:
        try:
            _RelayHandler(request, client_address, self, busy=busy)
        except OSError:  # the client reset the connection, or stopped reading our answer
            self.relay.counts.add("dropped")
        except Exception as exc:  # only its class: the message could quote what a client sent
            self.relay.log.error("relay: unexpected %s while serving a client", type(exc).__name__)
        finally:
            self.shutdown_request(request)
            slots.release()

    def service_actions(self) -> None:
        self.relay.report()


class _ClientStream:
    """A relay client's bytes, read against a deadline per request, ``recv`` by ``recv``, each given only the time
    left: a socket timeout alone bounds one ``recv``, so a client sending a byte at a time would hold its thread
    for as long as it liked. It is all ``BaseHTTPRequestHandler`` reads through (``readline``) and the body."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._deadline = 0.0
        self.began = False  # bytes of the current request have arrived
        self.timed_out = False

    def start(self, timeout_s: float) -> None:
        """The next request (waiting for it included) must arrive within ``timeout_s``."""
        self._deadline = time.monotonic() + timeout_s
        self.began = bool(self._buffer)
        self.timed_out = False

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 and (limit < 0 or end < limit):
                return self._take(end + 1)
            if 0 <= limit <= len(self._buffer):
                return self._take(limit)
            if not self._fill():
                return self._take(len(self._buffer))

    def read(self, size: int) -> bytes:
        """``size`` bytes, or fewer if the client closed the connection first."""
        while len(self._buffer) < size and self._fill():
            pass
        return self._take(min(size, len(self._buffer)))

    def close(self) -> None:
        """Nothing to release: the socket is the handler's (StreamRequestHandler.finish calls this)."""

    def _fill(self) -> bool:
        left = self._deadline - time.monotonic()
        if left <= 0:
            self.timed_out = True
            raise socket.timeout("timed out")
        self._sock.settimeout(left)
        try:
            chunk = self._sock.recv(RELAY_RECV_BYTES)
        except socket.timeout:
            self.timed_out = True
            raise
        if chunk:
            self.began = True
            self._buffer += chunk
        return bool(chunk)

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


def _linger(sock: socket.socket) -> None:
    """After answering a request whose body was left unread: stop sending, and read (and drop) what the client is
    still sending for a moment, so that closing does not reset the connection before it has read the answer."""
    deadline = time.monotonic() + RELAY_LINGER_S
    drained = 0
    try:
        sock.shutdown(socket.SHUT_WR)
        while drained < RELAY_LINGER_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            sock.settimeout(left)
            chunk = sock.recv(RELAY_RECV_BYTES)
            if not chunk:
                return
            drained += len(chunk)
    except OSError:
        pass


class _RelayHandler(http.server.BaseHTTPRequestHandler):
    """One client connection of the relay: each request forwarded upstream, or answered by the relay itself."""

    protocol_version = "HTTP/1.1"  # keep-alive: an agent posts its heartbeats on one connection
    server_version = "nodeops-relay"
    sys_version = ""
    server: "_RelayServer"
    rfile: "_ClientStream"  # type: ignore[assignment]

    def __init__(
        self, request: socket.socket, client_address: "tuple[str, int]", server: _RelayServer, *, busy: bool = False
    ) -> None:
        self.busy = busy
        self.timeout_s = RELAY_BUSY_TIMEOUT_S if busy else server.relay.settings.client_timeout_s
        self.unread_body = False
        self.upstream = None  # type: ServiceClient | None
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the buffered file StreamRequestHandler opened, which reads past any deadline
        self.rfile = _ClientStream(self.connection)

    def handle_one_request(self) -> None:
        self.rfile.start(self.timeout_s)
        super().handle_one_request()  # on a timeout it closes the connection
        if self.rfile.timed_out and self.rfile.began:  # a request begun but not sent in time, not an idle wait
            self.server.relay.counts.add("dropped")

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.busy:
            self._refuse(
                503,
                "the relay on {} is serving {} clients already: try again shortly".format(
                    self.server.relay.settings.listen, self.server.relay.settings.max_clients
                ),
                count="busy",
            )
            return False
        return True

    def do_POST(self) -> None:
        path, _, query = self.path.partition("?")
        if not RELAY_PATH.fullmatch(path) or not RELAY_QUERY.fullmatch(query):
            self._refuse(404, "the relay forwards only agents' requests: POST {}...".format(RELAY_PATH_PREFIX))
            return
        length = self._content_length()
        if length is None:
            return
        body = self.rfile.read(length)
        if len(body) < length:  # the client went away before sending all of it: nobody to answer
            self.server.relay.counts.add("dropped")
            self.close_connection = True
            return
        self._forward(body)

    def _refuse_method(self) -> None:
        self._refuse(405, "the relay forwards only POST requests", extra={"Allow": "POST"})

    do_GET = do_HEAD = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _refuse_method

    def send_error(self, code: int, message: "str | None" = None, explain: "str | None" = None) -> None:
        """The standard library's own refusals (a malformed request line or header, an unknown method), in the
        envelope too."""
        self._refuse(code, message or self.responses.get(code, ("refused",))[0])

    def log_message(self, format: str, *args: object) -> None:
        """Nothing: the standard library would write each request line to stderr; the relay logs counts."""

    def _content_length(self) -> "int | None":
        """The body's declared length, or None once the request has been refused for it."""
        if self.headers.get("Transfer-Encoding") is not None:
            self._refuse(411, "send the body with a Content-Length, not in chunks")
            return None
        values = self.headers.get_all("Content-Length") or []
        if not values:
            self._refuse(411, "a Content-Length is required")
            return None
        if len(set(values)) > 1 or not re.fullmatch(r"[0-9]{1,20}", values[0].strip()):
            self._refuse(400, "Content-Length must be one number of bytes")
            return None
        length = int(values[0])
        if length > RELAY_MAX_BODY_BYTES:
            self._refuse(
                413, "the body is {} bytes: the relay forwards at most {}".format(length, RELAY_MAX_BODY_BYTES)
            )
            return None
        return length

    def _forward(self, body: bytes) -> None:
        relay = self.server.relay
        headers = {}
        for name in RELAY_FORWARDED_HEADERS:
            value = self.headers.get(name)
            if value is not None:
                headers[name] = value
        # appended to, as nginx's $proxy_add_x_forwarded_for does
        headers["X-Forwarded-For"] = ", ".join(
            (self.headers.get_all("X-Forwarded-For") or []) + [self.client_address[0]]
        )
        if self.upstream is None:
            self.upstream = ServiceClient(relay.upstream_url, RELAY_UPSTREAM_TIMEOUT_S)
        try:
            status, _, content_type, answer = self.upstream.post(self.path, body, headers)
        except ValueError:  # http.client refused a header's value; its message would quote it
            self._refuse(400, "a header the relay forwards ({}) is not valid HTTP".format(", ".join(sorted(headers))))
            return
        except (OSError, http.client.HTTPException) as exc:
            detail = failure_detail(exc)
            relay.upstream_failed(detail)
            message = "the relay on {} got no answer from {}: {}".format(
                relay.settings.listen, relay.upstream_url, detail
            )
            self._refuse(502, message, count="failed", close=False)
            return
        relay.upstream_answered()
        relay.counts.add("forwarded")
        self._answer(status, content_type, answer)

    def _refuse(
        self,
        status: int,
        message: str,
        *,
        count: str = "refused",
        close: bool = True,
        extra: "dict[str, str] | None" = None,
    ) -> None:
        """Answer ``status`` with the service's envelope; by default also close, as the body may be left unread."""
        self.server.relay.counts.add(count)
        if close:
            self.close_connection = True
            self.unread_body = True
        body = {"result": False, "code": ENVELOPE_CODE_BASE + status, "message": message, "data": None}
        self._answer(status, "application/json", json.dumps(body).encode("utf-8"), extra)

    def _answer(self, status: int, content_type: str, body: bytes, extra: "dict[str, str] | None" = None) -> None:
        self.connection.settimeout(self.timeout_s)  # a client that does not read its answer is dropped too
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self.upstream is not None:
                self.upstream.close()
            if self.unread_body:
                _linger(self.connection)


# --- commands ------------------------------------------------------------------------------------------------


def _close_inherited_fds(keep: int) -> None:
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 65536))
    for fd in fds:
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the descriptor listdir itself used (already closed), or one never open


def _run_detached(home: str, report_fd: int) -> int:
    """run(), with failures before its logging is up (the config changed since `start` checked it) logged and
    reported to `start` too."""
    report = StartReport(report_fd)
    try:
        return run(home, report=report)
    except AgentError as exc:
        log = setup_logging(home, secrets=[])  # AgentError messages never quote the token
        log.error("not starting: %s", exc)
        close_logging(log)
        report.send(str(exc))
        return EXIT_FAILED
    finally:
        report.close()


def _become_daemon(home: str, report_fd: int) -> None:
    """Run in the child of `start`'s fork: detach (setsid, second fork), then run the agent; never returns."""
    code = EXIT_FAILED
    try:
        os.setsid()
        if os.fork() > 0:
            code = EXIT_OK
            return
        os.chdir("/")
        os.umask(0o022)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        _close_inherited_fds(keep=report_fd)
        code = _run_detached(home, report_fd)
    except BaseException:
        code = EXIT_FAILED  # stdout and stderr are /dev/null by now; run() logs its own failures
    finally:
        os._exit(code)


def _read_start_report(fd: int, deadline: float) -> str:
    """What the daemon reported on ``fd`` (READY or why it did not start), or "" if it closed it without a word
    or did not report by ``deadline``."""
    data = b""
    while len(data) < START_REPORT_BYTES:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return ""
        chunk = os.read(fd, START_REPORT_BYTES)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace").strip()


def command_start(home: str) -> int:
    """Start the agent as a daemon; exit 0 once it runs (or if it already did), 1 saying why if it cannot."""
    # fail here, on the caller's terminal, rather than in the detached daemon whose stderr is /dev/null
    load_config(home)
    version = read_version(home)
    log_path = os.path.join(home, LOG_FILE)
    try:
        with open(log_path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise AgentError(f"cannot write {log_path}: {exc.strerror or exc}") from exc
    pid = running_pid(home)
    if pid is not None:
        print(f"already running (pid {pid})")
        return EXIT_OK
    sys.stdout.flush()
    sys.stderr.flush()
    report_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(report_fd)
        _become_daemon(home, write_fd)
    os.close(write_fd)
    os.waitpid(child, 0)
    deadline = time.monotonic() + START_WAIT_S
    try:
        reported = _read_start_report(report_fd, deadline)
    finally:
        os.close(report_fd)
    if reported and reported != READY:
        raise AgentError(reported)
    while time.monotonic() < deadline:
        pid = running_pid(home)
        if pid is not None:
            print(f"started (pid {pid}, version {version})")
            return EXIT_OK
        time.sleep(POLL_S)
    print(f"the agent did not start within {START_WAIT_S:g} s; see {log_path}", file=sys.stderr)
    return EXIT_FAILED


def _wait_until_gone(home: str, pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if running_pid(home) != pid:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def command_stop(home: str) -> int:
    """Stop the agent: SIGTERM, up to 10 s, then SIGKILL; exit 0 when it is not running afterwards."""
    pid = running_pid(home)
    if pid is None:
        remove_stale_pid_file(home)
        print("not running")
        return EXIT_OK
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    how = "stopped"
    if not _wait_until_gone(home, pid, STOP_WAIT_S):
        print(f"pid {pid} still running {STOP_WAIT_S:g} s after SIGTERM: sending SIGKILL", file=sys.stderr)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        how = "killed"
        if not _wait_until_gone(home, pid, KILL_WAIT_S):
            print(f"pid {pid} survived SIGKILL", file=sys.stderr)
            return EXIT_FAILED
    remove_stale_pid_file(home)
    print(f"{how} (pid {pid})")
    return EXIT_OK


def command_restart(home: str) -> int:
    load_config(home)
    read_version(home)
    code = command_stop(home)
    return code if code != EXIT_OK else command_start(home)


def command_status(home: str) -> int:
    pid = running_pid(home)
    if pid is None:
        print("stopped")
        return EXIT_STOPPED
    try:
        version = read_version(home)
    except AgentError:
        version = "unknown"
    print(f"running {pid} {version}")
    return EXIT_OK


def command_run(home: str) -> int:
    return run(home, echo=True)


def command_version(home: str) -> int:
    print(read_version(home))
    return EXIT_OK


def command_relay(listen: str, upstream: str, max_clients: int, client_timeout_s: float) -> int:
    """Only the relay, in the foreground until SIGTERM or SIGINT, logging to stderr: on a jump server."""
    settings = parse_relay({"listen": listen, "max_clients": max_clients, "client_timeout_s": client_timeout_s})
    problem = server_url_problem(upstream)
    if problem is not None:
        raise AgentError("--upstream {!r} {}".format(_shorten(upstream), problem))
    log = setup_logging(None, secrets=[])
    relay = Relay(settings, upstream.rstrip("/"), log)
    try:
        relay.bind()
        stop = StopSignal()
        try:
            relay.start()
            while not stop.requested:
                stop.wait(RELAY_REPORT_S)
            log.info("relay stopping on signal %d", stop.signum)
        finally:
            relay.stop()
            stop.close()
    finally:
        close_logging(log)
    return EXIT_OK


COMMANDS = {
    "start": command_start,
    "stop": command_stop,
    "restart": command_restart,
    "status": command_status,
    "run": command_run,
    "version": command_version,
}
RELAY_COMMAND = "relay"


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="nodeops_agent.py", description="The nodeops agent on this host.")
    parser.add_argument("command", choices=[*COMMANDS, RELAY_COMMAND])
    parser.add_argument(
        "--home", default=DEFAULT_HOME, help="folder with VERSION and agent.json (default: this script's folder)"
    )
    relay_options = parser.add_argument_group("relay", "the relay command's options (it reads no agent.json)")
    relay_options.add_argument("--listen", help="IP:PORT to serve agents on, e.g. 127.0.0.1:{}".format(RELAY_PORT))
    relay_options.add_argument("--upstream", help="the service's URL to forward their requests to")
    relay_options.add_argument("--max-clients", type=int, default=RELAY_MAX_CLIENTS, help="clients served at once")
    relay_options.add_argument(
        "--client-timeout", type=float, default=RELAY_CLIENT_TIMEOUT_S, help="seconds a client has for each request"
    )
    args = parser.parse_args(argv)
    if args.command == RELAY_COMMAND and (args.listen is None or args.upstream is None):
        parser.error("relay needs --listen IP:PORT and --upstream URL")
    if args.command != RELAY_COMMAND and (args.listen is not None or args.upstream is not None):
        parser.error("--listen and --upstream belong to the relay command")
    try:
        if args.command == RELAY_COMMAND:
            return command_relay(args.listen, args.upstream, args.max_clients, args.client_timeout)
        return COMMANDS[args.command](os.path.abspath(args.home))
    except AgentError as exc:
        print(f"nodeops agent {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
