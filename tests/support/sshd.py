"""Real sshd test hosts on loopback: ``ssh_hosts(n)`` starts (once per session) n sshd processes on 127.0.10.1,
127.0.10.2, ..., each with its own host key, config, free port and ``setup_path`` folder, all logging in the
dedicated system user ``nodeops-test`` (created if missing; root's password is never touched).

For installs without root (network spec §18) every host also lets in ``root`` (by the test user's key only:
``PermitRootLogin prohibit-password``), ``nodeops-sudo`` (NOPASSWD sudo, from /etc/sudoers.d/nodeops-sudo) and
``nodeops-nosudo`` (no sudo): ``SSHTestHost.login(account)`` gives each one's credentials. The two users are
created, their passwords set and the sudoers file written by the first session that needs them, idempotently,
as the test user's are.

The user's password is random: the first of concurrent test sessions sets it with chpasswd and writes it to a
root-only file; sessions that start while it runs (they hold a shared lock on
``/run/nodeops-test-user.lock``) read it from there.
sshd runs with ``UsePAM no``, so it checks that password against /etc/shadow; the fixture logs in once to prove it.
Without root, sshd or useradd these tests are skipped, or fail under ``CI=true``.

``SSHLab.start_in_namespace`` starts one more such host inside a network namespace of the test network
(tests/support/netns.py), on port 22 of that namespace's own addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

import pytest

from nodeops.engine.transports.ssh import HostKeyPolicy, SSHTarget, SSHTransport
from nodeops.errors import TransportError

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
TEST_USER = "nodeops-test"
SUDO_USER = "nodeops-sudo"  # may run anything with sudo, without a password
NOSUDO_USER = "nodeops-nosudo"  # may not sudo
ROOT = "root"
SUDOERS_FILE = Path(f"/etc/sudoers.d/{SUDO_USER}")
SUDOERS_LINE = f"{SUDO_USER} ALL=(ALL) NOPASSWD: ALL\n"
SUDOERS_MODE = 0o440
# Every login checks the password against its hash: yescrypt (Debian's default) takes ~20 ms of CPU a login, SHA-512
# ~1 ms, and the hosts share the machine's cores with the service under test.
CHPASSWD = ["chpasswd", "--crypt-method", "SHA512"]
PRIVSEP_DIR = Path("/run/sshd")
UNREACHABLE_IP = "127.0.10.250"  # in the test range, never given to a host
START_TIMEOUT_S = 10.0
IP = "ip"  # iproute2
NAMESPACE_SSH_PORT = 22  # each network namespace has ports of its own: the hosts there listen where sshd does


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"sshd test hosts unavailable: {reason}")
    pytest.skip(f"sshd test hosts unavailable: {reason}")


def _check(command: list[str], what: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        _unavailable(f"{what} failed ({result.returncode}): {(result.stderr or result.stdout).strip()}")
    return result


@dataclass
class LabUser:
    name: str
    password: str = field(repr=False)
    uid: int
    gid: int
    lock: IO[str]


@dataclass(frozen=True)
class AccountLogin:
    """How one account of a test host logs in: a password, or (root) the test user's key."""

    account: str
    password: str | None = field(repr=False)
    private_key: str | None = field(repr=False)


@dataclass
class SSHTestHost:
    """One sshd on ``ip:port`` logging in ``username``; ``setup_path`` is a folder the user owns."""

    ip: str
    port: int
    username: str
    password: str = field(repr=False)
    private_key: str = field(repr=False)
    setup_path: Path
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    netns: str | None = None  # the network namespace sshd runs in; None: this process's own
    passwords: dict[str, str] = field(default_factory=dict, repr=False)  # the other accounts' (sudo, no sudo)

    def login(self, account: str) -> AccountLogin:
        """``root`` (by key), the test user, ``nodeops-sudo`` or ``nodeops-nosudo`` (by password)."""
        if account == ROOT:
            return AccountLogin(account=ROOT, password=None, private_key=self.private_key)
        password = self.password if account == self.username else self.passwords[account]
        return AccountLogin(account=account, password=password, private_key=None)

    def install_spec(self, folder: str) -> dict[str, object]:
        """install_job's host for this sshd: the test user by password, into ``setup_path/folder`` it owns."""
        return {
            "bk_biz_id": 2,
            "inner_ip": self.ip,
            "port": self.port,
            "account": self.username,
            "owned_path": True,  # the test user has no sudo: it installs into its own folder
            "password": self.password,
            "setup_path": f"{self.setup_path}/{folder}",
        }

    def target(self, **changes: Any) -> SSHTarget:
        """An SSHTarget logging in with the password, host keys unchecked unless ``changes`` say otherwise."""
        values: dict[str, Any] = {
            "host": self.ip,
            "port": self.port,
            "username": self.username,
            "password": self.password,
            "host_key_policy": HostKeyPolicy.OFF,
            "connect_timeout_s": 10.0,
        }
        return SSHTarget(**(values | changes))

    @property
    def host_key_path(self) -> Path:
        return self.workdir / "ssh_host_ed25519_key"

    def new_host_key(self) -> None:
        self.host_key_path.unlink(missing_ok=True)
        self.host_key_path.with_suffix(".pub").unlink(missing_ok=True)
        _check([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key_path)], "ssh-keygen (host key)")

    def start(self) -> None:
        config = self.workdir / "sshd_config"
        log = self.log_path.open("ab")
        log_start = log.tell()
        command = [str(SSHD), "-D", "-e", "-f", str(config)]
        if self.netns is not None:
            command = [IP, "netns", "exec", self.netns, *command]  # it execs sshd: the pid stays sshd's
        self.process = subprocess.Popen(command, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._listening(log_start):
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                _unavailable(f"sshd on {self.ip}:{self.port} did not start: {self.log_tail()}")
            time.sleep(0.02)

    def _listening(self, log_start: int) -> bool:
        """Whether sshd accepts connections: connected to from here, or, in another network namespace (which this
        process cannot reach), said so in its log after ``log_start``."""
        if self.netns is not None:
            with self.log_path.open("rb") as log:
                log.seek(log_start)
                return f"Server listening on {self.ip} port {self.port}.".encode() in log.read()
        with contextlib.suppress(OSError), socket.create_connection((self.ip, self.port), timeout=0.2):
            return True
        return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart_with_new_host_key(self) -> None:
        """Stop sshd, give it a new host key, and start it again on the same address."""
        self.stop()
        self.new_host_key()
        self.start()

    @property
    def log_path(self) -> Path:
        return self.workdir / "sshd.log"

    def log_tail(self) -> str:
        path = self.log_path
        return " | ".join(path.read_text(errors="replace").splitlines()[-5:]) if path.exists() else "(no log)"


def _openssh_version() -> tuple[int, int]:
    banner = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True, check=False).stderr
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", banner)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def _free_port(ip: str) -> int:
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


def _ensure_user(name: str) -> LabUser:
    """The system user ``name``, created if missing, with a random password (SHA-512 hashed) set by the first of
    concurrent sessions and shared with the others through a root-only file."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        created = subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/sh", name], capture_output=True, text=True
        )
        try:
            pwd.getpwnam(name)  # another session may have created it at the same time
        except KeyError:
            _unavailable(f"useradd {name} failed: {created.stderr.strip()}")
    entry = pwd.getpwnam(name)

    lock = Path(f"/run/{name}-user.lock").open("a")
    password_file = Path(f"/run/{name}-user.password")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # Another session is running with the current password: share it rather than change it under its feet.
        fcntl.flock(lock, fcntl.LOCK_SH)
        password = password_file.read_text().strip()
    else:
        password = secrets.token_urlsafe(18)
        changed = subprocess.run(CHPASSWD, input=f"{name}:{password}\n", capture_output=True, text=True)
        if changed.returncode != 0:
            _unavailable(f"chpasswd for {name} failed: {changed.stderr.strip()}")
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(password)
        fcntl.flock(lock, fcntl.LOCK_SH)
    return LabUser(name=name, password=password, uid=entry.pw_uid, gid=entry.pw_gid, lock=lock)


def _ensure_sudoers() -> None:
    """``nodeops-sudo`` may sudo without a password: /etc/sudoers.d/nodeops-sudo, rewritten only if it differs."""
    if shutil.which("sudo") is None:
        _unavailable("sudo is missing: install sudo (make test does)")
    if not SUDOERS_FILE.exists() or SUDOERS_FILE.read_text() != SUDOERS_LINE:
        staged = SUDOERS_FILE.with_name(f".{SUDOERS_FILE.name}.{os.getpid()}")  # sudo skips names with a dot
        staged.write_text(SUDOERS_LINE)
        staged.chmod(SUDOERS_MODE)
        _check(["visudo", "-c", "-q", "-f", str(staged)], "visudo -c")
        staged.replace(SUDOERS_FILE)


class SSHLab:
    """The session's sshd hosts, started on demand."""

    def __init__(self) -> None:
        if os.geteuid() != 0:
            _unavailable("the tests must run as root to start sshd for another user")
        if not SSHD.exists() or shutil.which(SSH_KEYGEN) is None:
            _unavailable(f"{SSHD} or ssh-keygen is missing: install openssh-server (make test does)")
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="nodeops-sshd-", dir="/tmp"))
        self.root.chmod(0o755)  # sshd reads authorized_keys as the test user
        self.user = _ensure_user(TEST_USER)
        self.others = [_ensure_user(SUDO_USER), _ensure_user(NOSUDO_USER)]
        _ensure_sudoers()
        key_path = self.root / "client_ed25519"
        _check([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", TEST_USER, "-f", str(key_path)], "ssh-keygen")
        self.private_key = key_path.read_text()
        self.public_key = key_path.with_suffix(".pub").read_text()
        self.version = _openssh_version()
        self.hosts: list[SSHTestHost] = []
        self.namespace_hosts: list[SSHTestHost] = []

    def take(self, count: int) -> list[SSHTestHost]:
        while len(self.hosts) < count:
            number = len(self.hosts) + 1
            ip = f"127.0.10.{number}"
            self.hosts.append(self._start_host(f"host{number}", ip, _free_port(ip)))
            if len(self.hosts) == 1:
                self._prove_login(self.hosts[0])
        return self.hosts[:count]

    def start_in_namespace(self, netns: str, ip: str, *, also: tuple[str, ...] = ()) -> SSHTestHost:
        """A host of its own (sshd, host key, ``setup_path``) inside the network namespace ``netns``, on port 22 of
        ``ip`` and of the addresses ``also`` (a proxy's inner and outer address), logging in the test user.

        Its login cannot be proven from here (no route into the namespace): tests/network/test_namespaces.py
        logs in from a neighbouring namespace. ``stop_in_namespace`` (or ``close``) ends it."""
        name = f"{netns}-{ip}"
        host = self._start_host(name, ip, NAMESPACE_SSH_PORT, netns=netns, also=also)
        self.namespace_hosts.append(host)
        return host

    def stop_in_namespace(self, host: SSHTestHost) -> None:
        """Stop a host ``start_in_namespace`` started and delete its folders."""
        self.namespace_hosts.remove(host)
        self._discard(host)

    def _start_host(
        self, name: str, ip: str, port: int, *, netns: str | None = None, also: tuple[str, ...] = ()
    ) -> SSHTestHost:
        workdir = self.root / name
        workdir.mkdir(mode=0o755)
        setup_path = Path(tempfile.mkdtemp(prefix=f"nodeops-{name}-", dir="/tmp"))
        os.chown(setup_path, self.user.uid, self.user.gid)
        (workdir / "authorized_keys").write_text(self.public_key)
        (workdir / "authorized_keys").chmod(0o644)
        host = SSHTestHost(
            ip=ip,
            port=port,
            username=self.user.name,
            password=self.user.password,
            private_key=self.private_key,
            setup_path=setup_path,
            workdir=workdir,
            netns=netns,
            passwords={user.name: user.password for user in self.others},
        )
        host.new_host_key()
        lines = [
            *(f"ListenAddress {address}:{port}" for address in (ip, *also)),
            f"HostKey {host.host_key_path}",
            f"PidFile {workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
            f"AllowUsers {' '.join([self.user.name, *(user.name for user in self.others), ROOT])}",
            "PasswordAuthentication yes",
            "PubkeyAuthentication yes",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "Subsystem sftp internal-sftp",
            "MaxStartups 200",
            "MaxSessions 100",
            "LogLevel INFO",
        ]
        if self.version >= (9, 8):
            lines.append("PerSourcePenalties no")  # wrong-password tests must not lock out 127.0.0.0/8
        (workdir / "sshd_config").write_text("\n".join(lines) + "\n")
        _check([str(SSHD), "-t", "-f", str(workdir / "sshd_config")], f"sshd -t for {name}")
        host.start()
        return host

    @staticmethod
    def _discard(host: SSHTestHost) -> None:
        host.stop()
        shutil.rmtree(host.setup_path, ignore_errors=True)
        shutil.rmtree(host.workdir, ignore_errors=True)

    def _prove_login(self, host: SSHTestHost) -> None:
        async def login() -> int:
            transport = SSHTransport(host.target())
            try:
                return (await transport.run("true", timeout_s=10)).exit_status
            finally:
                await transport.aclose()

        try:
            # In a thread of its own: take() may be called from a test's running event loop.
            with ThreadPoolExecutor(max_workers=1) as pool:
                status = pool.submit(asyncio.run, login()).result()
        except TransportError as exc:
            _unavailable(
                f"{TEST_USER} cannot log in to {host.ip}:{host.port} with its password ({exc}); "
                f"sshd says: {host.log_tail()}"
            )
        if status != 0:
            _unavailable(f"`true` exited {status} on {host.ip}:{host.port}")

    def close(self) -> None:
        for host in [*self.hosts, *self.namespace_hosts]:
            self._discard(host)
        shutil.rmtree(self.root, ignore_errors=True)
        for user in [self.user, *self.others]:
            user.lock.close()


@pytest.fixture(scope="session")
def ssh_lab() -> Iterator[SSHLab]:
    lab = SSHLab()
    yield lab
    lab.close()


@pytest.fixture(scope="session")
def ssh_hosts(ssh_lab: SSHLab) -> Callable[[int], list[SSHTestHost]]:
    """``ssh_hosts(n)``: the first n sshd test hosts (127.0.10.1 ... 127.0.10.n), started on first request."""
    return ssh_lab.take
