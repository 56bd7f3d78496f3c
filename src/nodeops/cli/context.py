"""What every command gets from the root callback: Settings built once, and the services on demand."""

from __future__ import annotations

from dataclasses import dataclass, field

import typer
from rich.console import Console

from nodeops.errors import NodeopsError
from nodeops.service.container import Services
from nodeops.settings import Settings

console = Console()
err_console = Console(stderr=True)


@dataclass
class CliState:
    settings: Settings
    _services: Services | None = field(default=None)

    @property
    def services(self) -> Services:
        if self._services is None:
            self._services = Services.build(self.settings)
        return self._services


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


def fail(exc: NodeopsError) -> typer.Exit:
    """Print a NodeopsError for a person and return the exit to raise."""
    err_console.print(f"[red]error:[/red] {exc.message}", highlight=False)
    return typer.Exit(code=2)
