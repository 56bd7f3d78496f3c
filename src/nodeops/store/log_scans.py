"""Reads behind log reading beyond the log API: a job's instances, a record's chunks a page at a time, the sizes
of a record's log, and the changes a job's event stream reports.

Everything here reads a bounded amount per statement (a page of chunks, a job's records without their logs), so
a caller scanning a job's whole log (search, download, archive) holds one page at a time, never the log. Raw
DBAPI cursors, as ``log_reads``; give them a cursor from ``Database.cursor`` (or ``Database.read``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nodeops.domain.log_cursor import Chunk
from nodeops.store.db import Database, ReadHandle, stored_utc

PAGE = 8  # chunks per statement (each at most ~1 MiB)

_JOB_SQL = "SELECT e.value, j.bk_biz_scope, j.status, j.statistics FROM access_epoch e LEFT JOIN jobs j ON j.id = {p}"
# the newest attempt of every instance of a job, in the order the instances were first created
_LATEST_SQL = (
    "SELECT r.id, r.instance_id, r.attempt, r.bk_host_id, r.host_key, r.status,"
    " (SELECT MIN(f.id) FROM instance_records f WHERE f.job_id = r.job_id AND f.instance_id = r.instance_id) AS first"
    " FROM instance_records r WHERE r.job_id = {p} AND r.attempt = (SELECT MAX(x.attempt) FROM instance_records x"
    " WHERE x.job_id = r.job_id AND x.instance_id = r.instance_id) ORDER BY first"
)
_STEP_CHUNKS_SQL = (
    "SELECT id, step_index, text FROM step_logs WHERE record_id = {p} AND step_index = {p} AND id > {p} AND id <= {p}"
    " ORDER BY id LIMIT {n}"
)
_RECORD_CHUNKS_SQL = (
    "SELECT id, step_index, text FROM step_logs WHERE record_id = {p} AND (step_index > {p} OR (step_index = {p}"
    " AND id > {p})) ORDER BY step_index, id LIMIT {n}"
)
_LAST_CHUNKS_SQL = (
    "SELECT id, step_index, text FROM step_logs WHERE record_id = {p} AND id < {p} ORDER BY id DESC LIMIT {n}"
)
_MAX_CHUNK_SQL = "SELECT MAX(id) FROM step_logs WHERE record_id = {p}"
_STEP_SIZES_SQL = (
    "SELECT step_index, COUNT(*), SUM({octets}) FROM step_logs WHERE record_id = {p} AND id <= {p} GROUP BY step_index"
)
_CHANGED_SQL = (
    "SELECT r.id, r.instance_id, r.attempt, r.status, r.updated_at, r.bk_host_id, r.host_key FROM instance_records r"
    " WHERE r.job_id = {p} AND r.updated_at > {p} ORDER BY r.attempt, r.id"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRow:
    """A job as log reading needs it: its businesses (for the permission rule), status and statistics."""

    job_id: int
    bk_biz_scope: frozenset[int]
    status: str
    statistics: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordRow:
    """One record of an instance, without its log."""

    record_id: int
    instance_id: str
    attempt: int
    bk_host_id: int | None
    host_key: str | None
    status: str

    @property
    def ip(self) -> str | None:
        return self.host_key.rsplit("-", 2)[0] if self.host_key else None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangedRecord:
    record: RecordRow
    updated_at: datetime


class LogScans:
    """Prepared statements for one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        p = db.paramstyle
        octets = "LENGTH(CAST(text AS BLOB))" if db.is_sqlite else "OCTET_LENGTH(text)"
        self._job = _JOB_SQL.format(p=p) + " WHERE e.id = 1"
        self._latest = _LATEST_SQL.format(p=p)
        self._record = (
            f"SELECT id, instance_id, attempt, bk_host_id, host_key, status FROM instance_records WHERE id = {p}"
        )
        self._step_chunks = _STEP_CHUNKS_SQL.format(p=p, n=PAGE)
        self._record_chunks = _RECORD_CHUNKS_SQL.format(p=p, n=PAGE)
        self._last_chunks = _LAST_CHUNKS_SQL.format(p=p, n=PAGE)
        self._max_chunk = _MAX_CHUNK_SQL.format(p=p)
        self._step_sizes = _STEP_SIZES_SQL.format(p=p, octets=octets)
        self._changed = _CHANGED_SQL.format(p=p)

    def job(self, cur: ReadHandle, job_id: int) -> tuple[int, JobRow | None]:
        """The access epoch, and the job (None when there is no such job)."""
        cur.execute(self._job, (job_id,))
        epoch, scope, status, statistics = cur.fetchone()
        if scope is None:
            return int(epoch), None
        scope = json.loads(scope) if isinstance(scope, str) else scope
        statistics = json.loads(statistics) if isinstance(statistics, str) else statistics
        return int(epoch), JobRow(
            job_id=job_id,
            bk_biz_scope=frozenset(int(b) for b in scope or ()),
            status=str(status),
            statistics=dict(statistics or {}),
        )

    def latest_records(self, cur: ReadHandle, job_id: int) -> list[RecordRow]:
        """The newest attempt of every instance of the job, in the order the instances were created."""
        cur.execute(self._latest, (job_id,))
        return [_record(row) for row in cur.fetchall()]

    def record_row(self, cur: ReadHandle, record_id: int) -> RecordRow:
        cur.execute(self._record, (record_id,))
        return _record(cur.fetchone())

    def step_page(
        self, cur: ReadHandle, record_id: int, step_index: int, after: int, up_to: int | None = None
    ) -> list[Chunk]:
        """Up to ``PAGE`` chunks of one step after chunk ``after`` (and up to ``up_to``), in order."""
        last = up_to if up_to is not None else 2**63 - 1
        cur.execute(self._step_chunks, (record_id, step_index, after, last))
        return [Chunk(int(r[0]), int(r[1]), r[2]) for r in cur.fetchall()]

    def step_chunks(self, cur: ReadHandle, record_id: int, step_index: int) -> Iterator[Chunk]:
        """One step's chunks in order, a page per statement."""
        after = 0
        while True:
            page = self.step_page(cur, record_id, step_index, after)
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1].id

    def record_chunks(self, cur: ReadHandle, record_id: int) -> Iterator[Chunk]:
        """Every chunk of the record, step by step and in order within a step, a page per statement."""
        step, after = -1, 0
        while True:
            cur.execute(self._record_chunks, (record_id, step, step, after))
            rows = cur.fetchall()
            yield from (Chunk(int(r[0]), int(r[1]), r[2]) for r in rows)
            if len(rows) < PAGE:
                return
            step, after = int(rows[-1][1]), int(rows[-1][0])

    def chunks_backwards(self, cur: ReadHandle, record_id: int) -> Iterator[Chunk]:
        """The record's chunks newest first, a page per statement."""
        before = 2**63 - 1
        while True:
            cur.execute(self._last_chunks, (record_id, before))
            rows = cur.fetchall()
            yield from (Chunk(int(r[0]), int(r[1]), r[2]) for r in rows)
            if len(rows) < PAGE:
                return
            before = int(rows[-1][0])

    def log_sizes(self, cur: ReadHandle, record_id: int) -> tuple[int, dict[int, tuple[int, int]]]:
        """The record's newest chunk id, and per step the number of chunks and their bytes up to it."""
        cur.execute(self._max_chunk, (record_id,))
        last = cur.fetchone()[0]
        if last is None:
            return 0, {}
        cur.execute(self._step_sizes, (record_id, int(last)))
        return int(last), {int(r[0]): (int(r[1]), int(r[2] or 0)) for r in cur.fetchall()}

    def changed_records(self, cur: ReadHandle, job_id: int, since: datetime) -> list[ChangedRecord]:
        """The job's records written after ``since`` (their ``updated_at``), oldest attempt first."""
        cur.execute(self._changed, (job_id, self.db.bind_time(since)))
        return [
            ChangedRecord(record=_record((row[0], row[1], row[2], row[5], row[6], row[3])), updated_at=_utc(row[4]))
            for row in cur.fetchall()
        ]


def _record(row: Sequence[Any]) -> RecordRow:
    return RecordRow(
        record_id=int(row[0]),
        instance_id=str(row[1]),
        attempt=int(row[2]),
        bk_host_id=None if row[3] is None else int(row[3]),
        host_key=row[4],
        status=str(row[5]),
    )


def _utc(value: Any) -> datetime:
    stamp = stored_utc(value)  # a NOT NULL column
    assert stamp is not None
    return stamp
