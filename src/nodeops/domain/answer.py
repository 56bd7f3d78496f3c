"""What the log API answers for one instance record (spec §7.5), built from its steps: pure, no I/O.

The same function renders the answer when a record is read and when a finished record's answer is sealed
(stored beside it, see ``nodeops.store.answers``), so both are byte for byte the same. Every JSON answer has
escape sequences stripped (``terminal.strip_ansi``), and each step's log is capped at ``step_max_bytes``
(``NODEOPS_LOG_STEP_MAX_BYTES``): a longer log is cut at a line boundary and ends with a marker line saying how
many bytes are left and where to read them (docs/log-reading.md, "Huge logs").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import orjson

from nodeops.domain.status import Status, backtrace_steps
from nodeops.domain.terminal import strip_ansi

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_STEP_MAX_BYTES = 1024 * 1024


def utf8_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8, without encoding it when it is ASCII."""
    return len(text) if text.isascii() else len(text.encode())


def cap_text(text: str, max_bytes: int) -> tuple[str, int]:
    """``text`` cut to at most ``max_bytes`` of UTF-8 at a line boundary, and how many bytes were left out
    (not counting the newline at the cut); ``(text, 0)`` when it fits."""
    if len(text) <= max_bytes // 4 or (len(text) <= max_bytes and utf8_size(text) <= max_bytes):
        return text, 0
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text, 0
    cut = encoded.rfind(b"\n", 0, max_bytes + 1)
    if cut < 0:  # a first line longer than the cap: show none of it rather than half a character
        return "", len(encoded)
    return encoded[:cut].decode(), len(encoded) - cut - 1


def truncation_marker(omitted_bytes: int, *, job_id: int | None, instance_id: str | None, attempt: int | None) -> str:
    """The line that ends a capped step's log: how much is left and how to read it."""
    where = "GET /api/job/{job_id}/log/tail/?instance_id=…"
    if job_id is not None and instance_id is not None:
        where = f"GET /api/job/{job_id}/log/tail/?instance_id={quote(instance_id, safe='')}"
        if attempt is not None:
            where += f"&attempt={attempt}"
    return (
        f"[nodeops] … {omitted_bytes} more bytes of this step not shown; read them with {where} "
        "(follow its cursor) or download the log"
    )


def capped_log(
    log: str,
    omitted_bytes: int,
    max_bytes: int,
    clean: Callable[[str], str],
    *,
    job_id: int | None,
    instance_id: str | None,
    attempt: int | None,
) -> str:
    """A step's log as an answer shows it: cut to ``max_bytes`` at a line (``omitted_bytes``: what the read left
    out already, the newlines joining its chunks included), cleaned (``strip_ansi``, ``strip_controls``), and
    ended by the marker line saying how much is left and where to read it when anything was left out."""
    text, omitted = cap_text(log, max_bytes)
    if omitted_bytes:
        omitted += omitted_bytes - (1 if omitted == 0 else 0)
    text = clean(text)
    if omitted:
        marker = truncation_marker(omitted, job_id=job_id, instance_id=instance_id, attempt=attempt)
        text = f"{text}\n{marker}" if text else marker
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class StepLog:
    """One step of a record with its whole log text (chunks joined by newlines); times in UTC."""

    index: int
    name: str
    status: str
    start_at: datetime | None
    finish_at: datetime | None
    log: str
    # bytes of the step's log left out by the reader because they lie past the cap anyway (each counted with
    # the newline before it); the renderer adds them to what it cuts itself
    omitted_bytes: int = 0


def zone_key(tz: tzinfo) -> str:
    """A stable name of a zone, stored with sealed answers: an answer rendered in another zone is not reused."""
    key = getattr(tz, "key", None)
    return key if isinstance(key, str) else str(tz)


class AnswerRenderer:
    """Renders the log API's ``data`` (a JSON list of ``{step, status, log, start_time, finish_time}``).

    ``zone`` names what a sealed answer depends on besides the record: the time zone, and the step cap when it
    is not the default, so an answer sealed under other settings is never served.
    """

    def __init__(self, tz: tzinfo, *, step_max_bytes: int = DEFAULT_STEP_MAX_BYTES) -> None:
        self.tz = tz
        self.step_max_bytes = step_max_bytes
        key = zone_key(tz)
        self.zone = key if step_max_bytes == DEFAULT_STEP_MAX_BYTES else f"{key};cap={step_max_bytes}"
        # the same second recurs across steps and records, and strftime is slow
        self._format = lru_cache(maxsize=4096)(self._format_uncached)

    def render(
        self,
        steps: Sequence[StepLog],
        *,
        job_id: int | None = None,
        instance_id: str | None = None,
        attempt: int | None = None,
    ) -> bytes:
        """Every step in plan order; ``finish_time`` is null until the step has finished. Each log is capped
        (its marker names ``job_id``, ``instance_id`` and ``attempt`` when given) and has ANSI codes stripped."""
        data = self.step_fields(steps)
        for step, fields in zip(steps, data, strict=True):
            fields["log"] = capped_log(
                step.log,
                step.omitted_bytes,
                self.step_max_bytes,
                strip_ansi,
                job_id=job_id,
                instance_id=instance_id,
                attempt=attempt,
            )
        return orjson.dumps(data)

    def step_fields(self, steps: Sequence[StepLog]) -> list[dict[str, Any]]:
        """The seed's five fields of every step, with ``log`` as given (neither capped nor stripped)."""
        statuses = backtrace_steps([Status(step.status) for step in steps])
        fmt = self._format
        return [
            {
                "step": step.name,
                "status": status.value,
                "log": step.log,
                "start_time": fmt(step.start_at),
                "finish_time": fmt(step.finish_at) if status not in (Status.RUNNING, Status.PENDING) else None,
            }
            for step, status in zip(steps, statuses, strict=True)
        ]

    def _format_uncached(self, at: datetime | None) -> str | None:
        return None if at is None else at.astimezone(self.tz).strftime(TIME_FORMAT)
