"""``nodeops log JOB INSTANCE``: an instance's log from a running service, a header per step, coloured.

It reads through the tail answer (``GET /api/job/{job_id}/log/tail/`` with a cursor), so ``--follow`` prints
each line once, in order, while the steps run, and shows a live bar of the job's hosts below; against a service
without the tail answer it reads the seed answer instead and prints only what is new. HTTP only: imports the
CLI's remote and render helpers, nothing from service/engine/store; ``--grep`` is matched as the service's
search matches (``domain.log_search``: a substring, or with ``--regex`` an RE2 pattern).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from nodeops.cli.context import console, err_console, state
from nodeops.cli.remote import NotServed, Remote, RemoteError, resolve_identity, resolve_url
from nodeops.cli.render import (
    ACTIVE,
    LEVEL_STYLE,
    HostProgress,
    duration,
    seconds_between,
    status_text,
)
from nodeops.domain.log_search import Matcher, compile_query
from nodeops.domain.params import is_ascii_digits
from nodeops.errors import InvalidInput

POLL_S = 0.5
PROGRESS_EVERY_S = 1.0
MAX_PAGES = 10_000  # a tail answer carries at most max_bytes; a huge log is read page by page
_LEVEL = re.compile(r"^\[[^\]]*?\b(DEBUG|INFO|WARNING|ERROR)\]")


@dataclass
class StepState:
    index: int
    step: str = ""
    status: str = "PENDING"
    start_time: str | None = None
    finish_time: str | None = None
    line_count: int = 0
    shown_status: str | None = None  # the status printed in this step's header or last footer


@dataclass
class Batch:
    """What one read brought: the instance's state and, per step index, its new lines."""

    status: str
    finished: bool
    new_lines: dict[int, list[str]] = field(default_factory=dict)


class LogReader:
    """Reads one instance's log from where the last read stopped."""

    def __init__(self, remote: Remote, job_id: int, instance_id: str, attempt: int | None) -> None:
        self.remote = remote
        self.job_id = job_id
        self.instance_id = instance_id
        self.attempt = attempt
        self.cursor = ""
        self.tail = True
        self.steps: list[StepState] = []

    def read(self) -> Batch:
        """Everything written since the previous read (all of it the first time)."""
        if self.tail:
            try:
                return self._read_tail()
            except NotServed:
                if self.cursor:
                    raise
                self.tail = False
        return self._read_seed()

    def _step(self, index: int, answer: dict[str, Any]) -> StepState:
        while len(self.steps) <= index:
            self.steps.append(StepState(index=len(self.steps)))
        state = self.steps[index]
        state.step = str(answer.get("step") or state.step)
        state.status = str(answer.get("status") or state.status)
        state.start_time = answer.get("start_time")
        state.finish_time = answer.get("finish_time")
        return state

    def _read_tail(self) -> Batch:
        batch = Batch(status="PENDING", finished=False)
        for _page in range(MAX_PAGES):
            params: dict[str, Any] = {"instance_id": self.instance_id, "cursor": self.cursor, "attempt": self.attempt}
            data = self.remote.get(f"/api/job/{self.job_id}/log/tail/", params)
            batch.status = str(data.get("status") or batch.status)
            batch.finished = bool(data.get("finished"))
            self.cursor = str(data.get("cursor") or self.cursor)
            text_read = 0
            for index, answer in enumerate(data.get("steps") or []):
                state = self._step(index, answer)
                text = str(answer.get("log") or "")
                text_read += len(text)
                lines = split_lines(text)
                state.line_count += len(lines)
                if lines:
                    batch.new_lines.setdefault(index, []).extend(lines)
            if not text_read:
                break
        return batch

    def _read_seed(self) -> Batch:
        params: dict[str, Any] = {"instance_id": self.instance_id, "attempt": self.attempt}
        answers = self.remote.get(f"/api/job/{self.job_id}/log/", params) or []
        batch = Batch(status=collect_status([str(a.get("status")) for a in answers]), finished=False)
        batch.finished = batch.status not in ACTIVE
        for index, answer in enumerate(answers):
            state = self._step(index, answer)
            text = str(answer.get("log") or "")
            lines = text.split("\n") if text else []
            fresh = lines[state.line_count :]
            state.line_count = len(lines)
            if fresh:
                batch.new_lines[index] = fresh
        return batch


def split_lines(text: str) -> list[str]:
    """The lines of a step's text in a tail answer: whole lines joined by newlines, none before or after."""
    return text.split("\n") if text else []


def collect_status(statuses: Iterable[str]) -> str:
    """An instance's status from its steps' (spec §6.2): all SUCCESS, else any FAILED, else any RUNNING."""
    found = list(statuses)
    if found and all(s == "SUCCESS" for s in found):
        return "SUCCESS"
    for status in ("FAILED", "RUNNING"):
        if status in found:
            return status
    return "PENDING"


class LogPrinter:
    """Prints steps and lines: a header when a step is first shown, a footer when a followed step ends."""

    def __init__(self, out: Console, *, grep: Matcher | None, steps: Callable[[StepState], bool]) -> None:
        self.out = out
        self.grep = grep
        self.wanted = steps
        self.matches = 0

    def header(self, state: StepState) -> None:
        title = Text.assemble(
            ("━━ ", "dim"),
            (f"{state.index + 1}. ", "bold"),
            (state.step, "underline"),
            "  ",
            status_text(state.status),
            "  ",
            (self._times(state), "dim"),
        )
        self.out.print(title, soft_wrap=True)
        state.shown_status = state.status

    @staticmethod
    def _times(state: StepState) -> str:
        if not state.start_time:
            return "not started"
        took = seconds_between(state.start_time, state.finish_time)
        end = state.finish_time or "…"
        return f"{state.start_time} → {end}" + (f" ({duration(took)})" if took is not None else "")

    def footer(self, state: StepState) -> None:
        took = seconds_between(state.start_time, state.finish_time)
        self.out.print(
            Text.assemble("   ", status_text(state.status), f"  {state.step}", (f"  {duration(took)}", "dim"))
        )
        state.shown_status = state.status

    def line(self, text: str) -> None:
        level = _LEVEL.match(text)
        rendered = Text(text, style=LEVEL_STYLE.get(level.group(1), "") if level else "")
        if self.grep is not None:
            for start, end in self.grep.spans(text):
                rendered.stylize("bold black on yellow", start, end)
                self.matches += 1
        self.out.print(rendered, soft_wrap=True, highlight=False, markup=False)

    def show(self, steps: list[StepState], batch: Batch, *, following: bool) -> None:
        """Print what ``batch`` brought, in step order."""
        for step in steps:
            if not self.wanted(step):
                continue
            lines = batch.new_lines.get(step.index, [])
            if self.grep is not None:
                lines = [line for line in lines if self.grep.finds(line)]
            started = step.status != "PENDING" or bool(lines)
            if step.shown_status is None:
                if (following and started) or (not following and (self.grep is None or lines)):
                    self.header(step)
            for text in lines:
                self.line(text)
            if following and step.shown_status is not None and step.status != step.shown_status:
                if step.status not in ACTIVE:
                    self.footer(step)


def log_command(
    ctx: typer.Context,
    job_id: int = typer.Argument(..., help="The job's id."),
    instance_id: str = typer.Argument(..., help="host|instance|host|<bk_host_id or ip-cloud-0>, or a bk_host_id."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until the instance ends."),
    grep: str | None = typer.Option(None, "--grep", "-g", help="Only lines containing this text (case-insensitive)."),
    regex: bool = typer.Option(False, "--regex", help="--grep is a regular expression (RE2 syntax)."),
    step: list[str] = typer.Option([], "--step", "-s", help="Only this step: its number (1 = first) or its name."),
    attempt: int | None = typer.Option(None, "--attempt", min=1, help="An earlier run of a retried instance."),
    url: str | None = typer.Option(None, "--url", envvar="NODEOPS_URL", help="The service (default: its own address)."),
) -> None:
    """Print an instance's log, a header per step; with --follow, until it ends (exit 1 if it FAILED)."""
    try:
        pattern = compile_query(grep, regex=regex, case=False) if grep else None
    except InvalidInput as exc:
        problem = "; ".join(exc.problems.values())
        err_console.print(f"[red]error:[/red] --grep {problem}", highlight=False, markup=False)
        raise typer.Exit(code=2) from None
    settings = state(ctx).settings
    try:
        remote = Remote(resolve_url(url, settings), resolve_identity(settings))
    except RemoteError as exc:
        raise remote_failure(exc) from None
    with remote:
        try:
            status = read_log(remote, job_id, instance_id, follow=follow, pattern=pattern, steps=step, attempt=attempt)
        except RemoteError as exc:
            raise remote_failure(exc) from None
    if follow and status == "FAILED":
        raise typer.Exit(code=1)


def step_filter(wanted: list[str]) -> Callable[[StepState], bool]:
    if not wanted:
        return lambda _state: True
    numbers = {int(w) - 1 for w in wanted if is_ascii_digits(w)}
    names = {w for w in wanted if not is_ascii_digits(w)}
    return lambda state: state.index in numbers or state.step in names


def read_log(
    remote: Remote,
    job_id: int,
    instance_id: str,
    *,
    follow: bool,
    pattern: Matcher | None,
    steps: list[str],
    attempt: int | None,
) -> str:
    """Print the log (following it if asked); returns the instance's last status."""
    reader = LogReader(remote, job_id, instance_id, attempt)
    if not follow:
        batch = reader.read()
        printer = LogPrinter(console, grep=pattern, steps=step_filter(steps))
        printer.show(reader.steps, batch, following=False)
        if pattern is not None:
            console.print(Text(f"{printer.matches} match{'' if printer.matches == 1 else 'es'}", style="dim"))
        return batch.status
    with HostProgress(console, job_id) as bar:
        printer = LogPrinter(bar.console, grep=pattern, steps=step_filter(steps))
        next_progress = 0.0
        while True:
            batch = reader.read()
            printer.show(reader.steps, batch, following=True)
            if time.monotonic() >= next_progress or batch.finished:
                details = remote.post(f"/api/job/{job_id}/details/", {"pagesize": 1})
                bar.update(str(details.get("status")), details.get("statistics") or {})
                next_progress = time.monotonic() + PROGRESS_EVERY_S
            if batch.finished:
                break
            time.sleep(POLL_S)
    final = Text.assemble("instance ", (instance_id, "bold"), " ended ", status_text(batch.status))
    console.print(final)
    return batch.status


def remote_failure(exc: RemoteError) -> typer.Exit:
    """Print a failed call for a person; the exit to raise (1)."""
    code = f" (code {exc.code})" if exc.code is not None and f"{exc.code}" not in exc.message else ""
    err_console.print(Text.assemble(("error: ", "bold red"), exc.message, code))
    return typer.Exit(code=1)
