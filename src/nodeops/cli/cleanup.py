"""``nodeops cleanup``: delete jobs that ended long ago, with their records, steps, logs and sealed answers."""

from __future__ import annotations

import typer

from nodeops.cli.context import console, fail, state
from nodeops.errors import NodeopsError
from nodeops.service.retention import DEFAULT_BATCH, clean_up, parse_age


def cleanup(
    ctx: typer.Context,
    older_than: str = typer.Option(..., "--older-than", help="Age of the jobs to delete: 30d, 12h, 90m."),
    batch: int = typer.Option(DEFAULT_BATCH, "--batch", min=1, help="Records deleted per transaction."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only count what would be deleted."),
) -> None:
    """Delete jobs that ended before now minus --older-than (never PENDING or RUNNING ones)."""
    services = state(ctx).services
    try:
        cleaned = clean_up(services.db, parse_age(older_than), batch=batch, dry_run=dry_run)
    except NodeopsError as exc:
        raise fail(exc) from None
    finally:
        services.close()
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {cleaned.jobs} jobs, {cleaned.records} records, {cleaned.log_chunks} log chunks")
