"""Rich rendering shared by ``nodeops job`` and ``nodeops log``: statuses (icon, word and colour, so they read
without colour too), durations, and the live progress bar of a job's hosts. Imports nothing from nodeops."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

STATUS_STYLE = {
    "SUCCESS": "bold green",
    "FAILED": "bold red",
    "RUNNING": "bold cyan",
    "PENDING": "dim",
    "PART_FAILED": "bold yellow",
    "TERMINATED": "bold magenta",
    "IGNORED": "dim",
    "FILTERED": "dim",
    "REMOVED": "dim",
}
STATUS_ICON = {
    "SUCCESS": "✓",
    "FAILED": "✗",
    "RUNNING": "▶",
    "PENDING": "○",
    "PART_FAILED": "◑",
    "TERMINATED": "■",
    "IGNORED": "·",
    "FILTERED": "·",
    "REMOVED": "·",
}
ACTIVE = frozenset({"PENDING", "RUNNING"})
LEVEL_STYLE = {"ERROR": "red", "WARNING": "yellow", "DEBUG": "dim"}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def status_text(status: str) -> Text:
    """``✓ SUCCESS`` in its colour."""
    return Text(f"{STATUS_ICON.get(status, '?')} {status}", style=STATUS_STYLE.get(status, "bold"))


def duration(seconds: object) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 4 min``; ``-`` when unknown."""
    try:
        total = round(float(seconds))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"
    if total < 60:
        return f"{total} s"
    minutes = total // 60
    if minutes < 60:
        return f"{minutes} min {total % 60} s"
    return f"{minutes // 60} h {minutes % 60} min"


def seconds_between(start: object, finish: object) -> float | None:
    """Seconds from ``start`` to ``finish``, two API times (``YYYY-MM-DD HH:MM:SS``); None if either is missing."""
    if not isinstance(start, str) or not isinstance(finish, str):
        return None
    try:
        return (datetime.strptime(finish, TIME_FORMAT) - datetime.strptime(start, TIME_FORMAT)).total_seconds()
    except ValueError:
        return None


def statistics_summary(stats: Mapping[str, Any]) -> str:
    """``3 hosts: 2 done, 1 failed, 0 running, 0 pending``."""
    total = int(stats.get("total_count") or 0)
    parts = [
        f"{int(stats.get('success_count') or 0)} done",
        f"{int(stats.get('failed_count') or 0)} failed",
        f"{int(stats.get('running_count') or 0)} running",
        f"{int(stats.get('pending_count') or 0)} pending",
    ]
    if stats.get("ignored_count"):
        parts.append(f"{int(stats['ignored_count'])} ignored")
    return f"{total} host{'' if total == 1 else 's'}: " + ", ".join(parts)


class HostProgress:
    """The live bar of a job's hosts: filled by the ended ones, labelled done / failed / running.

    On a terminal it redraws in place, below the lines printed through ``console``; elsewhere (a file, a pipe)
    only its last state is printed, once, when it stops.
    """

    def __init__(self, console: Console, job_id: int) -> None:
        self.progress = Progress(
            TextColumn(f"[bold]job {job_id}[/bold]"),
            BarColumn(bar_width=30, complete_style="green", finished_style="green"),
            TextColumn("{task.fields[summary]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task: TaskID = self.progress.add_task("hosts", total=None, summary="waiting for the job…")
        self.console = self.progress.console

    def __enter__(self) -> HostProgress:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def update(self, status: str, stats: Mapping[str, Any]) -> None:
        total = int(stats.get("total_count") or 0)
        ended = int(stats.get("success_count") or 0) + int(stats.get("failed_count") or 0)
        ended += int(stats.get("ignored_count") or 0)
        summary = Text.assemble(statistics_summary(stats), "  ", status_text(status)).markup
        self.progress.update(self.task, total=max(total, 1), completed=ended, summary=summary)
