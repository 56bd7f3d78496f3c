"""``nodeops worker``: one worker process of the cluster (``NODEOPS_EXECUTOR=celery``)."""

from __future__ import annotations

import re

import typer

from nodeops.cli.context import err_console, state
from nodeops.cli.heap import bound_heap
from nodeops.process_logging import configure_logging
from nodeops.service.container import run_worker

WORKER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # it names the worker in records and log lines


def worker(
    ctx: typer.Context,
    concurrency: int | None = typer.Option(
        None,
        "--concurrency",
        "-c",
        min=1,
        max=10000,
        help="Hosts this worker runs at once (NODEOPS_WORKER_CONCURRENCY).",
    ),
    name: str | None = typer.Option(
        None, "--name", "-n", help="This worker's name in records and logs (default: the machine's name)."
    ),
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        min=0,
        max=65535,
        help="Port of this worker's /metrics, served when NODEOPS_METRICS_TOKEN is set (NODEOPS_WORKER_METRICS_PORT; "
        "0 = any free port).",
    ),
) -> None:
    """Run host pipelines from the broker (celery mode). Options after `--` go to Celery's worker as they are."""
    from nodeops.cli.app import require_current_schema

    settings = state(ctx).settings
    if settings.executor != "celery":
        err_console.print(
            "[red]error:[/red] nodeops worker runs in celery mode only: set NODEOPS_EXECUTOR=celery, with "
            "NODEOPS_DATABASE_URL (PostgreSQL) and NODEOPS_BROKER_URL (see docs/deploy.md)",
            highlight=False,
        )
        raise typer.Exit(code=2)
    if name is not None and not WORKER_NAME.fullmatch(name):
        err_console.print(
            f"[red]error:[/red] --name {name!r}: use 1 to 64 ASCII letters, digits, '-', '_' and '.' only",
            highlight=False,
        )
        raise typer.Exit(code=2)
    require_current_schema(settings)
    configure_logging(log_format=settings.log_format)
    bound_heap()
    run_worker(settings, name=name, concurrency=concurrency, celery_args=ctx.args, metrics_port=metrics_port)
