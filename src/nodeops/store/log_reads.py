"""The log API's reads, on a raw DBAPI connection: the job, the record of an instance, and its steps' logs.

This is the hot path of the service, so it skips the ORM: one statement finds the access epoch, the job, the
instance's record and, when the record has finished, its sealed answer (``store.answers``), by primary key and
index lookups. Only a record without a current sealed answer costs a second statement, which reads the
instance's whole log (every step, every chunk) as a single range scan of ``(record_id, step_index, id)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any, NamedTuple

from nodeops.domain.answer import DEFAULT_STEP_MAX_BYTES, StepLog
from nodeops.domain.instance_id import InstanceId
from nodeops.domain.log_cursor import Chunk
from nodeops.domain.status import ACTIVE
from nodeops.store import instances
from nodeops.store.db import AheadRead, Database, ReadHandle, Statement
from nodeops.store.instances import key_of

# The three values below are built on every log request: NamedTuples are immutable like frozen dataclasses and
# build faster (RecordRef in half the time: a frozen dataclass sets each field through object.__setattr__).


class JobAccess(NamedTuple):
    """What the log API needs to know about a job before reading: it exists, and its businesses."""

    job_id: int
    bk_biz_scope: frozenset[int]


class RecordRef(NamedTuple):
    """The record chosen for an instance, and how many attempts the instance has in this job."""

    record_id: int | None  # None when the asked attempt does not exist
    revision: int  # of the chosen record (see InstanceRecord.revision)
    attempts: int
    answer: bytes | None = None  # its sealed answer, when current for this revision and zone
    attempt: int = 0  # of the chosen record
    instance_id: str = ""  # of the chosen record, in the form it was created with


class Lookup(NamedTuple):
    """What one ``look_up`` found: the access epoch, and the job and record when they exist."""

    epoch: int
    job: JobAccess | None
    record: RecordRef | None


# One statement answers everything the log API needs: the access epoch (which always has its row), the job's
# business scope (NULL: no such job), the instance's records, newest attempt first (NULL: no such instance),
# each with its sealed answer when that is current. Each join is a primary-key or composite-index lookup.
_LOOKUP_SQL = (
    "SELECT e.value, CAST(j.bk_biz_scope AS TEXT), r.id, r.attempt, r.revision, a.body, r.instance_id"
    " FROM access_epoch e"
    " LEFT JOIN jobs j ON j.id = {p}"
    " LEFT JOIN instance_records r ON r.job_id = j.id AND {match}"
    " LEFT JOIN record_answers a ON a.record_id = r.id AND a.revision = r.revision AND a.zone = {p}"
    " WHERE e.id = 1 ORDER BY r.attempt DESC"
)
# PostgreSQL: the lookups of a batch of requests in one statement (``LogReads.lookups_ahead``): for each (job_id,
# value) pair of the two arrays, the rows ``_LOOKUP_SQL`` gives for it, led by the pair's position. LATERAL makes
# each pair a lookup of its own by the same keys and indexes (never a scan of jobs, however many there are).
_LOOKUP_MANY_SQL = (
    "SELECT q.n, e.value, x.scope, x.id, x.attempt, x.revision, x.body, x.instance_id"
    " FROM unnest(%s::bigint[], %s::{value_type}[]) WITH ORDINALITY AS q(job_id, value, n)"
    " JOIN access_epoch e ON e.id = 1"
    " LEFT JOIN LATERAL ("
    "  SELECT CAST(j.bk_biz_scope AS TEXT) AS scope, r.id, r.attempt, r.revision, a.body, r.instance_id"
    "  FROM jobs j"
    "  LEFT JOIN instance_records r ON r.job_id = j.id AND {match}"
    "  LEFT JOIN record_answers a ON a.record_id = r.id AND a.revision = r.revision AND a.zone = %s"
    "  WHERE j.id = q.job_id"
    " ) x ON true"
    " ORDER BY q.n, x.attempt DESC"
)
# A step's chunks past its cap are not sent: only their size in bytes, for the marker that says how much is left.
# The cut is decided in characters (never more than bytes), so every chunk that may hold text below the cap in
# bytes is sent, and the renderer cuts exactly (``domain.answer.cap_text``).
_PAST_CAP = "COALESCE(SUM(LENGTH(l.text)) OVER w, 0) - COALESCE(LENGTH(l.text), 0) > {p}"
_CAPPED_TEXT = "CASE WHEN " + _PAST_CAP + " THEN NULL ELSE l.text END, CASE WHEN " + _PAST_CAP + " THEN {octets} END"


def capped_chunk_columns(p: str, *, is_sqlite: bool) -> str:
    """The two columns that read a chunk of ``step_logs l`` within its step's cap (its text, or NULL past the cap)
    and past it (NULL, or the chunk's size in bytes), ``p`` the placeholder: for a statement with a window ``w``
    over each step's chunks in order, taking the cap in bytes twice as its first two parameters."""
    return _CAPPED_TEXT.format(p=p, octets=_octets(is_sqlite))


def _octets(is_sqlite: bool) -> str:
    return "LENGTH(CAST(l.text AS BLOB))" if is_sqlite else "OCTET_LENGTH(l.text)"


_STEPS_SQL = (
    "SELECT s.step_index, s.name, s.status, s.start_at, s.finish_at, " + _CAPPED_TEXT + ""
    " FROM record_steps s LEFT JOIN step_logs l ON l.record_id = s.record_id AND l.step_index = s.step_index"
    " WHERE s.record_id = {p}"
    " WINDOW w AS (PARTITION BY s.step_index ORDER BY l.id ROWS UNBOUNDED PRECEDING)"
    " ORDER BY s.step_index, l.id"
)
# The steps of the finished records among some, with each record's revision, for sealing their answers.
_FINISHED_STEPS_SQL = (
    "SELECT r.id, r.revision, r.job_id, r.instance_id, r.attempt, s.step_index, s.name, s.status, s.start_at,"
    " s.finish_at, " + _CAPPED_TEXT + ""
    " FROM instance_records r JOIN record_steps s ON s.record_id = r.id"
    " LEFT JOIN step_logs l ON l.record_id = s.record_id AND l.step_index = s.step_index"
    " WHERE r.id IN ({ids}) AND r.status NOT IN ({active})"
    " WINDOW w AS (PARTITION BY r.id, s.step_index ORDER BY l.id ROWS UNBOUNDED PRECEDING)"
    " ORDER BY r.id, s.step_index, l.id"
)
FETCH_ROWS = 64  # rows fetched at once while reading a record's chunks
CHUNK_PAGE = 8  # chunks read per statement when reading on from a cursor (each at most ~1 MiB)
# A record's status and its steps without their logs: what a tail answer reports besides the new text.
_STATE_SQL = (
    "SELECT r.status, s.step_index, s.name, s.status, s.start_at, s.finish_at"
    " FROM instance_records r JOIN record_steps s ON s.record_id = r.id WHERE r.id = {p} ORDER BY s.step_index"
)
# The chunks of a record from an id on, in the order they were written: a range scan of (record_id, id).
_CHUNKS_AFTER_SQL = (
    "SELECT id, step_index, text FROM step_logs WHERE record_id = {p} AND id >= {p} ORDER BY id LIMIT {n}"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FinishedRecord:
    """A finished record's steps (capped as ``fetch_steps``), with what its sealed answer is keyed by."""

    revision: int
    job_id: int | None
    instance_id: str
    attempt: int
    steps: list[StepLog]


class LogReads:
    """Prepared reads for one database; call from ``Database.read`` so PostgreSQL runs off the event loop."""

    def __init__(self, db: Database) -> None:
        self.db = db
        p = db.paramstyle
        self._lookup_sql = {
            column: _LOOKUP_SQL.format(p=p, match=instances.sql_condition(column, table="r", param=p))
            for column in instances.COLUMNS
        }
        self._lookup_many_sql = {
            column: _LOOKUP_MANY_SQL.format(
                value_type="bigint" if column == instances.BK_HOST_ID else "text",
                match=instances.sql_condition(column, table="r", param="q.value"),
            )
            for column in instances.COLUMNS
        }
        # bytes of a chunk's text in UTF-8
        self._octets = _octets(db.is_sqlite)
        self._steps_sql = _STEPS_SQL.format(p=p, octets=self._octets)
        self._state_sql = _STATE_SQL.format(p=p)
        self._chunks_after_sql = _CHUNKS_AFTER_SQL.format(p=p, n=CHUNK_PAGE)
        # SQLite hands back DATETIME columns as text; PostgreSQL as naive datetimes (both UTC, see models).
        self._time = _sqlite_time if db.is_sqlite else _naive_utc

    def look_up(
        self,
        cur: ReadHandle,
        job_id: int,
        instance: InstanceId,
        attempt: int | None,
        zone: str,
        *,
        record_id: int | None = None,
    ) -> Lookup:
        """The access epoch, the job and the record of ``instance`` in it (newest attempt, or the one asked, or
        the record ``record_id`` when it is one of the instance's), with the record's sealed answer when there is
        one for its current revision rendered in ``zone``.

        The instance's records are those ``store.instances`` finds (a host by either identity, whatever form
        the job was created with). One statement, one round trip.
        """
        cur.execute(*self.lookup_statement(job_id, instance, zone))
        rows = cur.fetchall()
        epoch, scope = int(rows[0][0]), rows[0][1]
        if scope is None:
            return Lookup(epoch=epoch, job=None, record=None)
        job = JobAccess(job_id=job_id, bk_biz_scope=_biz_scope(scope))
        if rows[0][2] is None:
            return Lookup(epoch=epoch, job=job, record=None)
        attempts = int(rows[0][3])
        if record_id is not None and attempt is None:
            chosen = next((r for r in rows if int(r[2]) == record_id), rows[0])
        else:
            chosen = rows[0] if attempt is None else next((r for r in rows if int(r[3]) == attempt), None)
        if chosen is None:
            record = RecordRef(record_id=None, revision=0, attempts=attempts)
        else:
            answer = chosen[5] if chosen[5] is None or isinstance(chosen[5], bytes) else bytes(chosen[5])
            record = RecordRef(
                record_id=int(chosen[2]),
                revision=int(chosen[4]),
                attempts=attempts,
                answer=answer,
                attempt=int(chosen[3]),
                instance_id=str(chosen[6]),
            )
        return Lookup(epoch=epoch, job=job, record=record)

    def lookup_statement(self, job_id: int, instance: InstanceId, zone: str) -> Statement:
        """The one statement ``look_up`` runs for these arguments (whatever attempt or record it then picks), to
        send ahead with others (``Database.read_batch``'s ``prefetch``)."""
        column, value = key_of(instance)
        return self._lookup_sql[column], (job_id, value, zone)

    def lookups_ahead(self, wanted: Sequence[tuple[int, InstanceId]], zone: str) -> list[AheadRead]:
        """PostgreSQL: the lookups of all of ``wanted`` ((job_id, instance) pairs) in one statement per kind of
        instance_id among them (nearly always one), each answering every pair's ``lookup_statement`` with its
        rows: ``Database.read_batch``'s ``ahead``, so the requests of a batch cost one round trip, not one each."""
        by_column: dict[str, list[tuple[int, int | str]]] = {}
        for job_id, instance in wanted:
            column, value = key_of(instance)
            by_column.setdefault(column, []).append((job_id, value))
        return [
            AheadRead(
                sql=self._lookup_many_sql[column],
                params=([job_id for job_id, _ in pairs], [value for _, value in pairs], zone),
                answers=partial(_answer_lookups, self._lookup_sql[column], pairs, zone),
            )
            for column, pairs in by_column.items()
        ]

    def fetch_steps(self, cur: ReadHandle, record_id: int, *, max_bytes: int = DEFAULT_STEP_MAX_BYTES) -> list[StepLog]:
        """Every step of the record in plan order, each with its log chunks joined by newlines, up to about
        ``max_bytes`` of each step (the rest is only counted, in ``StepLog.omitted_bytes``).

        Times come back at whole seconds, the precision the API shows.
        """
        cur.execute(self._steps_sql, (max_bytes, max_bytes, record_id))
        return [step for _record, step in _steps_of(_rows(cur), 0, self._time)]

    def fetch_finished(
        self, cur: ReadHandle, record_ids: Sequence[int], *, max_bytes: int = DEFAULT_STEP_MAX_BYTES
    ) -> dict[int, FinishedRecord]:
        """The steps of each finished record among ``record_ids`` (as ``fetch_steps``), with its revision, read
        in one statement so each revision matches its steps. Records still PENDING or RUNNING are left out."""
        if not record_ids:
            return {}
        p = self.db.paramstyle
        active = sorted(status.value for status in ACTIVE)
        sql = _FINISHED_STEPS_SQL.format(
            p=p, octets=self._octets, ids=", ".join([p] * len(record_ids)), active=", ".join([p] * len(active))
        )
        cur.execute(sql, (max_bytes, max_bytes, *record_ids, *active))
        finished: dict[int, FinishedRecord] = {}
        for (record_id, revision, job_id, instance_id, attempt), step in _steps_of(_rows(cur), 5, self._time):
            record = finished.get(int(record_id))
            if record is None:
                record = finished[int(record_id)] = FinishedRecord(
                    revision=int(revision),
                    job_id=None if job_id is None else int(job_id),
                    instance_id=str(instance_id),
                    attempt=int(attempt),
                    steps=[],
                )
            record.steps.append(step)
        return finished

    def fetch_state(self, cur: ReadHandle, record_id: int) -> tuple[str, list[StepLog]]:
        """The record's status and its steps in plan order, with empty logs."""
        cur.execute(self._state_sql, (record_id,))
        rows = cur.fetchall()
        status = str(rows[0][0]) if rows else "PENDING"
        steps = [
            StepLog(
                index=int(r[1]), name=r[2], status=r[3], start_at=self._time(r[4]), finish_at=self._time(r[5]), log=""
            )
            for r in rows
        ]
        return status, steps

    def chunks_after(self, cur: ReadHandle, record_id: int, chunk_id: int) -> Iterator[Chunk]:
        """The record's chunks with ids from ``chunk_id`` on, in id order, read a page at a time as they are
        consumed (stop iterating and nothing more is read)."""
        while True:
            cur.execute(self._chunks_after_sql, (record_id, chunk_id))
            rows = cur.fetchall()
            for row in rows:
                yield Chunk(int(row[0]), int(row[1]), row[2])
            if len(rows) < CHUNK_PAGE:
                return
            chunk_id = int(rows[-1][0]) + 1


def _rows(cur: ReadHandle) -> Iterator[tuple[Any, ...]]:
    """The cursor's rows, fetched a few at a time (a capped step's rows past the cap carry no text)."""
    while batch := cur.fetchmany(FETCH_ROWS):
        yield from batch


@lru_cache(maxsize=4096)
def _biz_scope(text: str) -> frozenset[int]:
    return frozenset(int(b) for b in json.loads(text or "[]"))


def _steps_of(rows: Iterable[tuple[Any, ...]], lead: int, to_time: Any) -> Iterator[tuple[tuple[Any, ...], StepLog]]:
    """Rows of ``lead`` leading columns then (step_index, name, status, start_at, finish_at, chunk text, bytes
    of a chunk left out), in order, as one StepLog per step with its chunks joined, each with its leading
    columns."""
    current: tuple[Any, ...] | None = None
    texts: list[str] = []
    omitted = 0
    for row in rows:
        if current is None or row[: lead + 1] != current[: lead + 1]:
            if current is not None:
                yield current[:lead], _step(current[lead:], texts, omitted, to_time)
            current, texts, omitted = row, [], 0
        if row[-2] is not None:
            texts.append(row[-2])
        elif row[-1] is not None:
            omitted += int(row[-1]) + 1  # with the newline that joins it
    if current is not None:
        yield current[:lead], _step(current[lead:], texts, omitted, to_time)


def _step(row: tuple[Any, ...], texts: list[str], omitted: int, to_time: Any) -> StepLog:
    return StepLog(
        index=int(row[0]),
        name=row[1],
        status=row[2],
        start_at=to_time(row[3]),
        finish_at=to_time(row[4]),
        log="\n".join(texts),
        omitted_bytes=omitted,
    )


def _sqlite_time(value: str | None) -> datetime | None:
    return None if value is None else _sqlite_second(value[:19])


@lru_cache(maxsize=4096)
def _sqlite_second(text: str) -> datetime:
    # the same second recurs across steps and records; parsing it once saves most of the row cost
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _naive_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(microsecond=0, tzinfo=UTC)


def _answer_lookups(
    single: str, pairs: Sequence[tuple[int, int | str]], zone: str, rows: Sequence[Any]
) -> dict[Statement, list[Any]]:
    """Each pair's own lookup statement, with its rows out of the batch statement's (numbered by pair, from 1)."""
    grouped: list[list[Any]] = [[] for _ in pairs]
    for row in rows:
        grouped[row[0] - 1].append(row[1:])
    return {(single, (job_id, value, zone)): its for (job_id, value), its in zip(pairs, grouped, strict=True)}
