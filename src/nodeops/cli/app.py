"""The root ``nodeops`` command: builds Settings once, then ``serve``, ``demo`` and the noun groups."""

from __future__ import annotations

import gc
import shlex
from pathlib import Path
from urllib.parse import urlencode

import typer
from pydantic import ValidationError

from nodeops.cli import access, db
from nodeops.cli.context import CliState, console, err_console, fail, state
from nodeops.errors import NodeopsError
from nodeops.logs import configure_logging
from nodeops.settings import Settings

app = typer.Typer(
    help="nodeops: operational jobs on fleets of hosts.", no_args_is_help=True, pretty_exceptions_enable=False
)
app.add_typer(db.app, name="db")
app.add_typer(access.apps, name="app")
app.add_typer(access.users, name="user")
app.add_typer(access.tokens, name="token")


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Path | None = typer.Option(None, envvar="NODEOPS_DATA_DIR", help="Data folder (default ./var)."),
    database_url: str | None = typer.Option(None, envvar="NODEOPS_DATABASE_URL", help="SQLAlchemy URL."),
) -> None:
    overrides: dict[str, object] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url is not None:
        overrides["database_url"] = database_url
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        err_console.print(f"[red]error:[/red] bad configuration: {problems}", highlight=False)
        raise typer.Exit(code=2) from None
    configure_logging("WARNING")  # through the redacting filter; `serve` raises it to INFO
    ctx.obj = CliState(settings=settings)


@app.command()
def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, envvar="NODEOPS_HOST", help="Bind address (default 127.0.0.1)."),
    port: int | None = typer.Option(None, envvar="NODEOPS_PORT", help="Port (default 8000)."),
) -> None:
    """Run the HTTP service."""
    import uvicorn

    from nodeops.api.app import create_app

    cli = state(ctx)
    settings = cli.settings.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    configure_logging()
    app = create_app(settings)
    # Everything built so far lives as long as the process: move it out of the collector's sight, so a full
    # collection scans only what requests allocate (it otherwise pauses the loop for ~50-150 ms: p99).
    gc.collect()
    gc.freeze()
    console.print(f"nodeops serving on [bold]{settings.base_url}[/bold] (docs at {settings.base_url}/docs)")
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        loop="uvloop",
        http="httptools",
        access_log=False,
        proxy_headers=False,
    )


@app.command()
def demo(ctx: typer.Context) -> None:
    """Create demo data (once) and print how to read its log through the API."""
    from nodeops.service.demo import ensure_demo

    cli = state(ctx)
    try:
        made = ensure_demo(cli.services.db, cli.settings)
    except NodeopsError as exc:
        raise fail(exc) from None
    base = cli.settings.base_url
    query = urlencode(
        {
            "bk_app_code": made.app_code,
            "bk_app_secret": made.app_secret,
            "bk_username": made.username,
            "job_id": made.job_id,
            "instance_id": made.instance_id,
        }
    )
    console.print(f"URL:        {base}  (API docs: {base}/docs)", highlight=False)
    print(f"demo app:   bk_app_code={made.app_code}  bk_app_secret={made.app_secret}")
    console.print(f"demo user:  {made.username} (superuser)", highlight=False)
    console.print("read the demo job's log:", highlight=False)
    print("curl -s " + shlex.quote(f"{base}/api/c/compapi/v2/nodeman/api/job/log/?{query}"))


def main() -> None:
    app()
