"""``nodeops agent``: agent packages."""

from __future__ import annotations

import typer

from nodeops.cli.context import console, fail, state
from nodeops.engine import packages
from nodeops.errors import NodeopsError

app = typer.Typer(help="Agent packages.", no_args_is_help=True)


@app.command()
def build(
    ctx: typer.Context,
    version: str = typer.Option(..., "--version", help="Version to build and register, e.g. 0.2.0."),
) -> None:
    """Build the agent package of VERSION and register it; UPGRADE_AGENT then moves hosts to the newest."""
    cli = state(ctx)
    try:
        built = packages.register(cli.services.db, cli.settings.packages_dir, version)
    except NodeopsError as exc:
        raise fail(exc) from None
    console.print(f"agent {built.version} registered: {built.path} (sha256 {built.sha256[:16]}…)", highlight=False)
