"""The log API's use case, one instance's log (查询任务实例日志, spec §7.5): validate the query, check access, read
the instance's steps.

Order as the original (spec §10): authentication, then validation, then the job, then permission, then the
record. Every address of the log API goes through ``parse_log_query`` and ``LogService.instance_log``; with a
``cursor`` it answers a tail answer instead (``LogService.instance_tail``, docs/log-reading.md "Cursors").
Following, searching and downloading logs are in ``log_reading``; the process's own logging is
``nodeops.process_logging``. Answers are Chinese as stored and sealed; an English one is the same answer with
its step names translated (``domain.i18n``), kept in the same cache under its own key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, NamedTuple

import orjson

from nodeops.domain.answer import DEFAULT_STEP_MAX_BYTES, AnswerRenderer, StepLog
from nodeops.domain.contract import JOB_ID, Contract, Field, Kind, Values
from nodeops.domain.i18n import DEFAULT_LANGUAGE, Language, step_name
from nodeops.domain.instance_id import InstanceId
from nodeops.domain.log_cursor import START, LogCursor, Position, Taken, parse_cursor, take
from nodeops.domain.status import ACTIVE, Status
from nodeops.domain.terminal import strip_ansi
from nodeops.errors import InstanceNotFound, InvalidInput, JobNotFound
from nodeops.request_context import serving
from nodeops.service.auth import Authenticator, CommonArgs
from nodeops.service.cache import ByteBudgetCache
from nodeops.store.db import Ahead, Database, ReadHandle
from nodeops.store.log_reads import LogReads, RecordRef

BODY_CACHE_BYTES = 64 * 1024 * 1024
TAIL_DEFAULT_BYTES = 1024 * 1024
TAIL_MAX_BYTES = 8 * 1024 * 1024

# one request of a batch (``LogService.answer_batch``): the caller's common args, parameters and the language it
# asked for, or the error reading them raised
Prepared = tuple[CommonArgs, Mapping[str, object], Language] | Exception


class LogQuery(NamedTuple):  # built on every log request: a NamedTuple builds faster than a frozen dataclass
    job_id: int
    instance: InstanceId
    attempt: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TailQuery:
    log: LogQuery
    cursor: LogCursor | None
    max_bytes: int


_LOG_FIELDS = (
    JOB_ID,
    Field(
        name="attempt",
        kind=Kind.INT,
        description="Which run of the instance (1 = first, +1 per retry); default the newest.",
    ),
    Field(
        name="instance_id",
        kind=Kind.INSTANCE_ID,
        required=True,
        description="任务实例ID: object_type|node_type|type|id, e.g. host|instance|host|127.0.0.1-0-0 or "
        "host|instance|host|35; a bare integer means that bk_host_id. Either host form finds the host.",
    ),
)
LOG = Contract(
    "LogRequest",
    "查询任务实例日志: the ESB form of the request (JSON body of a POST, or query parameters of a GET).",
    _LOG_FIELDS,
)
TAIL = Contract(
    "TailRequest",
    "The log of one instance from ``cursor`` on, at most ``max_bytes`` of it.",
    (
        *_LOG_FIELDS,
        Field(name="cursor", kind=Kind.TEXT, description="Where the last answer ended; empty: from the start."),
        Field(name="max_bytes", kind=Kind.INT, default=TAIL_DEFAULT_BYTES, description="At most 8 MiB."),
    ),
)


def parse_tail_query(params: Mapping[str, object]) -> TailQuery:
    """``parse_log_query`` plus ``cursor`` (empty: from the start) and ``max_bytes``; one InvalidInput names
    every bad field."""
    problems: dict[str, str] = {}
    values = TAIL.gather(params, problems)
    cursor = None
    try:
        cursor = parse_cursor(values["cursor"])
    except InvalidInput as exc:
        problems.update(exc.problems)
    max_bytes = values.integer("max_bytes") or TAIL_DEFAULT_BYTES
    if max_bytes > TAIL_MAX_BYTES:
        problems["max_bytes"] = f"must be at most {TAIL_MAX_BYTES} (8 MiB); follow `cursor` for more"
    TAIL.check(problems)
    return TailQuery(log=_log_query(values), cursor=cursor, max_bytes=max_bytes)


def parse_log_query(params: Mapping[str, object]) -> LogQuery:
    """Validate ``job_id``, ``instance_id`` and the optional ``attempt``; one InvalidInput names every bad field."""
    return _log_query(LOG.read(params))


def _log_query(values: Values) -> LogQuery:
    job_id, instance = values.integer("job_id"), values.instance_id("instance_id")
    assert job_id is not None and instance is not None
    return LogQuery(job_id=job_id, instance=instance, attempt=values.integer("attempt"))


class LogService:
    """Reads instance logs for callers; build one per process."""

    def __init__(
        self, db: Database, auth: Authenticator, tz: tzinfo, *, step_max_bytes: int = DEFAULT_STEP_MAX_BYTES
    ) -> None:
        self.db = db
        self.auth = auth
        self.reads = LogReads(db)
        self.renderer = AnswerRenderer(tz, step_max_bytes=step_max_bytes)
        # what a record without a sealed answer renders to, per (record_id, revision), and the English form of
        # any record's answer, per (record_id, revision, Language.EN): a revision only grows, so an entry is
        # either current or never asked for again and ages out
        self._bodies = ByteBudgetCache(max_bytes=BODY_CACHE_BYTES)

    async def answer(
        self, args: CommonArgs, params: Mapping[str, object], language: Language = DEFAULT_LANGUAGE
    ) -> bytes:
        """What the log API's addresses answer, as the ``data`` JSON: the tail answer when ``params`` has a
        ``cursor``, else the instance's log (``instance_log``), its step names in ``language``. Raises
        NodeopsError."""
        return await self.db.read(lambda cur: self._answer(cur, args, params, language))

    def answer_batch(
        self, requests: Sequence[Prepared], request_ids: Sequence[str] | None = None
    ) -> list[bytes | Exception]:
        """``answer`` for several requests at once, on the caller's thread (``Database.read_batch``), in order:
        each item is the request's ``(args, params)`` or the error its preparation already raised, and each
        result its ``data`` JSON or its error. On SQLite (inline, on the event loop) they read one snapshot; on
        PostgreSQL (``answer_batch_later``) each request's record is looked up in one round trip for all.
        ``request_ids`` are the requests' ids (``nodeops.request_context``), current while each is answered.
        """
        fns = self._answers_of(requests, request_ids)
        if self.db.reads_inline:
            return self.db.read_batch(fns)
        return self.db.read_batch(fns, ahead=self._lookups_ahead(requests))

    def answer_batch_later(
        self, requests: Sequence[Prepared], request_ids: Sequence[str] | None = None
    ) -> asyncio.Future[list[bytes | Exception]]:
        """``answer_batch`` from the event loop (PostgreSQL): one round trip for the lookups of all the requests;
        the requests those answer (a finished record's sealed answer, a caller already known) are answered on
        the loop, the others in a reader thread (``Database.read_batch_later``)."""
        fns = self._answers_of(requests, request_ids)
        return self.db.read_batch_later(fns, ahead=self._lookups_ahead(requests))

    def _answers_of(
        self, requests: Sequence[Prepared], request_ids: Sequence[str] | None
    ) -> list[Callable[[ReadHandle], bytes]]:
        if request_ids is None:
            return [self._answer_of(prepared) for prepared in requests]
        return [self._answer_of(p, request_id) for p, request_id in zip(requests, request_ids, strict=True)]

    def _answer_of(self, prepared: Prepared, request_id: str | None = None) -> Callable[[ReadHandle], bytes]:
        if isinstance(prepared, Exception):
            failure = prepared

            def fail(_cur: ReadHandle) -> bytes:
                raise failure

            return fail
        args, params, language = prepared
        if request_id is None:
            return lambda cur: self._answer(cur, args, params, language)

        def answer(cur: ReadHandle) -> bytes:
            with serving(request_id):  # what it logs (a refused caller's audit line) names its request
                return self._answer(cur, args, params, language)

        return answer

    def _lookups_ahead(self, requests: Sequence[Prepared]) -> Ahead:
        """The lookups the requests will run first (``LogReads.look_up``), all read in one statement."""
        wanted = []
        for prepared in requests:
            if isinstance(prepared, Exception) or "cursor" in prepared[1]:
                continue
            try:
                query = parse_log_query(prepared[1])
            except InvalidInput:
                continue
            wanted.append((query.job_id, query.instance))
        return self.reads.lookups_ahead(wanted, self.renderer.zone)

    def _answer(self, cur: ReadHandle, args: CommonArgs, params: Mapping[str, object], language: Language) -> bytes:
        if "cursor" in params:  # our extension: a tail answer (docs/log-reading.md, "Cursors")
            return orjson.dumps(self._instance_tail(cur, args, params, language))
        return self._instance_log(cur, args, params, language)

    async def instance_log(
        self, args: CommonArgs, params: Mapping[str, object], language: Language = DEFAULT_LANGUAGE
    ) -> bytes:
        """The ``data`` of the log API as JSON: authenticate, validate, authorize, then every step of the
        instance's plan in order as the seed's five fields, step names in ``language``. Raises NodeopsError."""
        return await self.db.read(lambda cur: self._instance_log(cur, args, params, language))

    def _instance_log(
        self, cur: ReadHandle, args: CommonArgs, params: Mapping[str, object], language: Language
    ) -> bytes:
        try:
            query = parse_log_query(params)
        except InvalidInput:
            self.auth.authenticate(cur, args)  # an unauthenticated caller learns nothing about its input
            raise
        record = self.find_record(cur, args, query)
        if language is not Language.ZH:  # the stored and rendered answers are Chinese: its own entry
            return self._translated(cur, query, record, language)
        if record.answer is not None:  # finished, and sealed at this revision
            return record.answer
        return self._rendered(cur, query, record)

    def _rendered(self, cur: ReadHandle, query: LogQuery, record: RecordRef) -> bytes:
        """The answer of a record without a sealed one, rendered once per revision."""
        assert record.record_id is not None
        key = (record.record_id, record.revision)
        body = self._bodies.get(key)
        if body is None:
            steps = self.reads.fetch_steps(cur, record.record_id, max_bytes=self.renderer.step_max_bytes)
            body = self.renderer.render(
                steps, job_id=query.job_id, instance_id=record.instance_id, attempt=record.attempt
            )
            self._bodies.put(key, body)
        return body

    def _translated(self, cur: ReadHandle, query: LogQuery, record: RecordRef, language: Language) -> bytes:
        """The answer with its step names in ``language``, byte for byte the Chinese one otherwise (a log's text
        is stored as the engine wrote it), made once per revision."""
        assert record.record_id is not None
        key = (record.record_id, record.revision, language)
        body = self._bodies.get(key)
        if body is None:
            data = orjson.loads(record.answer if record.answer is not None else self._rendered(cur, query, record))
            for step in data:
                step["step"] = step_name(step["step"], language)
            body = orjson.dumps(data)
            self._bodies.put(key, body)
        return body

    def find_record(
        self, cur: ReadHandle, args: CommonArgs, query: LogQuery, *, record_id: int | None = None
    ) -> RecordRef:
        """Authenticate, find the job (3801012), check the caller may view it (9900403), find the instance's
        record (3800007): the newest attempt, the one asked, or ``record_id`` when it is one of its attempts."""
        found = self.reads.look_up(
            cur, query.job_id, query.instance, query.attempt, self.renderer.zone, record_id=record_id
        )
        caller = self.auth.authenticate(cur, args, epoch=found.epoch)
        if found.job is None:
            raise JobNotFound(job_id=query.job_id)
        caller.require_job_view(found.job)
        record = found.record
        if record is None:
            raise InstanceNotFound(job_id=query.job_id, instance_id=str(query.instance))
        if record.record_id is None:
            raise InstanceNotFound(
                job_id=query.job_id,
                instance_id=str(query.instance),
                detail=f"attempt {query.attempt} does not exist; attempts are 1 to {record.attempts}",
            )
        return record

    async def instance_tail(
        self, args: CommonArgs, params: Mapping[str, object], language: Language = DEFAULT_LANGUAGE
    ) -> dict[str, Any]:
        """The tail answer (docs/log-reading.md, "Cursors"): every step's status and times, and only the text
        written after ``cursor``, at most ``max_bytes`` of it, with the cursor to read on from; step names in
        ``language``."""
        return await self.db.read(lambda cur: self._instance_tail(cur, args, params, language))

    def _instance_tail(
        self, cur: ReadHandle, args: CommonArgs, params: Mapping[str, object], language: Language
    ) -> dict[str, Any]:
        try:
            query = parse_tail_query(params)
        except InvalidInput:
            self.auth.authenticate(cur, args)
            raise
        record, status, steps, taken = self.read_after(cur, args, query)
        return self.tail_answer(record, status, steps, taken, language)

    def read_after(
        self, cur: ReadHandle, args: CommonArgs, query: TailQuery
    ) -> tuple[RecordRef, str, list[StepLog], Taken]:
        """The record a tail query names, its status and steps, then the text after its cursor. The status is
        read before the text, so a record seen finished has all its text in what follows."""
        record = self.find_record(cur, args, query.log, record_id=query.cursor.record_id if query.cursor else None)
        assert record.record_id is not None
        if query.cursor is not None and query.cursor.record_id != record.record_id:
            raise InvalidInput.field(
                "cursor",
                f"belongs to another instance, attempt or job than job {query.log.job_id} instance "
                f"{query.log.instance}; send an empty cursor to start from the beginning",
            )
        status, steps = self.reads.fetch_state(cur, record.record_id)
        position = query.cursor.position if query.cursor is not None else START
        chunks = self.reads.chunks_after(cur, record.record_id, position.chunk_id)
        return record, status, steps, take(chunks, position, query.max_bytes)

    def tail_answer(
        self,
        record: RecordRef,
        status: str,
        steps: list[StepLog],
        taken: Taken,
        language: Language = DEFAULT_LANGUAGE,
    ) -> dict[str, Any]:
        assert record.record_id is not None
        texts: dict[int, list[str]] = {}
        for piece in taken.pieces:
            texts.setdefault(piece.step_index, []).append(piece.text)
        fields = self.renderer.step_fields(steps)
        for step, field in zip(steps, fields, strict=True):
            field["log"] = strip_ansi("\n".join(texts.get(step.index, ())))
            field["step"] = step_name(step.name, language)
        return {
            "instance_id": record.instance_id,
            "attempt": record.attempt,
            "status": status,
            "finished": Status(status) not in ACTIVE and not taken.cut,
            "cursor": self.cursor_of(record.record_id, taken.position),
            "steps": fields,
        }

    @staticmethod
    def cursor_of(record_id: int, position: Position) -> str:
        return LogCursor(record_id=record_id, position=position).encode()
