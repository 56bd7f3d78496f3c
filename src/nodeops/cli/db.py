"""``nodeops db``: schema migrations."""

from __future__ import annotations

import typer

from nodeops.cli.context import console, fail, state
from nodeops.errors import NodeopsError
from nodeops.store import migrate

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command()
def upgrade(ctx: typer.Context, revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    services = state(ctx).services
    try:
        migrate.upgrade(services.db, revision)
    except NodeopsError as exc:
        raise fail(exc) from None
    console.print(
        f"database at [bold]{services.db.engine.url.render_as_string(hide_password=True)}[/bold] is at {revision}"
    )


@app.command()
def downgrade(ctx: typer.Context, revision: str = typer.Argument(..., help="Target revision, or base.")) -> None:
    """Revert migrations down to REVISION."""
    try:
        migrate.downgrade(state(ctx).services.db, revision)
    except NodeopsError as exc:
        raise fail(exc) from None
    console.print(f"database is at {revision}")
