"""``nodeops serve --workers N``: N API processes answering on one port, for the API nodes of a cluster.

The parent binds the address once and starts N children (``python -m nodeops serve --fd FD``), each a
whole ``nodeops serve`` with its own event loop, database pool and log lane, accepting connections from the one
inherited listening socket (the kernel hands each new connection to one of them). The parent runs no application: it
watches the children, starts again one that died (after 1 s, doubling up to 30 s while they keep dying within
10 s of their start), and on SIGTERM or SIGINT asks each to stop (uvicorn's graceful shutdown: it finishes the
requests it has) and waits for them, killing those still running after ``STOP_TIMEOUT_S``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from nodeops.cli.context import console, err_console

STOP_TIMEOUT_S = 30.0
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
QUICK_DEATH_S = 10.0  # a child that dies sooner than this after its start makes the next restart wait longer


def listen(host: str, port: int) -> socket.socket:
    """The listening socket the children share (inheritable), bound as uvicorn binds its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(count: int, host: str, port: int, child_args: Callable[[int], list[str]], env: dict[str, str]) -> int:
    """Run ``count`` API processes on ``host:port`` until a signal stops them; the exit code for the command.
    Each child is ``python -m nodeops`` with ``child_args(fd)`` and the environment ``env``."""
    try:
        sock = listen(host, port)
    except OSError as exc:
        err_console.print(f"[red]error:[/red] cannot listen on {host}:{port}: {exc.strerror or exc}", highlight=False)
        return 2
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    children: dict[int, tuple[subprocess.Popen[bytes], float]] = {}
    delay_s = RESTART_FIRST_S

    def start(slot: int) -> None:
        command = [sys.executable, "-m", "nodeops", *child_args(sock.fileno())]
        children[slot] = (subprocess.Popen(command, pass_fds=(sock.fileno(),), env=env), time.monotonic())

    try:
        for slot in range(count):
            start(slot)
        console.print(f"nodeops: {count} API processes on {host}:{port} (pids {_pids(children)})")
        while not stopping:
            time.sleep(0.2)
            for slot, (child, started) in list(children.items()):
                code = child.poll()
                if code is None or stopping:
                    continue
                quick = time.monotonic() - started < QUICK_DEATH_S
                delay_s = min(delay_s * 2, RESTART_MAX_S) if quick else RESTART_FIRST_S
                err_console.print(
                    f"nodeops: API process {child.pid} exited ({_exit_text(code)}); starting another in {delay_s:g} s",
                    highlight=False,
                )
                _sleep_unless(lambda: stopping, delay_s)
                if not stopping:
                    start(slot)
        return 0
    finally:
        _stop_all([child for child, _ in children.values()])
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            err_console.print(f"nodeops: API process {child.pid} still running: killed", highlight=False)
            child.kill()
            child.wait()


def _sleep_unless(stopped: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stopped() and time.monotonic() < deadline:
        time.sleep(0.1)


def _pids(children: dict[int, tuple[subprocess.Popen[bytes], float]]) -> str:
    return ", ".join(str(child.pid) for child, _ in children.values())


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def inherited_socket(fd: int) -> socket.socket:
    """The listening socket a child got from its parent (``--fd``); raises OSError when ``fd`` is not one."""
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM or sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 1:
        raise OSError(f"file descriptor {fd} is not a listening socket")
    os.set_inheritable(fd, False)
    return sock
