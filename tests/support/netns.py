"""The test network: five network namespaces on one machine, so a test proves that hosts the service cannot reach
are installed through a proxy or a jump host (README.md, "Development")::

    srv 198.18.0.1 ──── 198.18.0.2 px 198.18.1.1 ──── c1 198.18.1.11, 198.18.1.12
    srv 198.18.2.1 ──── 198.18.2.2 jh 198.18.3.1 ──── c2 198.18.3.11

``srv`` runs the service under test (tests/support/netns_service.py), ``px`` a cloud area's proxy in front of
area c1, ``jh`` an install channel's jump server in front of c2. Each link is a veth pair whose ends are made
directly inside their namespaces (named ``to-<peer>``), so nothing is added to the machine's own namespace. No
namespace has a default route and px and jh do not forward, so srv reaches neither c1 nor c2, and c1 and c2 reach
nothing beyond their neighbour; every address exists only inside these namespaces.

Namespaces are named ``nodeops-<pid>-<tag>-<role>``: a run removes what it made, also when a test failed, and
removes what an earlier run (whose pid is gone) left behind. Making them needs root and iproute2 with netns
support; without either, the tests that use them are skipped, saying why.

The session fixture ``network`` (imported by tests/conftest.py) yields a ``Network`` with an sshd test host (the
test user and password of tests/support/sshd.py, port 22) on px, c1_a, c1_b, jh and c2_a::

    def test_example(network: Network) -> None:
        host = network.hosts["c1_a"]                      # an SSHTestHost: host.target(), host.password, ...
        assert network.tcp_connect("srv", host.ip, host.port) == errno.ENETUNREACH
        assert network.ssh_run("px", host, "id -un").stdout.strip() == host.username
        network.run("px", ["python3", "-c", "print(1)"], check=True)
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import pytest

from tests.support.jobs import AGENT
from tests.support.sshd import IP, SSHLab, SSHTestHost

PREFIX = "nodeops"
ROLES = ("srv", "px", "c1", "jh", "c2")
FORWARDING_OFF = ("px", "jh")  # a proxy and a jump server relay by program, never by routing
NAME_PATTERN = re.compile(rf"^{PREFIX}-(?P<pid>\d+)-[0-9a-f]+-(?P<role>{'|'.join(ROLES)})$")
RUN_TIMEOUT_S = 60.0
KILL_GRACE_S = 5.0
CONNECT_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Addresses:
    """The addresses of the test network, named ``<namespace>_<peer>`` on a link, ``<area>_<host>`` for hosts."""

    srv_px: str = "198.18.0.1"  # the service, as px (and area c1's agents, through px's relay) reach it
    px_srv: str = "198.18.0.2"  # the proxy's outer address
    px_c1: str = "198.18.1.1"  # the proxy's inner address, the only one c1 reaches
    c1_a: str = "198.18.1.11"
    c1_b: str = "198.18.1.12"
    srv_jh: str = "198.18.2.1"  # the service, as jh reaches it
    jh_srv: str = "198.18.2.2"  # the jump server's outer address
    jh_c2: str = "198.18.3.1"  # the jump server's inner address, the only one c2 reaches
    c2_a: str = "198.18.3.11"


ADDRESSES = Addresses()


@dataclass(frozen=True)
class Link:
    """A veth pair between namespaces ``a`` and ``b`` with the addresses each end holds."""

    a: str
    a_addresses: tuple[str, ...]
    b: str
    b_addresses: tuple[str, ...]


LINKS = (
    Link("srv", (ADDRESSES.srv_px,), "px", (ADDRESSES.px_srv,)),
    Link("px", (ADDRESSES.px_c1,), "c1", (ADDRESSES.c1_a, ADDRESSES.c1_b)),
    Link("srv", (ADDRESSES.srv_jh,), "jh", (ADDRESSES.jh_srv,)),
    Link("jh", (ADDRESSES.jh_c2,), "c2", (ADDRESSES.c2_a,)),
)
# The sshd test hosts of the network: name -> (namespace, address, further addresses it listens on).
HOSTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "px": ("px", ADDRESSES.px_srv, (ADDRESSES.px_c1,)),
    "c1_a": ("c1", ADDRESSES.c1_a, ()),
    "c1_b": ("c1", ADDRESSES.c1_b, ()),
    "jh": ("jh", ADDRESSES.jh_srv, (ADDRESSES.jh_c2,)),
    "c2_a": ("c2", ADDRESSES.c2_a, ()),
}
# srv must not reach the areas behind the proxy and the jump server.
UNREACHABLE_FROM_SRV = ("198.18.1.0/24", "198.18.3.0/24")

# Run inside a namespace: connect to argv[1]:argv[2] within argv[3] seconds; print 0 or the errno (-1: timed out),
# and the seconds the attempt took.
CONNECT_PROBE = """
import socket, sys, time
sock = socket.socket()
sock.settimeout(float(sys.argv[3]))
started = time.monotonic()
try:
    sock.connect((sys.argv[1], int(sys.argv[2])))
except socket.timeout:
    code = -1
except OSError as exc:
    code = exc.errno
else:
    code = 0
print(code, time.monotonic() - started)
"""
# Run inside a namespace: log in with the password read from stdin (never in argv) and run argv[4].
SSH_PROBE = """
import asyncio, sys
from nodeops.engine.transports.ssh import HostKeyPolicy, SSHTarget, SSHTransport

async def main() -> int:
    host, port, username, command = sys.argv[1:5]
    target = SSHTarget(host=host, port=int(port), username=username, password=sys.stdin.read(),
                       host_key_policy=HostKeyPolicy.OFF, connect_timeout_s=10.0)
    transport = SSHTransport(target)
    try:
        result = await transport.run(command, timeout_s=30)
    finally:
        await transport.aclose()
    print("\\n".join(result.tail))
    return result.exit_status

sys.exit(asyncio.run(main()))
"""
TIMED_OUT = -1  # what CONNECT_PROBE prints when the connection neither succeeded nor failed in time


def _unavailable(reason: str) -> NoReturn:
    pytest.skip(f"network namespaces unavailable: {reason}")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([IP, *args], capture_output=True, text=True, check=False, timeout=RUN_TIMEOUT_S)
    if check and result.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def existing_namespaces() -> list[str]:
    """The names ``ip netns list`` shows."""
    return [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()]


def _pids_in(namespace: str) -> list[int]:
    """The processes inside ``namespace`` (an ended one leaves it at once, before its parent reaps it)."""
    return [int(pid) for pid in _ip("netns", "pids", namespace, check=False).stdout.split()]


def _end_processes(namespace: str) -> None:
    """End every process still inside ``namespace`` (agents the tests installed, sshd sessions): SIGTERM, then
    SIGKILL for those still there after ``KILL_GRACE_S``; so that deleting its name frees the namespace and its
    veth ends."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _pids_in(namespace):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + KILL_GRACE_S
        while _pids_in(namespace):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            return


def delete_namespace(namespace: str) -> None:
    _end_processes(namespace)
    _ip("netns", "delete", namespace, check=False)


def remove_stale_namespaces() -> list[str]:
    """Delete the test namespaces of earlier runs whose process is gone; return their names."""
    stale = [
        name for name in existing_namespaces() if (match := NAME_PATTERN.match(name)) and not _alive(int(match["pid"]))
    ]
    for name in stale:
        delete_namespace(name)
    return stale


class Network:
    """The five namespaces of one run. ``create`` makes them, ``destroy`` removes them (and everything in them).

    Roles (``"srv"``, ``"px"``, ``"c1"``, ``"jh"``, ``"c2"``) name the namespaces in every method; ``names[role]``
    is the real name, for ``ip netns exec`` in a command of one's own (``exec_prefix(role)``).
    """

    def __init__(self) -> None:
        self.prefix = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(2)}"
        self.names = {role: f"{self.prefix}-{role}" for role in ROLES}
        self.addresses = ADDRESSES
        self.hosts: dict[str, SSHTestHost] = {}
        self._lab: SSHLab | None = None

    # --- making and removing --------------------------------------------------------------------------------------

    @staticmethod
    def check_available() -> None:
        """Skip (with the reason) unless this process may make network namespaces."""
        if os.geteuid() != 0:
            _unavailable("the tests must run as root to make network namespaces")
        if shutil.which(IP) is None:
            _unavailable("`ip` is missing: install iproute2 (make test does)")

    def create(self) -> None:
        """Make the namespaces, links and addresses, then check the isolation; on any failure remove what was
        made. Skips the test when the machine does not support network namespaces."""
        self.check_available()
        remove_stale_namespaces()
        first = _ip("netns", "add", self.names[ROLES[0]], check=False)
        if first.returncode != 0:
            _unavailable(f"`ip netns add` failed: {first.stderr.strip()}")
        try:
            for role in ROLES[1:]:
                _ip("netns", "add", self.names[role])
            for role in ROLES:
                _ip("-n", self.names[role], "link", "set", "lo", "up")
            for link in LINKS:
                self._make_link(link)
            for role in FORWARDING_OFF:
                self.run(role, ["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"], check=True)
            self.assert_isolated()
        except BaseException:
            self.destroy()
            raise

    def _make_link(self, link: Link) -> None:
        a, b = self.names[link.a], self.names[link.b]
        a_end, b_end = f"to-{link.b}", f"to-{link.a}"
        _ip("-n", a, "link", "add", a_end, "type", "veth", "peer", "name", b_end, "netns", b)
        for namespace, end, addresses in ((a, a_end, link.a_addresses), (b, b_end, link.b_addresses)):
            for address in addresses:
                _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", end)
            _ip("-n", namespace, "link", "set", end, "up")

    def destroy(self) -> None:
        """Stop the network's sshd hosts, end every process left in the namespaces, delete them."""
        if self._lab is not None:
            for host in self.hosts.values():
                self._lab.stop_in_namespace(host)
        self.hosts.clear()
        existing = set(existing_namespaces())
        for name in self.names.values():
            if name in existing:
                delete_namespace(name)

    # --- the isolation ------------------------------------------------------------------------------------------

    def routes(self, role: str) -> list[str]:
        """``ip -n <namespace> route`` (IPv4), one route a line."""
        return _ip("-n", self.names[role], "route").stdout.splitlines()

    def assert_isolated(self) -> None:
        """No namespace has a default route, srv has no route into c1's or c2's network, px and jh do not forward.
        Read from the routing tables: nothing is sent anywhere to find out."""
        for role in ROLES:
            routes = self.routes(role)
            assert not [route for route in routes if route.startswith("default")], f"{role} has {routes}"
            six = _ip("-n", self.names[role], "-6", "route").stdout.splitlines()
            assert not [route for route in six if route.startswith("default")], f"{role} has {six}"
        srv_routes = self.routes("srv")
        for network in UNREACHABLE_FROM_SRV:
            lookup = _ip("-n", self.names["srv"], "route", "get", network.split("/")[0], check=False)
            assert lookup.returncode != 0, f"srv routes to {network}: {lookup.stdout.strip()} ({srv_routes})"
        for role in FORWARDING_OFF:
            forwarding = self.run(role, ["cat", "/proc/sys/net/ipv4/ip_forward"], check=True).stdout.strip()
            assert forwarding == "0", f"{role} forwards (ip_forward={forwarding})"

    # --- running things inside ------------------------------------------------------------------------------------

    def exec_prefix(self, role: str) -> list[str]:
        """``ip netns exec <namespace>``: put it before a command to run that command inside ``role``."""
        return [IP, "netns", "exec", self.names[role]]

    def run(
        self,
        role: str,
        argv: Sequence[str],
        *,
        check: bool = False,
        timeout: float = RUN_TIMEOUT_S,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``role`` and wait for it (text output captured; ``kwargs`` go to subprocess.run,
        e.g. ``input=`` or ``env=``). With ``check=True`` a failure raises, showing its output."""
        result = subprocess.run(
            [*self.exec_prefix(role), *argv], capture_output=True, text=True, check=False, timeout=timeout, **kwargs
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{list(argv)} in {role} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def popen(self, role: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``role`` without waiting (``kwargs`` go to subprocess.Popen); ``ip netns exec``
        execs the command, so the Popen's pid is the command's own."""
        return subprocess.Popen([*self.exec_prefix(role), *argv], **kwargs)

    def tcp_connect(self, role: str, ip: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> int:
        """Connect from inside ``role`` to ``ip:port``: 0 when it connected, else the errno (e.g. ENETUNREACH,
        ECONNREFUSED), or ``TIMED_OUT`` when nothing answered within ``timeout_s``."""
        return self.tcp_connect_timed(role, ip, port, timeout_s)[0]

    def tcp_connect_timed(
        self, role: str, ip: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S
    ) -> tuple[int, float]:
        """``tcp_connect``, and the seconds the connection attempt itself took."""
        argv = [sys.executable, "-c", CONNECT_PROBE, ip, str(port), str(timeout_s)]
        code, seconds = self.run(role, argv, check=True, timeout=timeout_s + RUN_TIMEOUT_S).stdout.split()
        return int(code), float(seconds)

    def ssh_run(self, role: str, host: SSHTestHost, command: str) -> subprocess.CompletedProcess[str]:
        """Log in from inside ``role`` to ``host`` with its password (nodeops' own SSH transport) and run
        ``command``; the completed process's exit status is the command's, its stdout the command's output."""
        argv = [sys.executable, "-c", SSH_PROBE, host.ip, str(host.port), host.username, command]
        return self.run(role, argv, input=host.password)

    # --- sshd test hosts ------------------------------------------------------------------------------------------

    def start_hosts(self, lab: SSHLab) -> None:
        """Start the sshd test hosts of ``HOSTS`` (``hosts[name]``), logging in the lab's test user."""
        self._lab = lab
        for name, (role, ip, also) in HOSTS.items():
            self.hosts[name] = lab.start_in_namespace(self.names[role], ip, also=also)

    def stop_agents(self) -> None:
        """Stop every agent installed under a network host's ``setup_path`` (a test's installs, at its end)."""
        for host in self.hosts.values():
            for script in host.setup_path.glob(f"**/{AGENT}"):
                argv = [sys.executable, str(script), "stop", "--home", str(script.parent)]
                subprocess.run(argv, check=False, capture_output=True, timeout=RUN_TIMEOUT_S)

    def start_sshd(self, role: str, ip: str, *, also: tuple[str, ...] = ()) -> SSHTestHost:
        """One more sshd test host inside ``role``, on port 22 of ``ip`` (an address of that namespace) and of
        ``also``; it is stopped with the network."""
        assert self._lab is not None, "start_hosts first"
        host = self._lab.start_in_namespace(self.names[role], ip, also=also)
        self.hosts[f"{role}-{ip}"] = host
        return host


def unreachable(code: int) -> bool:
    """Whether a ``tcp_connect`` result says there is no route (as opposed to refused or timed out)."""
    return code in (errno.ENETUNREACH, errno.EHOSTUNREACH)


@pytest.fixture(scope="session")
def network(request: pytest.FixtureRequest) -> Iterator[Network]:
    """The test network of the session, isolation checked, with its sshd test hosts running (``Network``)."""
    Network.check_available()  # before ssh_lab's own checks, which would say something less precise
    made = Network()
    made.create()
    try:
        made.start_hosts(request.getfixturevalue("ssh_lab"))
        yield made
    finally:
        made.destroy()
