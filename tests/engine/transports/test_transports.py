"""Transports against real hosts: every ``backend`` test runs on ``LocalTransport`` and on ``SSHTransport`` to a
real sshd on loopback; the rest cover what only SSH has (logins, host keys, unreachable hosts, the upload budget).

"Is the command gone?" is answered by scanning /proc for a token in its command line: the sshd test hosts run on
this machine, so their processes are visible here.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodeops.engine.transports.base import OUTPUT_TAIL_LINES, Transport
from nodeops.engine.transports.local import LocalTransport
from nodeops.engine.transports.ssh import HostKeyPolicy, SSHTarget, SSHTransport, UploadLimiter
from nodeops.errors import AuthFailed, CommandFailed, CommandTimeout, HostUnreachable
from nodeops.store.db import Database
from nodeops.store.host_keys import HostKeyTable
from tests.support.sshd import TEST_USER, UNREACHABLE_IP, SSHTestHost

RESETTING_IP = "127.0.10.251"  # a fake server that resets every connection

SSHHosts = Callable[[int], list[SSHTestHost]]


@dataclass
class Backend:
    name: str
    transport: Transport
    workdir: str  # an empty folder the transport's user may write, as the host sees it


@pytest.fixture(params=["local", "ssh"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    transport: Transport
    if request.param == "local":
        transport, workdir = LocalTransport(), str(tmp_path / "work")
    else:
        host: SSHTestHost = request.getfixturevalue("ssh_hosts")(1)[0]
        transport, workdir = SSHTransport(host.target()), f"{host.setup_path}/{secrets.token_hex(6)}"
    result = await transport.run(f"mkdir {workdir}", timeout_s=10)
    assert result.ok, result.tail
    yield Backend(name=request.param, transport=transport, workdir=workdir)
    await transport.aclose()


def _commands_with(token: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if token in cmdline:
                found.append(cmdline)
    return found


async def _assert_gone(token: str, *, within_s: float = 1.0) -> None:
    deadline = time.monotonic() + within_s
    while found := _commands_with(token):
        assert time.monotonic() < deadline, f"still running: {found}"
        await asyncio.sleep(0.05)


async def _sha256_on_host(transport: Transport, path: str) -> str:
    result = await transport.run(f"sha256sum {path}", timeout_s=10)
    assert result.ok, result.tail
    return result.tail[-1].split()[0]


def _random_file(path: Path, size_bytes: int) -> str:
    data = os.urandom(size_bytes)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


# -- both transports ----------------------------------------------------------------------------------------------


async def test_run_streams_each_line_in_order_as_it_is_printed(backend: Backend) -> None:
    arrivals: list[tuple[str, float]] = []
    result = await backend.transport.run(
        "echo first; echo 'second line'; sleep 0.6; printf 'third\\nno newline at end'",
        timeout_s=10,
        on_line=lambda line: arrivals.append((line, time.monotonic())),
    )
    assert [line for line, _ in arrivals] == ["first", "second line", "third", "no newline at end"]
    assert arrivals[2][1] - arrivals[1][1] > 0.4, "the first lines came only when the command ended"
    assert result.exit_status == 0
    assert result.tail == ("first", "second line", "third", "no newline at end")


async def test_run_reports_a_non_zero_exit_status_without_raising(backend: Backend) -> None:
    result = await backend.transport.run("echo before; exit 3", timeout_s=10)
    assert (result.exit_status, result.ok, result.tail) == (3, False, ("before",))


async def test_run_merges_stderr_into_the_output_in_order(backend: Backend) -> None:
    lines: list[str] = []
    result = await backend.transport.run(
        "echo out1; echo err1 >&2; echo out2; ls /no/such/path", timeout_s=10, on_line=lines.append
    )
    assert lines[:3] == ["out1", "err1", "out2"]
    assert "/no/such/path" in lines[3]
    assert result.exit_status != 0


async def test_run_keeps_only_the_last_lines_in_the_tail(backend: Backend) -> None:
    lines: list[str] = []
    result = await backend.transport.run("seq 1 50", timeout_s=10, on_line=lines.append)
    assert lines == [str(n) for n in range(1, 51)]
    assert result.tail == tuple(str(n) for n in range(51 - OUTPUT_TAIL_LINES, 51))


async def test_run_past_its_timeout_kills_the_command_and_raises(backend: Backend) -> None:
    token = f"2.{secrets.randbelow(10**6):06d}"  # the sleep's own command line, to find it in /proc
    marker = f"{backend.workdir}/marker"
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as caught:
        await backend.transport.run(f"echo started; sleep {token}; touch {marker}", timeout_s=0.5)
    assert time.monotonic() - started < 3
    assert caught.value.timeout_s == 0.5
    await _assert_gone(f"sleep {token}")
    await asyncio.sleep(max(0.0, started + 2.5 - time.monotonic()))  # past the moment the marker would appear
    assert (await backend.transport.run(f"test -e {marker}", timeout_s=10)).exit_status == 1
    assert (await backend.transport.run("echo still usable", timeout_s=10)).tail == ("still usable",)


async def test_cancelled_run_kills_the_command_and_reraises(backend: Backend) -> None:
    token = f"2.{secrets.randbelow(10**6):06d}"
    started = asyncio.Event()
    task = asyncio.create_task(
        backend.transport.run(f"echo started; sleep {token}", timeout_s=10, on_line=lambda _: started.set())
    )
    await asyncio.wait_for(started.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _assert_gone(f"sleep {token}")


async def test_put_copies_a_5_mb_file_byte_for_byte(backend: Backend, tmp_path: Path) -> None:
    digest = _random_file(tmp_path / "package.bin", 5 * 1024 * 1024 + 123)
    dest = f"{backend.workdir}/package.bin"
    await backend.transport.put(tmp_path / "package.bin", dest, timeout_s=10)
    assert await _sha256_on_host(backend.transport, dest) == digest


async def test_put_replaces_an_existing_file(backend: Backend, tmp_path: Path) -> None:
    dest = f"{backend.workdir}/config.txt"
    await backend.transport.run(f"seq 1 10000 > {dest}", timeout_s=10)
    (tmp_path / "config.txt").write_text("short\n")
    await backend.transport.put(tmp_path / "config.txt", dest, timeout_s=10)
    assert (await backend.transport.run(f"cat {dest}", timeout_s=10)).tail == ("short",)


async def test_put_into_a_missing_folder_raises_command_failed(backend: Backend, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    dest = f"{backend.workdir}/missing/a.txt"
    with pytest.raises(CommandFailed, match=r"missing/a\.txt"):
        await backend.transport.put(tmp_path / "a.txt", dest, timeout_s=10)


async def test_put_of_a_missing_local_file_raises_command_failed(backend: Backend, tmp_path: Path) -> None:
    with pytest.raises(CommandFailed):
        await backend.transport.put(tmp_path / "absent.bin", f"{backend.workdir}/absent.bin", timeout_s=10)


async def test_aclose_twice_is_harmless(backend: Backend) -> None:
    await backend.transport.aclose()
    await backend.transport.aclose()


# -- SSH only -----------------------------------------------------------------------------------------------------


@pytest.fixture
def ssh_host(ssh_hosts: SSHHosts) -> SSHTestHost:
    return ssh_hosts(1)[0]


async def _run_once(
    target: SSHTarget, command: str = "true", *, host_keys: HostKeyTable | None = None
) -> tuple[int, tuple[str, ...]]:
    transport = SSHTransport(target, host_keys=host_keys)
    try:
        result = await transport.run(command, timeout_s=10)
        return result.exit_status, result.tail
    finally:
        await transport.aclose()


def test_target_repr_hides_the_password_and_key(ssh_host: SSHTestHost) -> None:
    target = ssh_host.target(private_key=ssh_host.private_key)
    assert ssh_host.password not in repr(target)
    assert "PRIVATE KEY" not in repr(target)


async def test_wrong_password_raises_auth_failed_without_the_password(ssh_host: SSHTestHost) -> None:
    wrong = f"wrong-{secrets.token_hex(8)}"
    with pytest.raises(AuthFailed) as caught:
        await _run_once(ssh_host.target(password=wrong))
    message = str(caught.value)
    assert f"{ssh_host.ip}:{ssh_host.port}" in message
    assert TEST_USER in message
    assert wrong not in message and wrong not in repr(caught.value)
    assert caught.value.host == ssh_host.ip


async def test_private_key_login_works_without_a_password(ssh_host: SSHTestHost) -> None:
    target = ssh_host.target(password=None, private_key=ssh_host.private_key)
    assert await _run_once(target, "id -un") == (0, (TEST_USER,))


async def test_unreadable_private_key_raises_auth_failed_without_the_key(ssh_host: SSHTestHost) -> None:
    junk = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END OPENSSH PRIVATE KEY-----\n"
    with pytest.raises(AuthFailed) as caught:
        await _run_once(ssh_host.target(password=None, private_key=junk))
    assert "c2VjcmV0" not in str(caught.value)


async def test_address_with_nothing_listening_raises_host_unreachable_quickly(ssh_host: SSHTestHost) -> None:
    target = SSHTarget(
        host=UNREACHABLE_IP, port=ssh_host.port, username=TEST_USER, password="x", host_key_policy=HostKeyPolicy.OFF
    )
    started = time.monotonic()
    with pytest.raises(HostUnreachable, match=f"{UNREACHABLE_IP}:{ssh_host.port}"):
        await SSHTransport(target).connect()
    assert time.monotonic() - started < 2


async def test_connection_reset_is_retried_once_then_reported_unreachable() -> None:
    attempts = 0

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        linger_0 = struct.pack("ii", 1, 0)  # so that closing sends RST, as an overloaded sshd does
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_0)
        writer.transport.abort()

    server = await asyncio.start_server(on_connect, RESETTING_IP, 0)
    port = server.sockets[0].getsockname()[1]
    target = SSHTarget(host=RESETTING_IP, port=port, username=TEST_USER, host_key_policy=HostKeyPolicy.OFF)
    try:
        with pytest.raises(HostUnreachable, match=f"{RESETTING_IP}:{port}") as caught:
            await SSHTransport(target).connect()
        assert isinstance(caught.value.__cause__, ConnectionResetError), caught.value
    finally:
        server.close()
        await server.wait_closed()
    assert attempts == 2


async def test_put_past_its_timeout_raises_and_leaves_the_budget_whole(ssh_host: SSHTestHost, tmp_path: Path) -> None:
    (tmp_path / "pkg.bin").write_bytes(b"x" * 100_000)
    limiter = UploadLimiter(budget_bytes=64 * 1024)
    transport = SSHTransport(ssh_host.target(), upload_limiter=limiter)
    dest = f"{ssh_host.setup_path}/slow-{secrets.token_hex(4)}.bin"
    try:
        await limiter.acquire(limiter.budget_bytes)  # another upload holds the whole budget
        with pytest.raises(CommandTimeout):
            await transport.put(tmp_path / "pkg.bin", dest, timeout_s=0.3)
        limiter.release(limiter.budget_bytes)
        assert limiter.in_flight_bytes == 0
        await transport.put(tmp_path / "pkg.bin", dest, timeout_s=10)
        assert (await transport.run(f"wc -c < {dest}", timeout_s=10)).tail == ("100000",)
    finally:
        await transport.aclose()


def _trusted(db: Database, host: SSHTestHost) -> list[tuple[str, str]]:
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT algorithm, key FROM host_keys WHERE host = '{host.ip}' AND port = {host.port}"
        ).all()
    return [(row[0], row[1]) for row in rows]


def _shown_key(host: SSHTestHost) -> tuple[str, str]:
    algorithm, key = host.host_key_path.with_suffix(".pub").read_text().split()[:2]
    return algorithm, key


async def test_accept_new_trusts_the_first_key_and_refuses_a_changed_one(
    ssh_hosts: SSHHosts, database_url: str
) -> None:
    host: SSHTestHost = ssh_hosts(3)[2]
    db = Database.connect(database_url)
    try:
        target = host.target(host_key_policy=HostKeyPolicy.ACCEPT_NEW)
        assert await _run_once(target, "echo hi", host_keys=HostKeyTable(db)) == (0, ("hi",))
        recorded = _trusted(db, host)
        assert recorded == [_shown_key(host)]
        assert await _run_once(target, host_keys=HostKeyTable(db)) == (0, ())
        assert _trusted(db, host) == recorded, "a known key must not be recorded twice"

        host.restart_with_new_host_key()
        with pytest.raises(AuthFailed, match="has changed") as caught:
            await _run_once(target, host_keys=HostKeyTable(db))
        message = str(caught.value)
        assert f"{host.ip}:{host.port}" in message
        assert f"nodeops hosts forget-key {host.ip} --port {host.port}" in message
        assert _trusted(db, host) == recorded
    finally:
        db.dispose()


async def test_two_processes_recording_a_new_host_at_once_keep_one_key(ssh_hosts: SSHHosts, database_url: str) -> None:
    """Two processes (two connection pools on one database) record different keys for one new host at once: one
    key is kept and both are told which."""
    hosts = ssh_hosts(3)
    first, second = Database.connect(database_url), Database.connect(database_url)
    try:
        keys = [" ".join(_shown_key(hosts[0])), " ".join(_shown_key(hosts[1]))]
        results = await asyncio.gather(
            HostKeyTable(first).add(hosts[2].ip, hosts[2].port, keys[0]),
            HostKeyTable(second).add(hosts[2].ip, hosts[2].port, keys[1]),
        )
        assert results[0] == results[1] and results[0][0] in keys, results
        assert [" ".join(row) for row in _trusted(first, hosts[2])] == results[0]
    finally:
        first.dispose()
        second.dispose()


class _OvertakenTable(HostKeyTable):
    """The host key table as a process sees it when another process records a key for the same new host between
    this one's read (no key yet) and its own write."""

    def __init__(self, db: Database, other_key: str) -> None:
        super().__init__(db)
        self.other_key = other_key

    async def known(self, host: str, port: int) -> list[str]:
        found = await super().known(host, port)
        await HostKeyTable(self.db).add(host, port, self.other_key)
        return found


async def test_a_process_whose_new_key_lost_the_race_refuses_the_host(ssh_hosts: SSHHosts, database_url: str) -> None:
    other, host = ssh_hosts(2)
    db = Database.connect(database_url)
    try:
        other_key = " ".join(_shown_key(other))
        target = host.target(host_key_policy=HostKeyPolicy.ACCEPT_NEW)
        with pytest.raises(AuthFailed, match="has changed"):
            await _run_once(target, host_keys=_OvertakenTable(db, other_key))
        assert _trusted(db, host) == [tuple(other_key.split())], "the first key recorded stays"
    finally:
        db.dispose()


async def test_strict_policy_accepts_only_keys_already_trusted(ssh_host: SSHTestHost, database_url: str) -> None:
    db = Database.connect(database_url)
    try:
        target = ssh_host.target(host_key_policy=HostKeyPolicy.STRICT)
        with pytest.raises(AuthFailed, match="is not among the trusted keys") as caught:
            await _run_once(target, host_keys=HostKeyTable(db))
        assert "known_hosts" in str(caught.value)
        assert _trusted(db, ssh_host) == [], "strict never records a key"

        await HostKeyTable(db).add(ssh_host.ip, ssh_host.port, " ".join(_shown_key(ssh_host)))
        assert await _run_once(target, host_keys=HostKeyTable(db)) == (0, ())
    finally:
        db.dispose()


def test_a_checking_policy_needs_a_host_key_store(ssh_host: SSHTestHost) -> None:
    with pytest.raises(ValueError, match="needs a host key store"):
        SSHTransport(ssh_host.target(host_key_policy=HostKeyPolicy.ACCEPT_NEW))


async def test_long_lines_are_cut_instead_of_buffered_whole(ssh_host: SSHTestHost) -> None:
    lines: list[str] = []
    transport = SSHTransport(ssh_host.target())
    try:
        await transport.run("head -c 200000 /dev/zero | tr '\\0' x; echo; echo end", timeout_s=10, on_line=lines.append)
    finally:
        await transport.aclose()
    assert lines[-1] == "end"
    assert "".join(lines[:-1]) == "x" * 200000
    assert max(len(line) for line in lines) <= 64 * 1024


async def test_three_hosts_run_and_upload_at_once_within_the_upload_budget(ssh_hosts: SSHHosts, tmp_path: Path) -> None:
    hosts: list[SSHTestHost] = ssh_hosts(3)
    digest = _random_file(tmp_path / "agent.tgz", 1024 * 1024)
    limiter = UploadLimiter(budget_bytes=128 * 1024)
    transports = [SSHTransport(host.target(), upload_limiter=limiter) for host in hosts]

    async def deploy(host: SSHTestHost, transport: SSHTransport) -> list[str]:
        lines: list[str] = []
        await asyncio.gather(
            *(transport.put(tmp_path / "agent.tgz", f"{host.setup_path}/agent-{n}.tgz", timeout_s=10) for n in (1, 2))
        )
        await transport.run(
            f"echo {host.ip}; sha256sum {host.setup_path}/agent-*.tgz", timeout_s=10, on_line=lines.append
        )
        return lines

    try:
        outputs = await asyncio.gather(*(deploy(h, t) for h, t in zip(hosts, transports, strict=True)))
    finally:
        await asyncio.gather(*(t.aclose() for t in transports))
    for host, lines in zip(hosts, outputs, strict=True):
        assert lines[0] == host.ip
        assert [line.split()[0] for line in lines[1:]] == [digest, digest]
    assert 0 < limiter.peak_in_flight_bytes <= limiter.budget_bytes
    assert limiter.in_flight_bytes == 0


async def test_upload_limiter_serves_waiters_first_come_and_takes_back_cancelled_ones() -> None:
    limiter = UploadLimiter(budget_bytes=100)
    await limiter.acquire(60)
    big = asyncio.create_task(limiter.acquire(80))
    small = asyncio.create_task(limiter.acquire(30))
    await asyncio.sleep(0)
    assert not big.done() and not small.done(), "the small one must queue behind the big one"

    limiter.release(60)
    await asyncio.sleep(0)
    assert big.done() and not small.done()
    assert limiter.in_flight_bytes == 80

    small.cancel()
    with pytest.raises(asyncio.CancelledError):
        await small
    limiter.release(80)
    assert limiter.in_flight_bytes == 0
    await limiter.acquire(100)
    assert limiter.in_flight_bytes == 100
    limiter.release(100)
    assert limiter.peak_in_flight_bytes == 100
    with pytest.raises(ValueError):
        await limiter.acquire(101)
