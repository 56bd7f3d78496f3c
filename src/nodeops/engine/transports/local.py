"""``LocalTransport``: the service's own machine, through subprocesses (no SSH)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections import deque
from pathlib import Path

from nodeops.engine.transports.base import OUTPUT_TAIL_LINES, CommandResult, LineSink
from nodeops.errors import CommandFailed, CommandTimeout

HOST = "local"
READ_CHUNK_BYTES = 64 * 1024
MAX_LINE_BYTES = 64 * 1024


class LocalTransport:
    """Runs commands with ``/bin/sh`` in a new process group, so a timeout stops the whole tree."""

    def __init__(self) -> None:
        self.closed = False

    async def run(self, command: str, *, timeout_s: float, on_line: LineSink | None = None) -> CommandResult:
        process = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        assert process.stdout is not None

        def emit(raw: bytes) -> None:
            line = raw.decode(errors="replace").rstrip("\r")
            tail.append(line)
            if on_line is not None:
                on_line(line)

        async def pump() -> None:
            assert process.stdout is not None
            pending = b""
            while chunk := await process.stdout.read(READ_CHUNK_BYTES):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    emit(raw)
                while len(pending) > MAX_LINE_BYTES:  # a huge line is cut into pieces: memory stays bounded
                    emit(pending[:MAX_LINE_BYTES])
                    pending = pending[MAX_LINE_BYTES:]
            if pending:
                emit(pending)
            await process.wait()

        try:
            await asyncio.wait_for(pump(), timeout=timeout_s)
        except TimeoutError:
            _kill_group(process.pid)
            await process.wait()
            raise CommandTimeout(host=HOST, timeout_s=timeout_s) from None
        except BaseException:  # cancelled, or on_line failed: the command must not outlive us
            _kill_group(process.pid)
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(process.wait())
            raise
        assert process.returncode is not None
        return CommandResult(exit_status=process.returncode, tail=tuple(tail))

    async def put(self, src: Path, dest: str, *, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(asyncio.to_thread(shutil.copyfile, src, dest), timeout=timeout_s)
        except TimeoutError:
            raise CommandTimeout(host=HOST, timeout_s=timeout_s) from None
        except OSError as exc:
            raise CommandFailed(host=HOST, exit_status=1, detail=f"copy to {dest} failed: {exc.strerror}") from exc

    async def aclose(self) -> None:
        self.closed = True


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
