#!/usr/bin/env python3
"""nodeops agent: the program nodeops installs on a host, which reports heartbeats with its version to the service.

It runs on the host's own ``python3`` (3.6 or newer), alone: it imports only the standard library, never nodeops,
and keeps to 3.6 syntax, so annotations 3.6 cannot evaluate are quoted. Its home folder (``--home``, by default the
folder this file is in) holds ``VERSION``, ``agent.json`` (``server_url``, ``bk_host_id``, ``instance_id``,
``token``, ``interval_s``), ``agent.pid`` and ``agent.log`` (rotated at 1 MiB, one old file kept).

Commands: ``start`` (daemonize, exit 0 once running), ``stop``, ``restart``, ``status`` (``running <pid> <version>``
exit 0, or ``stopped`` exit 3), ``run`` (the foreground loop the daemon runs) and ``version``. A running agent
holds an exclusive ``flock`` on ``agent.pid``, so a pid file left by a crash, or a pid since reused by another
process, never reads as running; and an agent whose pid file disappears (its files removed without ``stop``)
exits. The token goes to the service in each heartbeat and nowhere else: every log line passes a formatter that
masks it.
"""

import argparse
import fcntl
import http.client
import json
import logging
import logging.handlers
import os
import select
import signal
import socket
import sys
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
LOCK_WAIT_S = 1.0  # a status probe holds the pid file's lock for microseconds; a running agent holds it for good
POLL_S = 0.05
MAX_BODY_BYTES = 64 * 1024
MAX_DETAIL_CHARS = 200
REDACTED = "***"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_STOPPED = 3  # LSB init-script convention for "program is not running"

DEFAULT_HOME = os.path.dirname(os.path.abspath(__file__))
LOGGER_NAME = "nodeops_agent"


class AgentError(Exception):
    """A problem a command reports in one line before exiting 1: a bad agent.json, a missing VERSION."""


class HeartbeatFailed(Exception):
    """The service did not take a heartbeat; the message says why, for agent.log, and never holds the token."""


class Config:
    """agent.json, checked: where to report, as which host, with which secret, how often."""

    __slots__ = ("bk_host_id", "instance_id", "interval_s", "server_url", "token")

    def __init__(self, *, server_url: str, bk_host_id: int, instance_id: str, token: str, interval_s: float) -> None:
        self.server_url = server_url
        self.bk_host_id = bk_host_id
        self.instance_id = instance_id
        self.token = token
        self.interval_s = interval_s

    def __repr__(self) -> str:
        return (
            f"Config(server_url={self.server_url!r}, bk_host_id={self.bk_host_id!r}, "
            f"instance_id={self.instance_id!r}, token={REDACTED!r}, interval_s={self.interval_s!r})"
        )


# --- configuration and version -------------------------------------------------------------------------------


def parse_config(raw: object) -> Config:
    """Check the decoded agent.json; raise AgentError naming each bad field (and never quoting the token)."""
    if not isinstance(raw, dict):
        raise AgentError(f"{CONFIG_FILE} must hold a JSON object, not {type(raw).__name__}")
    problems = []
    server_url = raw.get("server_url")
    if not isinstance(server_url, str) or not server_url.startswith(("http://", "https://")):
        problems.append("server_url must be an http:// or https:// URL")
    elif not server_url.split("://", 1)[1].strip("/"):
        problems.append("server_url has no host")
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


class HeartbeatClient:
    """Posts heartbeats on one HTTP/1.1 connection, kept open between them for as long as the service keeps it.

    A heartbeat on a connection the service has closed since the last one (idle past its keep-alive) is sent
    again, once, on a new connection: that is not a failure. Straight to server_url, never through a proxy: the
    service hands each host the address to report to, and a proxy set for the shell that ran `start` must not
    reroute the daemon.
    """

    def __init__(self, url: str, timeout_s: float = HTTP_TIMEOUT_S) -> None:
        parts = urllib.parse.urlsplit(url)
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        self._timeout_s = timeout_s
        self._connection = None  # type: http.client.HTTPConnection | None
        self.connections_opened = 0

    def post(self, body: bytes, headers: "dict[str, str]") -> "tuple[int, str, bytes]":
        """``(status, reason, body)`` of the service's answer; raises OSError or HTTPException if none came."""
        while True:
            reused = self._connection is not None
            connection = self._connection or self._open()
            try:
                connection.request("POST", self._target, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read(MAX_BODY_BYTES)
                if response.will_close or not response.isclosed():  # closing, or a body longer than we read
                    self.close()
                return response.status, response.reason, data
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


def send_heartbeat(client: HeartbeatClient, payload: "dict[str, object]") -> None:
    """POST one heartbeat; return when the service took it, raise HeartbeatFailed with the reason otherwise.

    The service answers business errors (a wrong token, an unknown host) with HTTP 200 and ``"result": false``,
    like Node Manager, so those count as rejections too.
    """
    headers = {"Content-Type": "application/json", "User-Agent": "nodeops-agent/{}".format(payload.get("version"))}
    try:
        status, reason, body = client.post(json.dumps(payload).encode("utf-8"), headers)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else "{}: {}".format(type(exc).__name__, exc)
        raise HeartbeatFailed("cannot reach {}: {}".format(client.url, detail)) from None
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
    home: str, *, secrets: "list[str]", echo: bool = False, max_bytes: int = LOG_MAX_BYTES
) -> logging.Logger:
    """The agent's logger, writing to ``home/agent.log`` (rotated at ``max_bytes``, one old file kept)."""
    log = logging.getLogger(LOGGER_NAME)
    close_logging(log)
    formatter = RedactingFormatter(secrets)
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(
            os.path.join(home, LOG_FILE), maxBytes=max_bytes, backupCount=1, encoding="utf-8"
        )
    ]
    if echo:
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
    client = HeartbeatClient(heartbeat_url(config))
    try:
        _beat_until_stopped(config, version, log, stop, pid_file, client)
    finally:
        client.close()


def _beat_until_stopped(
    config: Config, version: str, log: logging.Logger, stop: StopSignal, pid_file: PidFile, client: HeartbeatClient
) -> None:
    url = client.url
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


def run(home: str, *, echo: bool = False) -> int:
    """The agent in the foreground, until SIGTERM or SIGINT: what `start` runs in its daemon."""
    config = load_config(home)
    version = read_version(home)
    log = setup_logging(home, secrets=[config.token], echo=echo)
    pid_file = PidFile(home)
    try:
        if not pid_file.acquire():
            log.error("not starting: an agent is already running from %s", home)
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
            stop.close()
    finally:
        pid_file.release()
        close_logging(log)


# --- commands ------------------------------------------------------------------------------------------------


def _close_inherited_fds() -> None:
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        os.closerange(3, 65536)
        return
    for fd in fds:
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass  # the descriptor listdir itself used, already closed


def _run_detached(home: str) -> int:
    """run(), with failures before its logging is up (the config changed since `start` checked it) logged too."""
    try:
        return run(home)
    except AgentError as exc:
        log = setup_logging(home, secrets=[])  # AgentError messages never quote the token
        log.error("not starting: %s", exc)
        close_logging(log)
        return EXIT_FAILED


def _become_daemon(home: str) -> None:
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
        _close_inherited_fds()
        code = _run_detached(home)
    except BaseException:
        code = EXIT_FAILED  # stdout and stderr are /dev/null by now; run() logs its own failures
    finally:
        os._exit(code)


def command_start(home: str) -> int:
    """Start the agent as a daemon; exit 0 once it runs (or if it already did)."""
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
    child = os.fork()
    if child == 0:
        _become_daemon(home)
    os.waitpid(child, 0)
    deadline = time.monotonic() + START_WAIT_S
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


COMMANDS = {
    "start": command_start,
    "stop": command_stop,
    "restart": command_restart,
    "status": command_status,
    "run": command_run,
    "version": command_version,
}


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="nodeops_agent.py", description="The nodeops agent on this host.")
    parser.add_argument("command", choices=list(COMMANDS))
    parser.add_argument(
        "--home", default=DEFAULT_HOME, help="folder with VERSION and agent.json (default: this script's folder)"
    )
    args = parser.parse_args(argv)
    home = os.path.abspath(args.home)
    try:
        return COMMANDS[args.command](home)
    except AgentError as exc:
        print(f"nodeops agent {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
