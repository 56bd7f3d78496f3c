"""The root ``nodeops`` command: builds Settings once, then ``serve``, ``demo`` and the noun groups."""

from __future__ import annotations

import gc
import os
import shlex
import socket
from pathlib import Path
from urllib.parse import urlencode

import typer
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from rich.markup import escape

import nodeops
from nodeops.cli import access, agent, api_processes, cleanup, db, hosts, job, log, worker
from nodeops.cli.context import CliState, console, err_console, state
from nodeops.cli.heap import bound_heap
from nodeops.errors import NodeopsError
from nodeops.process_logging import configure_logging
from nodeops.service.container import Services
from nodeops.settings import Settings
from nodeops.store import migrate
from nodeops.store.db import Database

app = typer.Typer(
    help="nodeops: operational jobs on fleets of hosts.", no_args_is_help=True, pretty_exceptions_enable=False
)
app.add_typer(db.app, name="db")
app.add_typer(access.apps, name="app")
app.add_typer(access.users, name="user")
app.add_typer(access.tokens, name="token")
app.add_typer(agent.app, name="agent")
app.command(name="cleanup")(cleanup.cleanup)
app.add_typer(job.app, name="job")
app.command("log")(log.log_command)
app.add_typer(hosts.app, name="hosts")
app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(worker.worker)


def _print_version(asked: bool) -> None:
    if asked:
        print(f"nodeops {nodeops.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Path | None = typer.Option(None, envvar="NODEOPS_DATA_DIR", help="Data folder (default ./var)."),
    database_url: str | None = typer.Option(None, envvar="NODEOPS_DATABASE_URL", help="SQLAlchemy URL."),
    _version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    overrides: dict[str, object] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url is not None:
        overrides["database_url"] = database_url
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(_configuration_problem(error) for error in exc.errors())
        err_console.print(f"[red]error:[/red] bad configuration: {escape(problems)}", highlight=False)
        raise typer.Exit(code=2) from None
    configure_logging("WARNING", settings.log_format)  # through the redacting filter; `serve` raises it to INFO
    ctx.obj = CliState(settings=settings)


def _configuration_problem(error: ErrorDetails) -> str:
    """One validation error as ``field: message``; a check of the whole configuration is its message alone."""
    where = ".".join(map(str, error["loc"]))
    # a validator's own ValueError reads as written, without pydantic's "Value error, " before it
    message = str(error["ctx"]["error"]) if error["type"] == "value_error" and "ctx" in error else error["msg"]
    return f"{where}: {message}" if where else message


@app.command()
def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, envvar="NODEOPS_HOST", help="Bind address (default 127.0.0.1)."),
    port: int | None = typer.Option(None, envvar="NODEOPS_PORT", help="Port (default 8000)."),
    demo: bool = typer.Option(
        False, "--demo", help="Once started, install then upgrade the agent on this machine and print a curl."
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        envvar="NODEOPS_API_WORKERS",
        min=1,
        max=64,
        help="API processes answering on the port (NODEOPS_EXECUTOR=celery only: the API nodes of a cluster; "
        "about one per core, see docs/deploy.md).",
    ),
    fd: int | None = typer.Option(None, "--fd", hidden=True, help="A listening socket from `serve --workers`."),
) -> None:
    """Run the HTTP service (and, in the embedded mode, the jobs it is given, in this process)."""
    cli = state(ctx)
    settings = cli.settings.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    if workers > 1:
        _serve_processes(settings, workers, demo=demo)
        return
    try:
        sock = None if fd is None else api_processes.inherited_socket(fd)
    except (OSError, ValueError) as exc:
        err_console.print(f"[red]error:[/red] --fd {fd}: {getattr(exc, 'strerror', None) or exc}", highlight=False)
        raise typer.Exit(code=2) from None
    require_current_schema(settings)
    configure_logging(log_format=settings.log_format)
    _allow_open_files(settings)
    bound_heap()
    _serve(settings, demo=demo, sock=sock)


def _serve(settings: Settings, *, demo: bool, sock: socket.socket | None) -> None:
    import uvicorn

    from nodeops.api.app import create_app

    app = create_app(settings, on_started=_print_demo if demo else None)
    # Everything built so far lives as long as the process: move it out of the collector's sight, so a full
    # collection scans only what requests allocate (it otherwise pauses the loop for ~50-150 ms: p99).
    gc.collect()
    gc.freeze()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        loop="uvloop",
        http=app.http_protocol,  # httptools, with the log lane (nodeops.api.fastpath.lane)
        access_log=False,
        proxy_headers=False,
    )
    if sock is None:
        console.print(f"nodeops serving on [bold]{settings.base_url}[/bold] (docs at {settings.base_url}/docs)")
    uvicorn.Server(config).run(sockets=None if sock is None else [sock])


def _serve_processes(settings: Settings, workers: int, *, demo: bool) -> None:
    """``serve --workers N``: N API processes on the port (``cli.api_processes``), celery mode only."""
    if settings.executor != "celery":
        err_console.print(
            "[red]error:[/red] --workers needs NODEOPS_EXECUTOR=celery: in the embedded mode the service runs the "
            "jobs itself, and each process would run them; run one process, or set up the cluster "
            "(docs/deploy.md)",
            highlight=False,
        )
        raise typer.Exit(code=2)
    if demo:
        err_console.print("[red]error:[/red] --demo runs in one process: leave out --workers", highlight=False)
        raise typer.Exit(code=2)
    require_current_schema(settings)
    env = {
        **os.environ,
        "NODEOPS_DATA_DIR": str(settings.data_dir),
        "NODEOPS_DATABASE_URL": settings.database_url,
        "NODEOPS_HOST": settings.host,
        "NODEOPS_PORT": str(settings.port),
    }
    env.pop("NODEOPS_API_WORKERS", None)
    console.print(f"nodeops serving on [bold]{settings.base_url}[/bold] with {workers} API processes")
    code = api_processes.run(workers, settings.host, settings.port, lambda fd: ["serve", "--fd", str(fd)], env)
    raise typer.Exit(code=code)


def require_current_schema(settings: Settings) -> None:
    """Refuse to serve a database whose schema is not this code's (none yet, older or newer), saying what to run,
    rather than failing at startup with a traceback."""
    db = Database.connect(settings.database_url)
    try:
        problem = migrate.schema_problem(db)
    except NodeopsError as exc:
        problem = exc.message
    finally:
        db.dispose()
    if problem is not None:
        err_console.print(f"[red]error:[/red] {problem}", highlight=False)
        raise typer.Exit(code=2)


# open files the service needs besides its HTTP connections: per running host (an SSH connection, or a local
# command's three pipes), and for the rest (database, listening socket, logs, uploads)
FILES_PER_HOST = 4
FILES_BESIDES = 256


def _allow_open_files(settings: Settings) -> None:
    """Raise the process's soft limit on open files to what ``NODEOPS_MAX_CONNECTIONS`` connections and
    ``NODEOPS_JOB_LIMIT`` running hosts need (up to the hard limit): below it, accepting a connection would fail
    before the connection cap is reached. Warns when the hard limit is too low."""
    import resource

    needed = settings.max_connections + FILES_PER_HOST * settings.job_limit + FILES_BESIDES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = open_files_limit(soft, hard, needed, unlimited=resource.RLIM_INFINITY)
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target != resource.RLIM_INFINITY and target < needed:
        err_console.print(
            f"[yellow]warning:[/yellow] this process may open {target} files, and NODEOPS_MAX_CONNECTIONS="
            f"{settings.max_connections} with NODEOPS_JOB_LIMIT={settings.job_limit} needs about {needed}: "
            "raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower the settings",
            highlight=False,
        )


def open_files_limit(soft: int, hard: int, needed: int, *, unlimited: int) -> int:
    """The soft limit on open files to run with: ``soft`` if it is enough, else ``needed`` up to ``hard``."""
    if soft == unlimited or soft >= needed:
        return soft
    return needed if hard == unlimited else max(soft, min(needed, hard))


async def _print_demo(services: Services) -> None:
    """Run the demo jobs, then print how to read their log through the API."""
    from nodeops.service.admin import token
    from nodeops.service.demo import ensure_demo_access, run_demo_jobs

    settings = services.settings
    try:
        access = await services.db.call(lambda: ensure_demo_access(services.db, settings))
        console.print("demo: installing then upgrading the agent on this machine (local transport)...")
        run = await run_demo_jobs(services)
    except NodeopsError as exc:
        err_console.print(f"[red]demo failed:[/red] {exc.message}", highlight=False)
        return
    base = settings.base_url
    bk_token = await services.db.call(
        lambda: token(services.db, settings.resolved_secret_key(), username=access.username, ttl_s=settings.token_ttl_s)
    )
    query = urlencode(
        {
            "bk_app_code": access.app_code,
            "bk_app_secret": access.app_secret,
            "bk_username": access.username,
            "job_id": run.upgrade_job_id,
            "instance_id": run.instance_id,
        }
    )
    print(f"URL:        {base}  (API docs: {base}/docs)")
    print(f"demo app:   bk_app_code={access.app_code}  bk_app_secret={access.app_secret}")
    print(f"demo user:  {access.username} (superuser)")
    print(
        f"demo jobs:  INSTALL_AGENT job {run.install_job_id} {run.install_status}, "
        f"UPGRADE_AGENT job {run.upgrade_job_id} {run.upgrade_status}"
    )
    # the token rides in the fragment, which browsers never send; the viewer signs in with it and drops it
    print(f"viewer:     {base}/#/signin?{urlencode({'bk_token': bk_token})}")
    print("read the upgrade's log:")
    print("curl -s " + shlex.quote(f"{base}/api/c/compapi/v2/nodeman/api/job/log/?{query}"), flush=True)


def main() -> None:
    app()
