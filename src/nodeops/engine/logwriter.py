"""``LogWriter``: every host pipeline's log lines and status changes, written to the store in batches.

Pipelines call ``line``/``step``/``record`` (cheap, in memory, never awaiting the database); one background
task flushes everything pending in one transaction every ``flush_interval_s``, or sooner when
``max_pending_bytes`` of text waits. Lines of one step that arrive together become one chunk (one INSERT),
so a chatty command costs a few statements per flush, never one transaction per line. Text is masked by
``nodeops.logs.redact`` before it is queued: a password never reaches the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, tzinfo

from nodeops.domain.status import Status
from nodeops.logs import redact
from nodeops.store import jobs
from nodeops.store.db import Database
from nodeops.store.models import utcnow

log = logging.getLogger(__name__)
MAX_LINE_CHARS = 8192  # a single output line longer than this is cut, so one host cannot flood memory


@dataclass(frozen=True, slots=True)
class _Line:
    record_id: int
    step_index: int
    text: str


@dataclass(frozen=True, slots=True)
class _StepChange:
    record_id: int
    step_index: int
    status: Status
    start_at: datetime | None
    finish_at: datetime | None


@dataclass(frozen=True, slots=True)
class _RecordChange:
    record_id: int
    status: Status
    start_at: datetime | None
    finish_at: datetime | None


_Op = _Line | _StepChange | _RecordChange


class LogWriter:
    """Batches log lines and status changes; start with ``start()``, end with ``aclose()``."""

    def __init__(
        self,
        db: Database,
        tz: tzinfo,
        *,
        flush_interval_s: float = 0.2,
        max_pending_bytes: int = 1 << 20,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.db = db
        self.tz = tz
        self.flush_interval_s = flush_interval_s
        self.max_pending_bytes = max_pending_bytes
        self._secrets = secrets
        self._pending: list[_Op] = []
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        # one flush at a time: a flush that returned must find everything queued before it written, even when
        # the background flush had taken that batch and was still writing it
        self._flushing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def add_secret(self, secret: str) -> None:
        """Mask this exact text (a password, a token) wherever it would appear in a line."""
        if secret and secret not in self._secrets:
            self._secrets = (*self._secrets, secret)

    def line(self, record_id: int, step_index: int, level: str, message: str) -> None:
        """Queue ``[YYYY-MM-DD HH:MM:SS LEVEL] message`` (each physical line of a multi-line message)."""
        stamp = utcnow().astimezone(self.tz).strftime("%Y-%m-%d %H:%M:%S")
        text = self._mask(message)
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " …(line cut)"
        self._queue(_Line(record_id, step_index, f"[{stamp} {level}] {text}"))

    def step(
        self,
        record_id: int,
        step_index: int,
        status: Status,
        *,
        start_at: datetime | None = None,
        finish_at: datetime | None = None,
    ) -> None:
        self._queue(_StepChange(record_id, step_index, status, start_at, finish_at))

    def record(
        self, record_id: int, status: Status, *, start_at: datetime | None = None, finish_at: datetime | None = None
    ) -> None:
        self._queue(_RecordChange(record_id, status, start_at, finish_at))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="nodeops-log-writer")

    async def flush(self) -> None:
        """Write everything queued so far, in one transaction; returns once it (and any flush under way) is
        written."""
        async with self._flushing:
            batch, self._pending, self._pending_bytes = self._pending, [], 0
            if batch:
                await self.db.call(lambda: self._write(batch))

    async def aclose(self) -> None:
        """Flush what is left and stop the background task."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "******")
        return redact(text)

    def _queue(self, op: _Op) -> None:
        self._pending.append(op)
        if isinstance(op, _Line):
            self._pending_bytes += len(op.text)
            if self._pending_bytes >= self.max_pending_bytes:
                self._wake.set()

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.flush_interval_s)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # a failed flush must not stop logging; the next flush retries new lines
                log.exception("writing logs failed", extra={"action": "log_flush_failed"})

    def _write(self, batch: list[_Op]) -> None:
        with self.db.session() as session:
            chunk: list[str] = []
            key: tuple[int, int] | None = None
            chunks: list[tuple[int, int, str]] = []
            for op in batch:
                if isinstance(op, _Line):
                    if key != (op.record_id, op.step_index) and chunk:
                        assert key is not None
                        chunks.append((key[0], key[1], "\n".join(chunk)))
                        chunk = []
                    key = (op.record_id, op.step_index)
                    chunk.append(op.text)
                    continue
                if chunk:  # keep lines before a status change ahead of it
                    assert key is not None
                    chunks.append((key[0], key[1], "\n".join(chunk)))
                    chunk, key = [], None
                jobs.append_logs(session, chunks)
                chunks = []
                if isinstance(op, _StepChange):
                    jobs.set_step(
                        session,
                        record_id=op.record_id,
                        step_index=op.step_index,
                        status=op.status,
                        start_at=op.start_at,
                        finish_at=op.finish_at,
                    )
                else:
                    jobs.set_record(
                        session, record_id=op.record_id, status=op.status, start_at=op.start_at, finish_at=op.finish_at
                    )
            if chunk:
                assert key is not None
                chunks.append((key[0], key[1], "\n".join(chunk)))
            jobs.append_logs(session, chunks)
