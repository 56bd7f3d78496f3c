"""What the log API answers for one instance record (spec §7.5), built from its steps: pure, no I/O.

The same function renders the answer when a record is read and when a finished record's answer is sealed
(stored beside it, see ``nodeops.store.answers``), so both are byte for byte the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import Any

import orjson

from nodeops.domain.status import Status, backtrace_steps

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True, slots=True, kw_only=True)
class StepLog:
    """One step of a record with its whole log text (chunks joined by newlines); times in UTC."""

    index: int
    name: str
    status: str
    start_at: datetime | None
    finish_at: datetime | None
    log: str


def zone_key(tz: tzinfo) -> str:
    """A stable name of a zone, stored with sealed answers: an answer rendered in another zone is not reused."""
    key = getattr(tz, "key", None)
    return key if isinstance(key, str) else str(tz)


class AnswerRenderer:
    """Renders the log API's ``data`` (a JSON list of ``{step, status, log, start_time, finish_time}``)."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self.zone = zone_key(tz)
        # the same second recurs across steps and records, and strftime is slow
        self._format = lru_cache(maxsize=4096)(self._format_uncached)

    def render(self, steps: Sequence[StepLog]) -> bytes:
        """Every step in plan order; ``finish_time`` is null until the step has finished."""
        statuses = backtrace_steps([Status(step.status) for step in steps])
        fmt = self._format
        data: list[dict[str, Any]] = [
            {
                "step": step.name,
                "status": status.value,
                "log": step.log,
                "start_time": fmt(step.start_at),
                "finish_time": fmt(step.finish_at) if status not in (Status.RUNNING, Status.PENDING) else None,
            }
            for step, status in zip(steps, statuses, strict=True)
        ]
        return orjson.dumps(data)

    def _format_uncached(self, at: datetime | None) -> str | None:
        return None if at is None else at.astimezone(self.tz).strftime(TIME_FORMAT)
