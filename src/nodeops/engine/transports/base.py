"""The transport seam: run a command (streaming its output line by line), copy a file, close.

``SSHTransport`` and ``LocalTransport`` are equal peers behind this protocol; steps never know which one
they use. Errors are ``nodeops.errors.TransportError`` subclasses, never a library's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

LineSink = Callable[[str], None]
OUTPUT_TAIL_LINES = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult:
    """How a command ended: its exit status and the last lines it printed (stdout and stderr merged)."""

    exit_status: int
    tail: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class Transport(Protocol):
    """A connection to one host."""

    async def run(self, command: str, *, timeout_s: float, on_line: LineSink | None = None) -> CommandResult:
        """Run ``command`` with ``sh``; each output line goes to ``on_line`` as it arrives.

        Raises CommandTimeout (after stopping the command) when it runs longer than ``timeout_s``.
        A non-zero exit is not an error here: the caller decides.
        """
        ...

    async def put(self, src: Path, dest: str, *, timeout_s: float) -> None:
        """Copy the local file ``src`` to the path ``dest`` on the host (its folder must exist)."""
        ...

    async def aclose(self) -> None:
        """Release the connection; safe to call twice."""
        ...
