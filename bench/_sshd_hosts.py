"""Many loopback SSH hosts for ``bench/fanout.py``: sshd processes on 127.0.11.1, 127.0.11.2, ..., logging in the
system user ``nodeops-test`` with its password, each host with its own ``setup_path`` owned by that user.

It follows ``tests/support/sshd.py`` (same user, same password protocol, same sshd settings) without
importing it, since that module needs pytest. Differences, for hundreds of hosts:

- one sshd serves ``per_sshd`` addresses (one ``ListenAddress`` line each, all on the same port) instead of one sshd
  per address: at most 16, sshd's MAX_LISTEN_SOCKS, so 500 hosts are 32 sshd listeners, not 500;
- addresses are 127.0.11.1-250, then 127.0.12.1-250, ... (the tests use 127.0.10.x);
- password logins only (no key), ``MaxStartups`` high enough that 100 logins at once are never dropped;
- sshd does not re-execute itself for each connection (``-r``, before OpenSSH 9.8): the hosts share the machine's
  cores with the service under test, and their CPU is not what the benchmarks measure.

The password protocol is the tests' own: whoever gets ``USER_LOCK`` exclusively sets a new random password with
chpasswd and writes it to a root-only file; while anyone holds the lock shared (a test session, this bench), later
comers read the password from that file instead of changing it. Everything this module starts is stopped by pid;
agents (daemons that outlive their SSH session) are found by their ``--home`` under this run's own temp folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
TEST_USER = "nodeops-test"
USER_LOCK = Path("/run/nodeops-test-user.lock")
USER_PASSWORD_FILE = Path("/run/nodeops-test-user.password")
# Every login checks the password against its hash: yescrypt (Debian's default) takes ~20 ms of CPU a login, SHA-512
# ~1 ms, and the hosts share the machine's cores with the service under test.
CHPASSWD = ["chpasswd", "--crypt-method", "SHA512"]
PRIVSEP_DIR = Path("/run/sshd")
FIRST_OCTET3 = 11  # 127.0.11.x, 127.0.12.x, ...: clear of the tests' 127.0.10.x
ADDRESSES_PER_OCTET = 250
START_TIMEOUT_S = 15.0
CPUACCT_ROOT = Path("/sys/fs/cgroup/cpuacct")  # cgroup v1; every host process is put in a group of this run
MAX_LISTEN_SOCKS = 16  # sshd refuses more ListenAddress sockets ("Too many listen sockets")


class LabError(RuntimeError):
    """The hosts cannot be set up; the message says why."""


@dataclass(frozen=True, slots=True)
class Host:
    index: int
    ip: str
    port: int
    setup_path: str


@dataclass
class LabUser:
    name: str
    password: str = field(repr=False)
    uid: int
    gid: int
    lock: IO[str] = field(repr=False)


def _run(command: list[str], what: str, stdin: str | None = None) -> str:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LabError(f"{what} failed ({result.returncode}): {(result.stderr or result.stdout).strip()}")
    return result.stdout


def ensure_user() -> LabUser:
    """The test user (created if missing) and its password, with the shared lock held until ``close``."""
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", TEST_USER], capture_output=True, check=False)
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        raise LabError(f"user {TEST_USER} does not exist and useradd could not create it") from None
    lock = USER_LOCK.open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fcntl.flock(lock, fcntl.LOCK_SH)  # a test session is using the current password: share it
        password = USER_PASSWORD_FILE.read_text().strip()
    else:
        password = secrets.token_urlsafe(18)
        _run(CHPASSWD, f"chpasswd for {TEST_USER}", stdin=f"{TEST_USER}:{password}\n")
        fd = os.open(USER_PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(password)
        fcntl.flock(lock, fcntl.LOCK_SH)
    return LabUser(name=TEST_USER, password=password, uid=entry.pw_uid, gid=entry.pw_gid, lock=lock)


def openssh_version() -> tuple[int, int]:
    banner = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True, check=False).stderr
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", banner)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def address(index: int) -> str:
    """The loopback address of host ``index`` (0-based)."""
    return f"127.0.{FIRST_OCTET3 + index // ADDRESSES_PER_OCTET}.{index % ADDRESSES_PER_OCTET + 1}"


def free_port() -> int:
    """A port free on 127.0.0.1 and on the fleet's first address, so each sshd can listen on it on its own loopback
    addresses (a listener on a wildcard address would hold both). Only loopback addresses are bound."""
    for _ in range(50):
        with socket.socket() as sock, socket.socket() as probe:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            try:
                probe.bind((address(0), port))
            except OSError:
                continue
            return port
    raise LabError("no port is free on the loopback addresses")


class SSHDFleet:
    """``count`` hosts over ``ceil(count / per_sshd)`` sshd processes, under ``root`` (a folder of this run)."""

    def __init__(self, root: Path, user: LabUser, *, per_sshd: int = MAX_LISTEN_SOCKS) -> None:
        if os.geteuid() != 0:
            raise LabError("run as root: sshd must start for another user")
        if not SSHD.exists() or shutil.which(SSH_KEYGEN) is None:
            raise LabError(f"{SSHD} or ssh-keygen is missing (bash scripts/ensure-apt.sh openssh-server)")
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        self.root = root
        self.user = user
        self.per_sshd = min(per_sshd, MAX_LISTEN_SOCKS)
        self.hosts_root = root / "hosts"  # every agent's --home is under here: how leftovers are found
        self.sshd_root = root / "sshd"
        for folder in (root, self.hosts_root, self.sshd_root):
            folder.mkdir(mode=0o755, exist_ok=True)
            folder.chmod(0o755)
        self.port = free_port()
        self.cgroup = _make_cgroup(root.parent.name)
        self.hosts: list[Host] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self._version = openssh_version()
        # Before 9.8 sshd re-executes itself for every connection (loading its binary, config and keys again: ~6 ms
        # of the hosts' CPU a login); -r serves the connection from the listener's fork. 9.8 moved sessions to
        # sshd-session, which is always executed.
        self._no_reexec = ["-r"] if self._version < (9, 8) else []

    def start(self, count: int) -> list[Host]:
        """Start sshd processes until ``count`` hosts listen; returns the first ``count``."""
        while len(self.hosts) < count:
            first = len(self.hosts)
            group = [self._new_host(i) for i in range(first, min(count, first + self.per_sshd))]
            self._start_sshd(len(self.processes), group)
            self.hosts.extend(group)
        return self.hosts[:count]

    def _new_host(self, index: int) -> Host:
        home = self.hosts_root / f"h{index + 1}"
        home.mkdir(mode=0o755)
        os.chown(home, self.user.uid, self.user.gid)
        return Host(index=index, ip=address(index), port=self.port, setup_path=str(home))

    def _start_sshd(self, number: int, group: list[Host]) -> None:
        workdir = self.sshd_root / f"sshd{number + 1}"
        workdir.mkdir(mode=0o755)
        key = workdir / "ssh_host_ed25519_key"
        _run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], "ssh-keygen (host key)")
        lines = [f"ListenAddress {host.ip}:{host.port}" for host in group] + [
            f"HostKey {key}",
            f"PidFile {workdir / 'sshd.pid'}",
            "AuthorizedKeysFile none",
            f"AllowUsers {self.user.name}",
            "PasswordAuthentication yes",
            "PubkeyAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "Subsystem sftp internal-sftp",
            "MaxStartups 1000",  # the default 10:30:100 drops logins at random beyond 10 at once
            "MaxSessions 100",
            "LogLevel ERROR",
        ]
        if self._version >= (9, 8):
            lines.append("PerSourcePenalties no")
        config = workdir / "sshd_config"
        config.write_text("\n".join(lines) + "\n")
        _run([str(SSHD), "-t", "-f", str(config)], f"sshd -t ({config})")
        log_path = workdir / "sshd.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [str(SSHD), "-D", "-e", *self._no_reexec, "-f", str(config)],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.processes.append(process)
        self.logs.append(log_path)
        if self.cgroup is not None:  # before any login: sessions, commands and agents inherit the group
            (self.cgroup / "cgroup.procs").write_text(str(process.pid))
        deadline = time.monotonic() + START_TIMEOUT_S
        for host in group:
            while True:
                with contextlib.suppress(OSError), socket.create_connection((host.ip, host.port), timeout=0.5):
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = " | ".join(log_path.read_text(errors="replace").splitlines()[-5:])
                    raise LabError(f"sshd for {host.ip}:{host.port} did not start: {tail or '(no log)'}")
                time.sleep(0.02)

    def log_tail(self, lines: int = 5) -> str:
        text: list[str] = []
        for path in self.logs:
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace").splitlines()[-lines:]
        return " | ".join(text[-lines:]) or "(sshd logged nothing)"

    @property
    def cpu_usage_path(self) -> str | None:
        """``cpuacct.usage`` (ns) of every process of the hosts' side, or None without a cgroup."""
        return str(self.cgroup / "cpuacct.usage") if self.cgroup is not None else None

    def leftover_pids(self) -> list[int]:
        """Processes (agents above all, or a command still running) whose command line names a host folder,
        and whatever else is still in the hosts' cgroup once the sshd listeners are gone."""
        marker = str(self.hosts_root).encode() + b"/"
        listeners = {p.pid for p in self.processes}
        pids = []
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                found = (int(p) for p in (self.cgroup / "cgroup.procs").read_text().split())
                pids = [pid for pid in found if pid not in listeners and pid != os.getpid()]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline and int(entry.name) not in pids:
                pids.append(int(entry.name))
        return pids

    def stop_agents(self, timeout_s: float = 10.0) -> int:
        """SIGTERM every agent of this run (SIGKILL after ``timeout_s``); returns how many there were."""
        pids = self.leftover_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        alive = pids
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [pid for pid in alive if _alive(pid)]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def reset(self, hosts: list[Host]) -> None:
        """Stop every agent and empty the hosts' setup paths (the folders stay, owned by the user)."""
        self.stop_agents()
        for host in hosts:
            for child in Path(host.setup_path).iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop agents and sshd processes; the caller removes ``root``."""
        self.stop_agents()
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        self.stop_agents(timeout_s=2.0)  # a command that was still running in a session sshd just dropped
        if self.cgroup is not None:
            for _ in range(50):  # an exiting process leaves the group a moment after it is reaped
                try:
                    self.cgroup.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
            self.cgroup = None


def _make_cgroup(name: str) -> Path | None:
    """A cpuacct cgroup for the hosts' processes, or None where cgroup v1 cpuacct cannot be written."""
    path = CPUACCT_ROOT / name
    try:
        path.mkdir()
    except OSError:
        return None
    return path


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
