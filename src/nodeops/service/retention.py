"""Retention (docs/log-reading.md, "Retention"): delete jobs that ended long ago, on demand or periodically.

``nodeops cleanup`` calls ``clean_up`` once; with ``NODEOPS_RETENTION_DAYS`` > 0 the service runs
``RetentionJanitor`` every ``NODEOPS_CLEANUP_INTERVAL_S``. The deleting itself is ``store.retention``: short
batched transactions that never touch a PENDING or RUNNING job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from datetime import datetime, timedelta

from nodeops.errors import InvalidInput
from nodeops.store import retention
from nodeops.store.db import Database
from nodeops.store.models import utcnow

log = logging.getLogger(__name__)
DEFAULT_BATCH = 500
_AGE = re.compile(r"^\s*(\d{1,6})\s*([dhm]?)\s*$", re.ASCII)  # re.ASCII: \d alone matches any Unicode digit
_UNITS = {"d": "days", "": "days", "h": "hours", "m": "minutes"}


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m`` or a bare number of days; raises InvalidInput naming ``older_than``."""
    match = _AGE.match(text)
    if match is None:
        raise InvalidInput.field(
            "older_than", f"{text[:40]!r} must be a number of days (30d), hours (12h) or minutes (90m)"
        )
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def clean_up(
    db: Database, older_than: timedelta, *, batch: int = DEFAULT_BATCH, dry_run: bool = False
) -> retention.Cleaned:
    """Delete (or with ``dry_run`` only count) the jobs that ended more than ``older_than`` ago."""
    if batch < 1:
        raise InvalidInput.field("batch", "must be at least 1 record per transaction")
    before: datetime = utcnow() - older_than
    if dry_run:
        return retention.count_expired(db, before)
    cleaned = retention.delete_expired(db, before, batch=batch)
    log.info(
        "retention deleted %d jobs, %d records, %d log chunks",
        cleaned.jobs,
        cleaned.records,
        cleaned.log_chunks,
        extra={"action": "retention_cleanup", "jobs": cleaned.jobs, "records": cleaned.records},
    )
    return cleaned


class RetentionJanitor:
    """Runs ``clean_up`` every ``interval_s`` in the background; ``start()`` then ``aclose()``."""

    def __init__(self, db: Database, *, days: int, interval_s: float) -> None:
        self.db = db
        self.days = days
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.days > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="nodeops-retention")

    async def _run(self) -> None:
        while True:
            try:
                await self.db.call(lambda: clean_up(self.db, timedelta(days=self.days)))
            except Exception:  # a failed run must not stop the next one
                log.exception("retention cleanup failed", extra={"action": "retention_failed"})
            await asyncio.sleep(self.interval_s)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
