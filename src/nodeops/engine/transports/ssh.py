"""``SSHTransport``: one host over SSH (asyncssh), the peer of ``LocalTransport`` behind ``base.Transport``.

This is the only module of nodeops that imports asyncssh; every asyncssh or socket error stops here and leaves as
a ``nodeops.errors.TransportError`` subclass, and no message carries the password or the private key. It imports
nothing from nodeops but ``errors`` and ``engine.transports.base``.

Host keys follow ``SSHTarget.host_key_policy``, and the keys trusted are kept by the ``HostKeyStore`` the transport
is given (the database's ``host_keys`` table in the service, shared by every process on every machine):

- ``accept-new`` (the default) is trust on first use, like OpenSSH's ``StrictHostKeyChecking accept-new``. For a
  host the store has no key for, the transport first asks the host for its key (a key exchange, no login), records
  it (the first process to record a key for that address and port wins) and then logs in checking the key the store
  holds afterwards, so no password or key is sent to a host before its key is recorded. Later logins must show that
  key; a host whose key has changed is refused with ``AuthFailed`` naming the host and how to forget its old key.
- ``strict`` accepts only keys the store already holds.
- ``off`` checks nothing; only for tests and benches on loopback.

A host the service cannot reach directly is reached through another one (a proxy of its cloud area, or a jump
server of its install channel): the transport given ``via`` logs in to that hop first, with the hop's own login
and host key check, and opens its own SSH connection inside a direct-tcpip channel of the hop's (OpenSSH's
``ProxyJump``); nothing is copied to the hop, and the host's key is checked as any other's.

The connection is opened lazily by the first ``run``/``put`` (or by ``connect()``), retried once when the host
resets it, as Node Manager does (an overloaded sshd drops connections beyond its ``MaxStartups``), and reopened
if it is lost between calls. Commands run under a small ``sh`` wrapper that puts their output in one stream and kills
their whole process group as soon as our side of the channel closes, so a timeout, a cancellation or a dropped
connection leaves nothing running on the host. Uploads go over SFTP in small chunks, each reserved from an
``UploadLimiter`` until the host has acknowledged it, so memory stays bounded however many hosts upload at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Protocol

import asyncssh
from asyncssh.saslprep import SASLPrepError, saslprep

from nodeops.engine.transports.base import OUTPUT_TAIL_LINES, CommandResult, LineSink
from nodeops.errors import AuthFailed, CommandFailed, CommandTimeout, HostUnreachable, TransportError

logger = logging.getLogger(__name__)

DEFAULT_PORT = 22
DEFAULT_UPLOAD_BUDGET_BYTES = 32 * 1024 * 1024
PUT_CHUNK_BYTES = 64 * 1024
PUT_PARALLEL_WRITES = 4  # SFTP writes in flight per upload: hides latency, bounds memory at 4 chunks
READ_CHUNK_BYTES = 64 * 1024
MAX_LINE_BYTES = 64 * 1024  # a longer line is cut into pieces, so one host's output stays bounded in memory
CONNECT_RETRY_DELAY_S = 0.5
STOP_GRACE_S = 2.0  # how long a timed-out command may take to die before we stop waiting for it
CLOSE_GRACE_S = 5.0  # how long aclose waits for a polite SSH disconnect
# Ciphers in order of preference: asyncssh's own list with AES-GCM first. Its chacha20-poly1305 takes several
# library calls per packet (about 6x the CPU of AES-GCM's one), and a fleet job is mostly small packets; every
# OpenSSH since 6.2 offers AES-GCM, and older hosts still get the rest of the list.
ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)

# Runs the command (as $1) with stdin from /dev/null and stderr into stdout, and keeps a watcher reading our
# stdin: the client never writes to it, so the watcher returns only when our side of the channel closes (timeout,
# cancellation, lost connection) and then kills the whole process group, which sshd made for this session.
# The watcher's stdin must be redirected explicitly: sh gives background jobs /dev/null otherwise.
_WRAPPER = (
    'exec 3<&0 2>&1; sh -c "$1" </dev/null 3<&- & cmd=$!; '
    "(read -r _ <&3; kill -KILL 0) & watch=$!; "
    'wait "$cmd"; status=$?; kill "$watch" 2>/dev/null; exit "$status"'
)


def login_name_problem(username: str) -> str | None:
    """Why ``username`` cannot be the login of an SSH connection, or None when it can. asyncssh prepares every
    login name with SASLprep (RFC 4013) when it connects, which refuses control characters, unassigned code
    points and mixed-direction text; checking it here lets a job refuse such a name when it is created."""
    if not username.isprintable():
        control = next(char for char in username if not char.isprintable())
        return f"must not contain control or non-printing characters (it holds {control!r})"
    try:
        prepared = saslprep(username)
    except SASLPrepError as exc:
        return f"is not a valid SSH login name ({exc})"
    return None if prepared else "is empty once SASLprep (RFC 4013) maps it"


class HostKeyPolicy(StrEnum):
    ACCEPT_NEW = "accept-new"  # trust a host's first key, remember it, refuse it if it changes
    STRICT = "strict"  # accept only keys the host key store already holds
    OFF = "off"  # no check at all: tests and benches on loopback only


# What to do about a host whose key is not trusted (strict), and one whose key no longer matches the trusted one.
# The service's store is the database, so they name the service's own ways to change it.
TRUST_KEY_HINT = (
    "log in to it once with 'accept-new', or put its line in the data dir's known_hosts file and restart the service, "
    "which imports that file"
)
FORGET_KEY_HINT = "if the host was reinstalled, forget its old key with `nodeops hosts forget-key {host} --port {port}`"


class HostKeyStore(Protocol):
    """The host keys trusted, by address and port; a key is its OpenSSH algorithm and base64 blob, "ssh-ed25519 AAAA".

    Shared by every transport (and, in the service, every process): ``add`` must be atomic, so that of two callers
    recording different keys for one new host, one wins and both get the winner's key back.
    """

    async def known(self, host: str, port: int) -> list[str]:
        """The keys trusted for ``host:port`` (none: ``[]``)."""
        ...

    async def add(self, host: str, port: int, key: str) -> list[str]:
        """Trust ``key`` for ``host:port`` unless a key is trusted for it already; returns the keys trusted after."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SSHTarget:
    """Where and how to log in; ``password`` and ``private_key`` (PEM or OpenSSH text) never appear in repr."""

    host: str  # an IP address
    port: int = DEFAULT_PORT
    username: str
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    connect_timeout_s: float = 30.0
    host_key_policy: HostKeyPolicy = HostKeyPolicy.ACCEPT_NEW

    @property
    def address(self) -> str:
        """``host:port``, as messages name the host."""
        return f"{self.host}:{self.port}"


class UploadLimiter:
    """A budget of upload bytes in flight (read from disk, not yet acknowledged by a host) for the whole process.

    Share one instance between every ``SSHTransport`` of a process; each transfer reserves at most one chunk at a
    time per write in flight. Waiters are served first come, first served, so a big reservation is not starved.
    """

    def __init__(self, budget_bytes: int = DEFAULT_UPLOAD_BUDGET_BYTES) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be positive, not {budget_bytes}")
        self.budget_bytes = budget_bytes
        self.peak_in_flight_bytes = 0
        self._available = budget_bytes
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def in_flight_bytes(self) -> int:
        return self.budget_bytes - self._available

    async def acquire(self, size_bytes: int) -> None:
        """Wait until ``size_bytes`` (at most the budget) are free, and take them; pair with ``release``."""
        if not 0 < size_bytes <= self.budget_bytes:
            raise ValueError(f"size_bytes must be between 1 and the budget {self.budget_bytes}, not {size_bytes}")
        if not self._waiters and self._available >= size_bytes:
            self._take(size_bytes)
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((size_bytes, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(size_bytes)  # granted just as we were cancelled: give it back
            else:
                self._waiters.remove((size_bytes, waiter))
                self._wake()  # we may have been blocking smaller waiters behind us
            raise

    def release(self, size_bytes: int) -> None:
        self._available += size_bytes
        self._wake()

    def _take(self, size_bytes: int) -> None:
        self._available -= size_bytes
        self.peak_in_flight_bytes = max(self.peak_in_flight_bytes, self.in_flight_bytes)

    def _wake(self) -> None:
        while self._waiters and self._waiters[0][0] <= self._available:
            size_bytes, waiter = self._waiters.popleft()
            if not waiter.done():
                self._take(size_bytes)
                waiter.set_result(None)


class SSHTransport:
    """A connection to one host over SSH; see the module docstring for host keys, retries and cleanup."""

    def __init__(
        self,
        target: SSHTarget,
        *,
        upload_limiter: UploadLimiter | None = None,
        host_keys: HostKeyStore | None = None,
        via: SSHTransport | None = None,
    ) -> None:
        """``host_keys`` holds the trusted keys; it is needed unless the target's host_key_policy is ``off``.
        ``via``: the transport of the hop the host is reached through, which this one closes with itself."""
        if target.host_key_policy is not HostKeyPolicy.OFF and host_keys is None:
            raise ValueError(f"host_key_policy {target.host_key_policy.value!r} needs a host key store")
        self.target = target
        # Without a shared limiter each transport still bounds itself to PUT_PARALLEL_WRITES chunks.
        self.upload_limiter = UploadLimiter() if upload_limiter is None else upload_limiter
        self.host_keys = host_keys
        self.via = via
        self._conn: asyncssh.SSHClientConnection | None = None
        self._connect_lock = asyncio.Lock()
        self.closed = False

    async def connect(self) -> None:
        """Open the connection now rather than on first use.

        Raises HostUnreachable (refused, timed out, reset twice, lost), AuthFailed (login refused, unreadable key,
        untrusted or changed host key) or TransportError (any other SSH failure).
        """
        await self._connection()

    async def run(self, command: str, *, timeout_s: float, on_line: LineSink | None = None) -> CommandResult:
        """Run ``command`` with ``sh`` on the host, sending each output line (stderr merged) to ``on_line``.

        A non-zero exit is returned, not raised. Raises CommandTimeout after killing the command's process group
        when it runs longer than ``timeout_s`` (connecting is bounded by ``connect_timeout_s`` instead), and the
        connection errors of ``connect``. On cancellation the channel is closed, which kills the command too.
        """
        conn = await self._connection()
        tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        process: asyncssh.SSHClientProcess[bytes] | None = None

        def emit(line: str) -> None:
            tail.append(line)
            if on_line is not None:
                on_line(line)

        try:
            async with asyncio.timeout(timeout_s):
                with self._mapped_errors():
                    process = await conn.create_process(
                        f"sh -c {shlex.quote(_WRAPPER)} nodeops {shlex.quote(command)}",
                        stderr=asyncssh.STDOUT,
                        encoding=None,
                    )
                    lines = _LineSplitter()
                    while chunk := await process.stdout.read(READ_CHUNK_BYTES):
                        for line in lines.feed(chunk):
                            emit(line)
                    for line in lines.flush():
                        emit(line)
                    await process.wait_closed()
        except TimeoutError:
            if process is not None:
                await _stop(process)
            raise CommandTimeout(host=self.target.host, timeout_s=timeout_s) from None
        except BaseException:
            if process is not None:
                process.close()
            raise
        status = process.returncode
        if status is None:
            raise HostUnreachable(
                f"the connection to {self.target.address} closed before the command reported its exit status",
                host=self.target.host,
            )
        return CommandResult(exit_status=status, tail=tuple(tail))

    async def put(self, src: Path, dest: str, *, timeout_s: float) -> None:
        """Copy the local file ``src`` to ``dest`` on the host over SFTP, in chunks taken from the upload limiter.

        Raises CommandFailed when ``src`` cannot be read or ``dest`` cannot be written (its folder must exist),
        CommandTimeout when the copy takes longer than ``timeout_s`` (the partial file is left behind), and the
        connection errors of ``connect``.
        """
        conn = await self._connection()
        try:
            local = src.open("rb")
        except OSError as exc:
            raise _local_read_failed(self.target, src, exc) from exc
        sftp: asyncssh.SFTPClient | None = None
        with local:
            try:
                async with asyncio.timeout(timeout_s):
                    with self._mapped_errors():
                        sftp = await conn.start_sftp_client()
                        remote = await sftp.open(dest, "wb")
                        await self._send(src, local, remote)
                        await remote.close()
                        sftp.exit()
                        await sftp.wait_closed()
                        sftp = None
            except TimeoutError:
                raise CommandTimeout(host=self.target.host, timeout_s=timeout_s) from None
            except asyncssh.SFTPError as exc:
                raise CommandFailed(
                    host=self.target.host, exit_status=1, detail=f"copy to {dest} failed: {exc.reason}"
                ) from exc
            finally:
                if sftp is not None:
                    # Without waiting: a hung host must not stretch a timeout. sftp-server drops the open file.
                    with contextlib.suppress(OSError, asyncssh.Error):
                        sftp.exit()

    async def aclose(self) -> None:
        self.closed = True
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                conn.close()
                try:
                    async with asyncio.timeout(CLOSE_GRACE_S):
                        await conn.wait_closed()
                except TimeoutError:
                    conn.abort()  # the host stopped reading: drop the socket rather than wait for it
        finally:
            if self.via is not None:
                await self.via.aclose()

    async def _send(self, src: Path, local: BinaryIO, remote: asyncssh.SFTPClientFile) -> None:
        limiter = self.upload_limiter
        chunk_bytes = min(PUT_CHUNK_BYTES, limiter.budget_bytes)
        writes: set[asyncio.Task[None]] = set()

        async def write(chunk: bytes, offset: int) -> None:
            try:
                await remote.write(chunk, offset)
            finally:
                limiter.release(len(chunk))

        try:
            offset = 0
            while True:
                await limiter.acquire(chunk_bytes)
                try:
                    # A blocking read of one chunk: short, and cheaper than a thread hop per chunk for 500 hosts.
                    chunk = local.read(chunk_bytes)
                except BaseException as exc:
                    limiter.release(chunk_bytes)
                    if isinstance(exc, OSError):
                        raise _local_read_failed(self.target, src, exc) from exc
                    raise
                limiter.release(chunk_bytes - len(chunk))  # keep only what was read
                if not chunk:
                    break
                writes.add(asyncio.create_task(write(chunk, offset)))
                offset += len(chunk)
                del chunk
                if len(writes) >= PUT_PARALLEL_WRITES:
                    done, writes = await asyncio.wait(writes, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
            while writes:
                done, writes = await asyncio.wait(writes, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
        finally:
            for task in writes:
                task.cancel()
            if writes:
                await asyncio.wait(writes)

    async def _connection(self) -> asyncssh.SSHClientConnection:
        if self.closed:
            raise TransportError(f"the SSH transport to {self.target.address} is closed", host=self.target.host)
        async with self._connect_lock:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._open()
            return self._conn

    async def _open(self) -> asyncssh.SSHClientConnection:
        target = self.target
        client_keys: list[asyncssh.SSHKey] | None = None
        if target.private_key:
            try:
                client_keys = [asyncssh.import_private_key(target.private_key)]
            except (asyncssh.KeyImportError, ValueError) as exc:
                # The library's reason may quote the key text, so it stays out of the message.
                raise AuthFailed(
                    f"the private key for user {target.username} on {target.address} could not be read: "
                    "give an unencrypted key in OpenSSH or PEM format",
                    host=target.host,
                ) from exc
        for attempt in (1, 2):
            # the hop's connection, opened (or reopened) first; its failures name the hop
            tunnel = None if self.via is None else await self.via._connection()
            checker = _HostKeyChecker(target, self.host_keys, tunnel)
            try:
                with self._mapped_errors(connecting=checker):
                    known_hosts = await checker.known_hosts()
                    return await asyncssh.connect(
                        target.host,
                        target.port,
                        tunnel=tunnel or (),
                        username=target.username,
                        password=target.password,
                        client_keys=client_keys,
                        known_hosts=known_hosts,
                        connect_timeout=target.connect_timeout_s,
                        encryption_algs=ENCRYPTION_ALGS,
                        # Only the credentials given: no ssh-agent, ~/.ssh keys, ~/.ssh/config, Kerberos or CAs.
                        agent_path=None,
                        config=[],
                        gss_host=None,
                        x509_trusted_certs=None,
                    )
            except HostUnreachable as exc:
                # sshd resets (or closes) connections beyond its MaxStartups: worth one more try
                if attempt == 2 or not isinstance(exc.__cause__, ConnectionResetError | asyncssh.ConnectionLost):
                    raise
            await asyncio.sleep(CONNECT_RETRY_DELAY_S)
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def _mapped_errors(self, connecting: _HostKeyChecker | None = None) -> Iterator[None]:
        """Turn asyncssh and socket errors into TransportError subclasses (``connecting`` while logging in).

        A TimeoutError passes through after login: it is the caller's own deadline. SFTPError passes through
        too, for ``put`` to name the remote path.
        """
        target = self.target
        try:
            yield
        except asyncssh.PermissionDenied as exc:
            raise AuthFailed(
                f"host {target.address} refused the login for user {target.username}: check the password or key",
                host=target.host,
            ) from exc
        except asyncssh.HostKeyNotVerifiable as exc:
            raise AuthFailed(
                connecting.refusal() if connecting else f"host {target.address} showed an untrusted host key",
                host=target.host,
            ) from exc
        except asyncssh.ConnectionLost as exc:
            what = f"cannot reach {target.address}: the host closed" if connecting else f"{target.address} closed"
            raise HostUnreachable(f"{what} the connection ({exc.reason})", host=target.host) from exc
        except asyncssh.SFTPError:
            raise
        except asyncssh.ChannelOpenError as exc:
            hop = "the hop" if self.via is None else self.via.target.address
            raise HostUnreachable(
                f"cannot reach {target.address} through {hop}: {exc.reason}", host=target.host
            ) from exc
        except asyncssh.Error as exc:
            raise TransportError(f"SSH to {target.address} failed: {exc.reason}", host=target.host) from exc
        except TimeoutError as exc:
            if connecting is None:
                raise
            raise HostUnreachable(
                f"cannot reach {target.address}: no SSH login within {target.connect_timeout_s:g} s",
                host=target.host,
            ) from exc
        except ConnectionRefusedError as exc:
            raise HostUnreachable(
                f"cannot reach {target.address}: connection refused (is sshd listening on port {target.port}?)",
                host=target.host,
            ) from exc
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            what = f"cannot reach {target.address}" if connecting else f"the connection to {target.address} failed"
            raise HostUnreachable(f"{what}: {reason}", host=target.host) from exc


class _HostKeyChecker:
    """Applies ``SSHTarget.host_key_policy`` to one connection attempt, with the keys of ``store``."""

    def __init__(
        self, target: SSHTarget, store: HostKeyStore | None, tunnel: asyncssh.SSHClientConnection | None = None
    ) -> None:
        self.target = target
        self.store = store
        self.tunnel = tunnel  # the hop's connection the host is reached through, if any
        self.known = False  # the store held a key for this host before this attempt (so a mismatch is a change)

    async def known_hosts(self) -> asyncssh.SSHKnownHosts | None:
        """What asyncssh checks the host's key against (None when the policy is off). Under accept-new, a host
        the store has no key for is asked for its key first, which is recorded unless another process recorded
        one meanwhile; either way the login then checks the key the store holds."""
        target, store = self.target, self.store
        if target.host_key_policy is HostKeyPolicy.OFF or store is None:
            return None
        keys = await store.known(target.host, target.port)
        self.known = bool(keys)
        if not keys and target.host_key_policy is HostKeyPolicy.ACCEPT_NEW:
            async with asyncio.timeout(target.connect_timeout_s):
                shown = await asyncssh.get_server_host_key(
                    target.host, target.port, tunnel=self.tunnel or (), config=[]
                )
            if shown is not None:
                algorithm, blob = shown.export_public_key("openssh").decode().split()[:2]
                keys = await store.add(target.host, target.port, f"{algorithm} {blob}")
                if keys == [f"{algorithm} {blob}"]:
                    logger.info(
                        "trusted the new host key of %s (%s)",
                        target.address,
                        algorithm,
                        extra={"action": "host_key_trusted", "host": target.host},
                    )
                else:  # another process recorded another key first: the login below refuses this host's
                    self.known = True
        pattern = _host_pattern(target)
        return asyncssh.import_known_hosts("".join(f"{pattern} {key}\n" for key in keys))

    def refusal(self) -> str:
        target = self.target
        if self.known:
            return (
                f"the host key of {target.address} has changed since it was first trusted, so the login was "
                f"refused: {FORGET_KEY_HINT.format(host=target.host, port=target.port)}"
            )
        return (
            f"the host key of {target.address} is not among the trusted keys and host_key_policy is "
            f"{target.host_key_policy.value!r}: {TRUST_KEY_HINT}"
        )


def _local_read_failed(target: SSHTarget, src: Path, exc: OSError) -> CommandFailed:
    return CommandFailed(host=target.host, exit_status=1, detail=f"reading {src} failed: {exc.strerror or exc}")


def _host_pattern(target: SSHTarget) -> str:
    return target.host if target.port == DEFAULT_PORT else f"[{target.host}]:{target.port}"


class _LineSplitter:
    """Bytes in, complete lines out (without their line ending), cutting lines longer than MAX_LINE_BYTES."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[str]:
        pending = self._pending
        pending += data
        lines: list[str] = []
        start = 0
        while True:
            end = pending.find(b"\n", start, start + MAX_LINE_BYTES + 1)
            if end >= 0:
                lines.append(_decode(pending[start:end]))
                start = end + 1
            elif len(pending) - start >= MAX_LINE_BYTES:
                lines.append(_decode(pending[start : start + MAX_LINE_BYTES]))
                start += MAX_LINE_BYTES
            else:
                del pending[:start]
                return lines

    def flush(self) -> list[str]:
        rest, self._pending = bytes(self._pending), bytearray()
        return [_decode(rest)] if rest else []


def _decode(raw: bytes | bytearray) -> str:
    return raw.decode(errors="replace").rstrip("\r")


async def _stop(process: asyncssh.SSHClientProcess[bytes]) -> None:
    """Kill a timed-out command: closing our stdin wakes the wrapper's watcher, which kills the process group;
    wait a little for the host to report it, then close the channel whatever happened."""
    try:
        with contextlib.suppress(Exception):
            process.stdin.write_eof()
            async with asyncio.timeout(STOP_GRACE_S):
                await process.wait_closed()
    finally:
        process.close()
