"""tests/support/uds_forward.py, in this namespace: bytes both ways unchanged, a half-close passed on, and a
connection to a port nothing listens on ends at once instead of hanging."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.jobs import dead_port
from tests.support.netns_service import FORWARDER

PAYLOAD = os.urandom(3 * 1024 * 1024)  # larger than any buffer on the way
START_TIMEOUT_S = 10.0
IO_TIMEOUT_S = 10.0


def _echo(listener: socket.socket) -> None:
    """Answer each connection, once it has read to the end, with everything it sent reversed (an answer the
    forwarder looped back by mistake would not match), until one sent something: the forwarder may pass on the
    empty connection that probed it was up before the test's own."""
    while True:
        conn, _ = listener.accept()
        with conn:
            received = bytearray()
            while chunk := conn.recv(65536):
                received += chunk
            conn.sendall(bytes(received[::-1]))
        if received:
            return


@pytest.fixture
def socket_path() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="nodeops-fwd-", dir="/tmp"))
    yield folder / "fwd.sock"
    shutil.rmtree(folder)


@contextlib.contextmanager
def forwarding(path: Path, port: int) -> Iterator[None]:
    process = subprocess.Popen([sys.executable, str(FORWARDER), str(path), "127.0.0.1", str(port)])
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with socket.socket(socket.AF_UNIX) as probe, contextlib.suppress(OSError):
                probe.connect(str(path))
                break
            assert process.poll() is None and time.monotonic() < deadline, "the forwarder did not start"
            time.sleep(0.02)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_bytes_go_both_ways_unchanged_and_the_end_of_a_request_is_passed_on(socket_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        server = threading.Thread(target=_echo, args=(listener,))
        server.start()
        with forwarding(socket_path, listener.getsockname()[1]), socket.socket(socket.AF_UNIX) as client:
            client.settimeout(IO_TIMEOUT_S)
            client.connect(str(socket_path))
            client.sendall(PAYLOAD)
            client.shutdown(socket.SHUT_WR)  # the echo answers only once it has read to the end
            answer = bytearray()
            while chunk := client.recv(65536):
                answer += chunk
        server.join(timeout=IO_TIMEOUT_S)
    assert bytes(answer) == PAYLOAD[::-1]


def test_a_connection_to_a_port_nothing_listens_on_is_closed_at_once(socket_path: Path) -> None:
    with forwarding(socket_path, dead_port()), socket.socket(socket.AF_UNIX) as client:
        client.settimeout(IO_TIMEOUT_S)
        client.connect(str(socket_path))
        started = time.monotonic()
        assert client.recv(1) == b""
        assert time.monotonic() - started < 1.0
