"""The log API's reads, on a raw DBAPI connection: the job, the record of an instance, and its steps' logs.

This is the hot path of the service, so it skips the ORM: one statement finds the access epoch, the job, the
instance's record and, when the record has finished, its sealed answer (``store.answers``), by primary key and
index lookups. Only a record without a current sealed answer costs a second statement, which reads the
instance's whole log (every step, every chunk) as a single range scan of ``(record_id, step_index, id)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from nodeops.domain.answer import StepLog
from nodeops.domain.instance_id import InstanceId
from nodeops.domain.status import ACTIVE
from nodeops.store.db import Database


@dataclass(frozen=True, slots=True, kw_only=True)
class JobAccess:
    """What the log API needs to know about a job before reading: it exists, and its businesses."""

    job_id: int
    bk_biz_scope: frozenset[int]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordRef:
    """The record chosen for an instance, and how many attempts the instance has in this job."""

    record_id: int | None  # None when the asked attempt does not exist
    revision: int  # of the chosen record (see InstanceRecord.revision)
    attempts: int
    answer: bytes | None = None  # its sealed answer, when current for this revision and zone


@dataclass(frozen=True, slots=True, kw_only=True)
class Lookup:
    """What one ``look_up`` found: the access epoch, and the job and record when they exist."""

    epoch: int
    job: JobAccess | None
    record: RecordRef | None


# One statement answers everything the log API needs: the access epoch (which always has its row), the job's
# business scope (NULL: no such job), the instance's records, newest attempt first (NULL: no such instance),
# each with its sealed answer when that is current. Each join is a primary-key or composite-index lookup.
_LOOKUP_SQL = (
    "SELECT e.value, j.bk_biz_scope, r.id, r.attempt, r.revision, a.body FROM access_epoch e"
    " LEFT JOIN jobs j ON j.id = {p}"
    " LEFT JOIN instance_records r ON r.job_id = j.id AND r.{column} = {p}"
    " LEFT JOIN record_answers a ON a.record_id = r.id AND a.revision = r.revision AND a.zone = {p}"
    " WHERE e.id = 1 ORDER BY r.attempt DESC"
)
_STEPS_SQL = (
    "SELECT s.step_index, s.name, s.status, s.start_at, s.finish_at, l.text"
    " FROM record_steps s LEFT JOIN step_logs l ON l.record_id = s.record_id AND l.step_index = s.step_index"
    " WHERE s.record_id = {p} ORDER BY s.step_index, l.id"
)
# The steps of the finished records among some, with each record's revision, for sealing their answers.
_FINISHED_STEPS_SQL = (
    "SELECT r.id, r.revision, s.step_index, s.name, s.status, s.start_at, s.finish_at, l.text"
    " FROM instance_records r JOIN record_steps s ON s.record_id = r.id"
    " LEFT JOIN step_logs l ON l.record_id = s.record_id AND l.step_index = s.step_index"
    " WHERE r.id IN ({ids}) AND r.status NOT IN ({active}) ORDER BY r.id, s.step_index, l.id"
)


class LogReads:
    """Prepared reads for one database; call from ``Database.read`` so PostgreSQL runs off the event loop."""

    def __init__(self, db: Database) -> None:
        self.db = db
        p = db.paramstyle
        self._lookup_sql = {
            column: _LOOKUP_SQL.format(p=p, column=column) for column in ("instance_id", "bk_host_id", "host_key")
        }
        self._steps_sql = _STEPS_SQL.format(p=p)
        # SQLite hands back DATETIME columns as text; PostgreSQL as naive datetimes (both UTC, see models).
        self._time = _sqlite_time if db.is_sqlite else _naive_utc

    def look_up(self, cur: Any, job_id: int, instance: InstanceId, attempt: int | None, zone: str) -> Lookup:
        """The access epoch, the job and the record of ``instance`` in it (newest attempt, or the one asked),
        with the record's sealed answer when there is one for its current revision rendered in ``zone``.

        A host is found by either identity (``bk_host_id`` or host key) whatever form the job was created
        with. One statement, one round trip.
        """
        column: str
        value: Any
        if (host_id := instance.bk_host_id) is not None:
            column, value = "bk_host_id", host_id
        elif instance.is_host_instance:  # a parsed host instance's id is its normalised host key
            column, value = "host_key", instance.id
        else:
            column, value = "instance_id", str(instance)
        cur.execute(self._lookup_sql[column], (job_id, value, zone))
        rows = cur.fetchall()
        epoch, scope = int(rows[0][0]), rows[0][1]
        if scope is None:
            return Lookup(epoch=epoch, job=None, record=None)
        if not isinstance(scope, str):  # SQLite returns JSON as text, PostgreSQL as a list
            scope = json.dumps(scope)
        job = JobAccess(job_id=job_id, bk_biz_scope=_biz_scope(scope))
        if rows[0][2] is None:
            return Lookup(epoch=epoch, job=job, record=None)
        attempts = int(rows[0][3])
        chosen = rows[0] if attempt is None else next((r for r in rows if int(r[3]) == attempt), None)
        if chosen is None:
            record = RecordRef(record_id=None, revision=0, attempts=attempts)
        else:
            answer = chosen[5] if chosen[5] is None or isinstance(chosen[5], bytes) else bytes(chosen[5])
            record = RecordRef(record_id=int(chosen[2]), revision=int(chosen[4]), attempts=attempts, answer=answer)
        return Lookup(epoch=epoch, job=job, record=record)

    def fetch_steps(self, cur: Any, record_id: int) -> list[StepLog]:
        """Every step of the record in plan order, each with its log chunks joined by newlines.

        Times come back at whole seconds, the precision the API shows.
        """
        cur.execute(self._steps_sql, (record_id,))
        return [step for _record, step in _steps_of(cur.fetchall(), 0, self._time)]

    def fetch_finished(self, cur: Any, record_ids: Sequence[int]) -> dict[int, tuple[int, list[StepLog]]]:
        """The steps of each finished record among ``record_ids`` (as ``fetch_steps``), with its revision, read
        in one statement so each revision matches its steps. Records still PENDING or RUNNING are left out."""
        if not record_ids:
            return {}
        p = self.db.paramstyle
        active = sorted(status.value for status in ACTIVE)
        sql = _FINISHED_STEPS_SQL.format(ids=", ".join([p] * len(record_ids)), active=", ".join([p] * len(active)))
        cur.execute(sql, (*record_ids, *active))
        finished: dict[int, tuple[int, list[StepLog]]] = {}
        for (record_id, revision), step in _steps_of(cur.fetchall(), 2, self._time):
            finished.setdefault(int(record_id), (int(revision), []))[1].append(step)
        return finished


@lru_cache(maxsize=4096)
def _biz_scope(text: str) -> frozenset[int]:
    return frozenset(int(b) for b in json.loads(text or "[]"))


def _steps_of(rows: list[tuple[Any, ...]], lead: int, to_time: Any) -> Iterator[tuple[tuple[Any, ...], StepLog]]:
    """Rows of ``lead`` leading columns then (step_index, name, status, start_at, finish_at, chunk text), in
    order, as one StepLog per step with its chunks joined, each with its leading columns."""
    current: tuple[Any, ...] | None = None
    texts: list[str] = []
    for row in rows:
        if current is None or row[: lead + 1] != current[: lead + 1]:
            if current is not None:
                yield current[:lead], _step(current[lead:], texts, to_time)
            current, texts = row, []
        if row[-1] is not None:
            texts.append(row[-1])
    if current is not None:
        yield current[:lead], _step(current[lead:], texts, to_time)


def _step(row: tuple[Any, ...], texts: list[str], to_time: Any) -> StepLog:
    return StepLog(
        index=int(row[0]),
        name=row[1],
        status=row[2],
        start_at=to_time(row[3]),
        finish_at=to_time(row[4]),
        log="\n".join(texts),
    )


def _sqlite_time(value: str | None) -> datetime | None:
    return None if value is None else _sqlite_second(value[:19])


@lru_cache(maxsize=4096)
def _sqlite_second(text: str) -> datetime:
    # the same second recurs across steps and records; parsing it once saves most of the row cost
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _naive_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(microsecond=0, tzinfo=UTC)
