"""The log API's reads, on a raw DBAPI connection: the job, the record of an instance, and its steps' logs.

This is the hot path of the service, so it skips the ORM: one statement finds the access epoch, the job and
the instance's record by primary key and index lookups, and a second reads the instance's whole log (every
step, every chunk) as a single range scan of ``(record_id, step_index, id)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from nodeops.domain.instance_id import InstanceId
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Lookup:
    """What one ``look_up`` found: the access epoch, and the job and record when they exist."""

    epoch: int
    job: JobAccess | None
    record: RecordRef | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepLog:
    """One step of a record with its whole log text (chunks joined by newlines)."""

    index: int
    name: str
    status: str
    start_at: datetime | None
    finish_at: datetime | None
    log: str


# One statement answers everything the log API needs before reading steps: the access epoch (which always
# has its row), the job's business scope (NULL: no such job) and the instance's records, newest attempt first
# (NULL: no such instance). Each join is a primary-key or composite-index lookup.
_LOOKUP_SQL = (
    "SELECT e.value, j.bk_biz_scope, r.id, r.attempt, r.revision FROM access_epoch e"
    " LEFT JOIN jobs j ON j.id = {p}"
    " LEFT JOIN instance_records r ON r.job_id = j.id AND r.{column} = {p}{extra}"
    " WHERE e.id = 1 ORDER BY r.attempt DESC"
)
_STEPS_SQL = (
    "SELECT s.step_index, s.name, s.status, s.start_at, s.finish_at, l.text"
    " FROM record_steps s LEFT JOIN step_logs l ON l.record_id = s.record_id AND l.step_index = s.step_index"
    " WHERE s.record_id = {p} ORDER BY s.step_index, l.id"
)


class LogReads:
    """Prepared reads for one database; call from ``Database.read`` so PostgreSQL runs off the event loop."""

    def __init__(self, db: Database) -> None:
        self.db = db
        p = db.paramstyle
        # a service instance's record keeps its host's id (the engine runs on that host) but no host key: the
        # host forms name the host's own instance only
        extra = {"bk_host_id": " AND r.host_key IS NOT NULL"}
        self._lookup_sql = {
            column: _LOOKUP_SQL.format(p=p, column=column, extra=extra.get(column, ""))
            for column in ("instance_id", "bk_host_id", "host_key")
        }
        self._steps_sql = _STEPS_SQL.format(p=p)
        # SQLite hands back DATETIME columns as text; PostgreSQL as naive datetimes (both UTC, see models).
        self._time = _sqlite_time if db.is_sqlite else _naive_utc

    def look_up(self, cur: Any, job_id: int, instance: InstanceId, attempt: int | None) -> Lookup:
        """The access epoch, the job and the record of ``instance`` in it (newest attempt, or the one asked).

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
        cur.execute(self._lookup_sql[column], (job_id, value))
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
            record = RecordRef(record_id=int(chosen[2]), revision=int(chosen[4]), attempts=attempts)
        return Lookup(epoch=epoch, job=job, record=record)

    def fetch_steps(self, cur: Any, record_id: int) -> list[StepLog]:
        """Every step of the record in plan order, each with its log chunks joined by newlines.

        Times come back at whole seconds, the precision the API shows.
        """
        cur.execute(self._steps_sql, (record_id,))
        rows = cur.fetchall()
        steps: list[StepLog] = []
        texts: list[str] = []
        current: tuple[Any, ...] | None = None
        to_time = self._time
        for row in rows:
            if current is None or row[0] != current[0]:
                if current is not None:
                    steps.append(_step(current, texts, to_time))
                current, texts = row, []
            if row[5] is not None:
                texts.append(row[5])
        if current is not None:
            steps.append(_step(current, texts, to_time))
        return steps


@lru_cache(maxsize=4096)
def _biz_scope(text: str) -> frozenset[int]:
    return frozenset(int(b) for b in json.loads(text or "[]"))


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
