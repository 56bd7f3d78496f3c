"""``LogWriter``: every host pipeline's log lines and status changes, written to the store in batches.

Pipelines call ``line``/``step``/``record`` (cheap, in memory, never awaiting the database); one background
task flushes everything pending in one transaction every ``flush_interval_s``, or sooner when
``max_pending_bytes`` of text waits. The lines of one step that arrive together become one chunk, and each step's
and record's changes are merged, so a flush is three statements whatever the number of hosts and lines, never
one transaction per line. Text is stamped, masked (``nodeops.process_logging.redact``) and cut by ``format_lines``
before it is queued: a password never reaches the table; revoke formats its line with it too. A record that
finishes in a batch has its log API answer sealed in the same transaction (``nodeops.store.answers``).

A batch is never lost to a passing database error (``TransientStoreError``: a deadlock, a serialization
failure, a lock timeout, a lost connection): it is written again, after ``RETRY_FIRST_S`` doubling to
``RETRY_MAX_S``, until it is committed, and what was queued meanwhile waits behind it, so lines stay in order.
A batch that fails otherwise (the database refuses its rows) is held back and tried again, alone and ahead of
the rest, by the next ``MAX_FAILED_WRITES - 1`` flushes; then it is dropped with an error log counting its lines,
so one bad row cannot stop the logs of every host. Imports engine and store only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo

from nodeops import metrics
from nodeops.domain.answer import AnswerRenderer
from nodeops.domain.status import ACTIVE, Status
from nodeops.errors import LeaseLost, TransientStoreError
from nodeops.process_logging import redact
from nodeops.store import answers, cluster, jobs
from nodeops.store.db import Database
from nodeops.store.log_reads import LogReads

log = logging.getLogger(__name__)
MAX_LINE_CHARS = 8192  # a single output line longer than this is cut, so one host cannot flood memory
RETRY_FIRST_S = 0.1  # a batch that failed for a passing reason is written again after this, doubling...
RETRY_MAX_S = 5.0  # ...up to this
MAX_FAILED_WRITES = 5  # times a batch the database refuses is tried before it is dropped (and logged)


def line_stamp(tz: tzinfo, at_s: float | None = None) -> str:
    """The time of a log line written at ``at_s`` (epoch seconds, default now): ``YYYY-MM-DD HH:MM:SS`` in ``tz``."""
    return datetime.fromtimestamp(int(time.time() if at_s is None else at_s), tz).strftime("%Y-%m-%d %H:%M:%S")


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` as a log keeps it: each of ``secrets`` as ``******``, then ``redact``."""
    for secret in secrets:
        text = text.replace(secret, "******")
    return redact(text)


def format_lines(message: str, *, level: str, stamp: str, secrets: Iterable[str] = ()) -> list[str]:
    """The log lines ``message`` becomes, as every line of a step's log is written: each physical line masked
    (``mask``), cut at ``MAX_LINE_CHARS``, as ``[stamp LEVEL] text``."""
    lines = []
    for text in mask(message, secrets).splitlines() or [""]:
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " …(line cut)"
        lines.append(f"[{stamp} {level}] {text}")
    return lines


@dataclass(frozen=True, slots=True)
class _Line:
    record_id: int
    step_index: int
    text: str


_Op = _Line | jobs.StepProgress | jobs.RecordProgress


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
        renderer: AnswerRenderer | None = None,
        worker_id: str | None = None,
        on_lease_lost: Callable[[], None] | None = None,
    ) -> None:
        """``renderer`` seals finished records' answers; pass the log API's, so they are rendered alike.

        ``worker_id`` fences a cluster worker's writes: each batch is written only while that worker holds its
        lease (``store.cluster.hold_lease``, in the batch's transaction); once it does not, the batch and every
        later one are dropped, ``flush`` raises ``LeaseLost`` and ``on_lease_lost`` is called once."""
        self.db = db
        self.tz = tz
        self.flush_interval_s = flush_interval_s
        self.max_pending_bytes = max_pending_bytes
        self._secrets = secrets
        self._reads = LogReads(db)
        self._renderer = renderer or AnswerRenderer(tz)
        self._pending: list[_Op] = []
        self._pending_bytes = 0
        self._held: list[_Op] = []  # a batch the database refused: written first, alone, by the next flushes
        self._held_failures = 0
        self._held_upto = 0
        self._queued = 0  # ops queued since the start
        self._written = 0  # of those, how many are written (or dropped, as flush says): ``settled`` waits on it
        self._progress = asyncio.Condition()
        self._wakers: set[asyncio.Task[None]] = set()
        self._writing = False  # a batch's transaction is running in a thread
        self._wake = asyncio.Event()  # flush now (a full buffer, closing)
        self._queued_any = asyncio.Event()  # something was queued: an idle writer wakes up (``_run``)
        self._flushing = asyncio.Lock()  # one batch at a time, in order
        self._stamp_second = -1
        self._stamp = ""
        self._task: asyncio.Task[None] | None = None
        self._soon: asyncio.TimerHandle | None = None  # a flush asked for sooner than the next tick (``settled``)
        self._closing = False
        self._worker_id = worker_id
        self._on_lease_lost = on_lease_lost
        self.lease_lost = False

    @property
    def secrets(self) -> tuple[str, ...]:
        """The exact texts masked in every line written (passwords opened at connect time, agent tokens)."""
        return self._secrets

    def add_secret(self, secret: str) -> None:
        """Mask this exact text (a password, a token) wherever it would appear in a line."""
        if secret and secret not in self._secrets:
            self._secrets = (*self._secrets, secret)

    def line(self, record_id: int, step_index: int, level: str, message: str) -> None:
        """Queue ``message`` as ``format_lines`` writes it, stamped now."""
        second = int(time.time())
        if second != self._stamp_second:  # lines come by the hundred per second: format each second once
            self._stamp_second = second
            self._stamp = line_stamp(self.tz, second)
        for text in format_lines(message, level=level, stamp=self._stamp, secrets=self._secrets):
            self._queue(_Line(record_id, step_index, text))

    def step(
        self,
        record_id: int,
        step_index: int,
        status: Status,
        *,
        start_at: datetime | None = None,
        finish_at: datetime | None = None,
    ) -> None:
        self._queue(jobs.StepProgress(record_id, step_index, status, start_at, finish_at))

    def record(
        self, record_id: int, status: Status, *, start_at: datetime | None = None, finish_at: datetime | None = None
    ) -> None:
        self._queue(jobs.RecordProgress(record_id, status, start_at, finish_at))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="nodeops-log-writer")

    async def flush(self) -> None:
        """Write everything queued so far, in one transaction; returns once it is committed, and any batch taken
        by an earlier flush still being written with it.

        A passing database error (``TransientStoreError``) is waited out: the batch is written again, with
        backoff, until it is committed, however long that takes. Any other StoreError (or fault) is raised: the
        batch is held back and written first by the next flush, or dropped after ``MAX_FAILED_WRITES`` attempts
        (see the module's docstring). Cancelled while a write is in flight, that write still ends in its thread.
        """
        async with self._flushing:
            if self.lease_lost:
                self._held, self._pending, self._pending_bytes = [], [], 0
                raise LeaseLost(self._worker_id or "")
            if self._held:
                await self._write_held()
                await self._advance(self._held_upto)
            batch, self._pending, self._pending_bytes = self._pending, [], 0
            upto = self._queued
            if not batch:
                await self._advance(upto)
                return
            try:
                await self._write_until_done(batch)
            except LeaseLost:
                self._lose_lease()
                raise
            except asyncio.CancelledError:
                if not self._writing:  # cancelled between two tries: nobody is writing it
                    self._requeue(batch)
                self._writing = False
                raise
            except Exception:
                metrics.LOG_FLUSH_FAILURES.labels("refused").inc()
                self._held, self._held_failures, self._held_upto = batch, 1, upto
                raise
            await self._advance(upto)

    async def settled(self, *, within_s: float | None = None) -> None:
        """Until everything queued so far is written (or dropped, as ``flush`` says), by the background task's
        next flush: pipelines ending together share its one transaction rather than forcing one each. With
        ``within_s``, that flush comes at most this much later than now, not at the next tick: whoever waits for
        it is held no longer (those settling within the same ``within_s`` still share it). Raises LeaseLost when
        the worker's lease is gone; flushes itself when no background task runs."""
        target = self._queued
        if self._task is None or self._task.done():
            await self.flush()
            return
        if within_s is not None and self._written < target:
            loop = asyncio.get_running_loop()
            if self._soon is None or self._soon.when() > loop.time() + within_s:
                if self._soon is not None:
                    self._soon.cancel()
                self._soon = loop.call_later(within_s, self._flush_soon)
        async with self._progress:
            await self._progress.wait_for(lambda: self._written >= target or self.lease_lost)
        if self._written < target:
            raise LeaseLost(self._worker_id or "")

    async def _advance(self, upto: int) -> None:
        if upto > self._written:
            self._written = upto
            async with self._progress:
                self._progress.notify_all()

    async def _write_held(self) -> None:
        held = self._held
        try:
            await self._write_until_done(held)
        except asyncio.CancelledError:
            if self._writing:  # handed over to the thread writing it
                self._held, self._held_failures = [], 0
            self._writing = False
            raise
        except LeaseLost:
            self._lose_lease()
            raise
        except Exception:
            self._held_failures += 1
            if self._held_failures < MAX_FAILED_WRITES:
                metrics.LOG_FLUSH_FAILURES.labels("refused").inc()
                raise
            metrics.LOG_FLUSH_FAILURES.labels("dropped").inc()
            self._held, self._held_failures = [], 0
            lines = sum(isinstance(op, _Line) for op in held)
            log.error(
                "dropped a batch of %d log lines and %d status changes: the database refused it %d times",
                lines,
                len(held) - lines,
                MAX_FAILED_WRITES,
                extra={"action": "log_batch_dropped", "lines": lines, "record_ids": sorted(_records_of(held))},
            )
            return  # what was queued after it is written as usual
        self._held, self._held_failures = [], 0

    async def _write_until_done(self, batch: list[_Op]) -> None:
        """Write ``batch`` in one transaction, again and again while it fails for a passing reason."""
        delay_s = RETRY_FIRST_S
        while True:
            self._writing = True  # stays True when cancelled meanwhile: the thread goes on with the batch
            try:
                await self.db.call(functools.partial(self._write, batch))
            except TransientStoreError:
                self._writing = False
                metrics.LOG_FLUSH_FAILURES.labels("transient").inc()
                log.warning(
                    "writing logs failed for a passing reason; trying the same batch again in %.1f s",
                    delay_s,
                    extra={"action": "log_flush_retry", "ops": len(batch)},
                )
            except asyncio.CancelledError:
                raise
            except BaseException:
                self._writing = False
                raise
            else:
                self._writing = False
                return
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RETRY_MAX_S)

    def _lose_lease(self) -> None:
        """The worker's lease is gone: nothing queued or held is written, ever."""
        self.lease_lost = True
        self._held, self._pending, self._pending_bytes = [], [], 0
        if self._on_lease_lost is not None:
            self._on_lease_lost()
        waking = asyncio.get_running_loop().create_task(self._wake_settled(), name="nodeops-lease-lost")
        self._wakers.add(waking)
        waking.add_done_callback(self._wakers.discard)

    async def _wake_settled(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    def _flush_soon(self) -> None:
        self._soon = None
        self._wake.set()

    def _requeue(self, batch: list[_Op]) -> None:
        """Put a batch not written back in front of what was queued since, in its order."""
        self._pending[:0] = batch
        self._pending_bytes += sum(len(op.text) for op in batch if isinstance(op, _Line))

    async def aclose(self) -> None:
        """Flush what is left and stop the background task."""
        self._closing = True
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        self._wake.set()
        self._queued_any.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    def _queue(self, op: _Op) -> None:
        self._queued += 1
        self._pending.append(op)
        if not self._queued_any.is_set():
            self._queued_any.set()
        if isinstance(op, _Line):
            self._pending_bytes += len(op.text)
            if self._pending_bytes >= self.max_pending_bytes:
                self._wake.set()

    async def _run(self) -> None:
        """Flush every ``flush_interval_s`` (sooner when woken) while there is anything to write; with nothing
        queued, sleep without a timer until something is, then flush at the next tick of the same clock."""
        loop = asyncio.get_running_loop()
        ticks_from = loop.time()
        while not self._closing:
            if not self._pending and not self._held:
                self._queued_any.clear()
                await self._queued_any.wait()
                continue
            wait_s = self.flush_interval_s - (loop.time() - ticks_from) % self.flush_interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
            self._wake.clear()
            try:
                await self.flush()
            except LeaseLost:
                return
            except Exception:  # a refused batch is held back or dropped by flush; logging goes on
                log.exception("writing logs failed", extra={"action": "log_flush_failed"})

    def _write(self, batch: list[_Op]) -> None:
        """One transaction for the batch: the lines of each step joined into one chunk (in order), each step's and
        record's changes merged into their final values (``write_progress`` touches every record concerned once)."""
        chunks: dict[tuple[int, int], list[str]] = {}
        steps: dict[tuple[int, int], jobs.StepProgress] = {}
        records: dict[int, jobs.RecordProgress] = {}
        for op in batch:
            if isinstance(op, _Line):
                key = (op.record_id, op.step_index)
                lines = chunks.get(key)
                if lines is None:
                    chunks[key] = [op.text]
                else:
                    lines.append(op.text)
            elif isinstance(op, jobs.StepProgress):
                key = (op.record_id, op.step_index)
                before = steps.get(key)
                steps[key] = jobs.StepProgress(
                    op.record_id,
                    op.step_index,
                    op.status,
                    op.start_at or (before.start_at if before else None),
                    op.finish_at or (before.finish_at if before else None),
                )
            else:
                known = records.get(op.record_id)
                records[op.record_id] = jobs.RecordProgress(
                    op.record_id,
                    op.status,
                    op.start_at or (known.start_at if known else None),
                    op.finish_at or (known.finish_at if known else None),
                )
        finished = [r.record_id for r in records.values() if r.status is not None and r.status not in ACTIVE]
        rows = [(record_id, index, "\n".join(lines)) for (record_id, index), lines in chunks.items()]
        started_s = time.perf_counter()
        try:
            self._commit(rows, list(steps.values()), list(records.values()), finished)
        finally:
            metrics.LOG_FLUSH_SECONDS.observe(time.perf_counter() - started_s)
        metrics.LOG_LINES.inc(sum(len(lines) for lines in chunks.values()))
        metrics.LOG_BYTES.inc(sum(len(text.encode()) for _record_id, _index, text in rows))

    def _commit(
        self,
        chunks: list[tuple[int, int, str]],
        steps: list[jobs.StepProgress],
        records: list[jobs.RecordProgress],
        finished: list[int],
    ) -> None:
        """The batch's one transaction (``_write``'s), fenced by the worker's lease when there is one."""
        with self.db.session() as session:
            if self._worker_id is not None and not cluster.hold_lease(session, worker_id=self._worker_id):
                raise LeaseLost(self._worker_id or "")
            jobs.write_progress(self.db, session, chunks=chunks, steps=steps, records=records)
            if finished:  # last: after every line and status change of this batch
                answers.seal(session, self._reads, self._renderer, finished)


def _records_of(batch: list[_Op]) -> set[int]:
    return {op.record_id for op in batch}
