"""Reading logs the way operators do (docs/log-reading.md): follow (Server-Sent Events), search, download, batch;
the log API itself (one instance's log, its tail) is ``instance_log``.

Every use case authenticates, validates, finds the job (3801012) and checks the caller may view it (9900403)
before anything is sent, as the log API does; streams and downloads raise those errors before their first
byte. Long work reads the store a page of chunks at a time (``store.log_scans``), in worker threads, so neither
memory nor the event loop depends on the size of a log. Streams poll the store (short indexed reads), so they
follow jobs run by any process. A search's pattern is matched only in the search threads (``SEARCH_THREADS``),
never on the event loop, by RE2 (``domain.log_search``), which takes time linear in each line.
"""

from __future__ import annotations

import asyncio
import tarfile
import threading
import time
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from nodeops.domain.answer import StepLog
from nodeops.domain.contract import JOB_ID, Contract, Field, Kind
from nodeops.domain.i18n import DEFAULT_LANGUAGE, Language, step_name
from nodeops.domain.instance_id import InstanceId
from nodeops.domain.log_cursor import Chunk, LogCursor
from nodeops.domain.log_search import LEVELS, Matcher, compile_query, line_level
from nodeops.domain.params import is_ascii_digits, parse_int
from nodeops.domain.status import ACTIVE, Status
from nodeops.domain.terminal import strip_ansi, strip_controls
from nodeops.errors import AttachmentNotFound, InstanceNotFound, InvalidInput, JobNotFound
from nodeops.service.auth import Caller, CommonArgs
from nodeops.service.instance_log import LogQuery, LogService, TailQuery, parse_log_query, parse_tail_query
from nodeops.store import attachments
from nodeops.store.db import Database, ReadHandle
from nodeops.store.log_reads import JobAccess, RecordRef
from nodeops.store.log_scans import PAGE, JobRow, LogScans, RecordRow

POLL_S = 0.5  # how often a stream reads the store
KEEPALIVE_S = 15.0  # a comment line at least this often keeps proxies from closing an idle stream
STREAM_PAGE_BYTES = 1024 * 1024
MAX_PAGESIZE = 500
_LAST_EVENT_ID_MAX = 253_402_300_799 * 1_000_000  # 9999-12-31 23:59:59 UTC in µs, the last a datetime holds
MAX_BATCH = 500
SEARCH_BUDGET_S = 10.0  # from a search's arrival; then it answers what it found, marked incomplete
SEARCH_THREADS = 2  # searches scanning at once; more wait their turn within their own budget, and no other work waits
BATCH_MAX_BYTES = 64 * 1024 * 1024  # of the steps' JSON in one batch answer (without tail)
MAX_TAIL_LINES = 10_000
ARCHIVE_FLUSH_BYTES = 64 * 1024


JOB = Contract("JobLogsRequest", "A job's logs: job_id.", (JOB_ID,))
ATTACHMENT = Contract(
    "LogAttachmentRequest",
    "A download of a file attached to the instance's record instead of its log.",
    (Field(name="attachment_id", kind=Kind.INT, description="What collect_log answered: the agent's own log."),),
)
SEARCH = Contract(
    "LogSearchRequest",
    "Search the logs of a job (or one instance) for ``q``.",
    (
        JOB_ID,
        Field(name="attempt", kind=Kind.INT, description="Which run of the instance; default the newest."),
        Field(name="instance_id", kind=Kind.INSTANCE_ID, description="Only this instance's log."),
        Field(name="regex", kind=Kind.BOOL, default=False, description="q is a regular expression (RE2)."),
        Field(name="case", kind=Kind.BOOL, default=False, description="Match case."),
        Field(name="q", kind=Kind.TEXT, required=True, description="What to find."),
        Field(name="level", kind=Kind.TEXT, description=f"Only lines of this level: {', '.join(LEVELS)}."),
        Field(name="step", kind=Kind.TEXT, description="Only this step: its index or its name."),
        Field(name="page", kind=Kind.INT, default=1),
        Field(name="pagesize", kind=Kind.INT, default=50, description=f"At most {MAX_PAGESIZE}."),
    ),
)
BATCH = Contract(
    "LogBatchRequest",
    "The logs of several instances of a job at once.",
    (
        JOB_ID,
        Field(name="instance_id_list", kind=Kind.INSTANCE_IDS, required=True, max_items=MAX_BATCH),
        Field(name="tail", kind=Kind.INT, description=f"Only the last lines of each step, at most {MAX_TAIL_LINES}."),
    ),
)


def sse(event: str, data: object, event_id: str | None = None) -> bytes:
    """One Server-Sent Event (``data`` as one line of JSON)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


KEEPALIVE = b": keep-alive\n\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchQuery:
    job_id: int
    instance: InstanceId | None
    attempt: int | None
    q: str
    matcher: Matcher
    level: str | None
    step: int | str | None
    page: int
    pagesize: int


class LogReading:
    """The use cases of docs/log-reading.md beyond the log API; build one per process."""

    def __init__(self, db: Database, logs: LogService) -> None:
        self.db = db
        self.logs = logs
        self.scans = LogScans(db)
        self.batch_max_bytes = BATCH_MAX_BYTES
        self.search_budget_s = SEARCH_BUDGET_S
        self._searchers: ThreadPoolExecutor | None = None
        self._searchers_lock = threading.Lock()

    def close(self) -> None:
        """Shut the search threads down (a search under way ends by its deadline; a later one starts new ones)."""
        with self._searchers_lock:
            searchers, self._searchers = self._searchers, None
        if searchers is not None:
            searchers.shutdown(wait=False, cancel_futures=True)

    # --- access ----------------------------------------------------------------------------------------------

    def authorize_job(self, cur: ReadHandle, args: CommonArgs, job_id: int) -> tuple[Caller, JobRow]:
        """Authenticate, find the job (3801012) and check the caller may view it (9900403)."""
        epoch, job = self.scans.job(cur, job_id)
        caller = self.logs.auth.authenticate(cur, args, epoch=epoch)
        if job is None:
            raise JobNotFound(job_id=job_id)
        caller.require_job_view(JobAccess(job_id=job_id, bk_biz_scope=job.bk_biz_scope))
        return caller, job

    async def _validated(self, args: CommonArgs, parse: Any) -> Any:
        """``parse()``; when it raises InvalidInput, authenticate first (an unauthenticated caller learns
        nothing about its input), as the log API does."""
        try:
            return parse()
        except InvalidInput:
            await self.db.read(lambda cur: self.logs.auth.authenticate(cur, args))
            raise

    # --- tail and follow ---------------------------------------------------------------------------------------

    async def tail(
        self, args: CommonArgs, params: Mapping[str, object], language: Language = DEFAULT_LANGUAGE
    ) -> dict[str, Any]:
        """The REST form of the tail answer: the log API with a cursor (missing: from the start)."""
        return await self.logs.instance_tail(args, {**params, "cursor": params.get("cursor") or ""}, language)

    async def open_log_stream(
        self,
        args: CommonArgs,
        params: Mapping[str, object],
        last_event_id: str | None,
        language: Language = DEFAULT_LANGUAGE,
    ) -> AsyncIterator[bytes]:
        """Check the request, then return the stream of one instance's log: ``line``, ``step``, ``end`` events,
        step names in ``language``. ``Last-Event-ID`` (else ``cursor``) resumes right after the line that
        carried it."""
        cursor = last_event_id if last_event_id else params.get("cursor") or ""
        query = await self._validated(args, lambda: parse_tail_query({**params, "cursor": cursor}))
        query = TailQuery(log=query.log, cursor=query.cursor, max_bytes=STREAM_PAGE_BYTES)
        first = await self.db.read(lambda cur: self.logs.read_after(cur, args, query))
        return self._log_events(args, query, first, language)

    async def _log_events(
        self,
        args: CommonArgs,
        query: TailQuery,
        read: tuple[RecordRef, str, list[StepLog], Any],
        language: Language,
    ) -> AsyncIterator[bytes]:
        shown: dict[int, dict[str, Any]] = {}
        last_sent = time.monotonic()
        while True:
            record, status, steps, taken = read
            assert record.record_id is not None
            out: list[bytes] = []
            fields = self.logs.renderer.step_fields(steps)
            names = _step_names(steps, language)
            for step, field in zip(steps, fields, strict=True):
                del field["log"]
                field["step"] = names[step.index]
                if shown.get(step.index) != field:
                    shown[step.index] = field
                    out.append(sse("step", {"step_index": step.index, **field}))
            for piece in taken.pieces:
                for line, after in piece.lines():
                    event_id = LogCursor(record_id=record.record_id, position=after).encode()
                    data = {
                        "step_index": piece.step_index,
                        "step": names.get(piece.step_index),
                        "text": strip_ansi(line),
                    }
                    out.append(sse("line", data, event_id))
            finished = Status(status) not in ACTIVE and not taken.cut
            if finished:
                out.append(sse("end", {"status": status}))
            block, last_sent = _to_send(out, last_sent)
            if block:
                yield block
            if finished:
                return
            if not taken.cut:
                await asyncio.sleep(POLL_S)
            cursor = LogCursor(record_id=record.record_id, position=taken.position)
            query = TailQuery(log=query.log, cursor=cursor, max_bytes=STREAM_PAGE_BYTES)
            read = await self.db.read(lambda cur, q=query: self.logs.read_after(cur, args, q))  # type: ignore[misc]

    async def open_job_events(
        self,
        args: CommonArgs,
        params: Mapping[str, object],
        last_event_id: str | None,
        language: Language = DEFAULT_LANGUAGE,
    ) -> AsyncIterator[bytes]:
        """Check the request, then return the stream of a job's status changes: ``instance``, ``job``, ``end``,
        step names in ``language``. Each event's id is the time of the newest change it includes; reconnecting
        with it sends only the instances changed since."""
        problems: dict[str, str] = {}
        since = datetime.fromtimestamp(0, UTC)
        job_id = JOB.gather(params, problems).integer("job_id")
        if last_event_id:
            text = last_event_id.strip()
            try:
                moment = parse_int(text, "Last-Event-ID", minimum=0, maximum=_LAST_EVENT_ID_MAX)
                since = datetime.fromtimestamp(moment / 1_000_000, UTC)
            except InvalidInput:
                problems["Last-Event-ID"] = f"{text[:40]!r} is not an id this stream sent; reconnect without it"
        if problems:
            await self._validated(args, lambda: _raise(problems))
        assert job_id is not None
        await self.db.read(lambda cur: self.authorize_job(cur, args, job_id))
        return self._job_events(args, job_id, since, language)

    async def _job_events(
        self, args: CommonArgs, job_id: int, since: datetime, language: Language
    ) -> AsyncIterator[bytes]:
        seen: dict[str, tuple[int, str, str]] = {}  # instance_id -> (attempt, status, step)
        shown_job: tuple[str, str] | None = None
        last_sent = time.monotonic()
        while True:
            job, changes = await self.db.read(partial(self._job_changes, args=args, job_id=job_id, since=since))
            out: list[bytes] = []
            for change, step in changes:
                record = change.record
                since = max(since, change.updated_at)
                known = seen.get(record.instance_id)
                state = (record.attempt, record.status, step)
                if (known is not None and known[0] > record.attempt) or known == state:
                    continue
                seen[record.instance_id] = state
                data = {
                    "instance_id": record.instance_id,
                    "bk_host_id": record.bk_host_id,
                    "ip": record.ip,
                    "status": record.status,
                    "step": step_name(step, language),
                    "attempt": record.attempt,
                }
                out.append(sse("instance", data, _event_id(since)))
            job_state = (job.status, orjson.dumps(job.statistics, option=orjson.OPT_SORT_KEYS).decode())
            if job_state != shown_job:
                shown_job = job_state
                out.append(sse("job", {"status": job.status, "statistics": job.statistics}, _event_id(since)))
            ended = Status(job.status) not in ACTIVE
            if ended:
                out.append(sse("end", {"status": job.status}))
            block, last_sent = _to_send(out, last_sent)
            if block:
                yield block
            if ended:
                return
            await asyncio.sleep(POLL_S)

    def _job_changes(
        self, cur: ReadHandle, args: CommonArgs, job_id: int, since: datetime
    ) -> tuple[JobRow, list[tuple[Any, str]]]:
        # the job first: a job seen ended has every instance change in what follows
        _caller, job = self.authorize_job(cur, args, job_id)
        changes = self.scans.changed_records(cur, job_id, since)
        result = []
        for change in changes:
            _status, steps = self.logs.reads.fetch_state(cur, change.record.record_id)
            result.append((change, _current_step(steps)))
        return job, result

    # --- search ----------------------------------------------------------------------------------------------

    async def search(
        self, args: CommonArgs, params: Mapping[str, object], language: Language = DEFAULT_LANGUAGE
    ) -> dict[str, Any]:
        """Lines matching ``q`` across the job's instances (newest attempt of each) or one instance, a page of
        them with the total, step names in ``language``; scanned a page of chunks at a time in a search thread,
        for at most ``search_budget_s`` from now (waiting for a thread included)."""
        query = await self._validated(args, lambda: parse_search_query(params))
        deadline = time.monotonic() + self.search_budget_s
        with self._searchers_lock:
            if self._searchers is None:
                self._searchers = ThreadPoolExecutor(max_workers=SEARCH_THREADS, thread_name_prefix="nodeops-search")
            searchers = self._searchers
        return await asyncio.get_running_loop().run_in_executor(
            searchers, self._search, args, query, deadline, language
        )

    def _search(self, args: CommonArgs, query: SearchQuery, deadline: float, language: Language) -> dict[str, Any]:
        matcher = query.matcher
        first = (query.page - 1) * query.pagesize
        found: list[dict[str, Any]] = []
        total = searched = 0
        complete = True
        with self.db.cursor() as cur:
            for record in self._records(cur, args, query.job_id, query.instance, query.attempt):
                if not complete:
                    break
                _status, steps = self.logs.reads.fetch_state(cur, record.record_id)
                names = _step_names(steps, language)
                wanted = _step_index(query.step, steps)
                if query.step is not None and wanted is None:
                    searched += 1  # it has no such step: nothing to scan
                    continue
                line_no = 0
                current = -1
                chunks = (
                    self.scans.step_chunks(cur, record.record_id, wanted)
                    if wanted is not None
                    else self.scans.record_chunks(cur, record.record_id)
                )
                for chunk in chunks:
                    if chunk.step_index != current:
                        current, line_no = chunk.step_index, 0
                    for raw in chunk.text.split("\n"):
                        # checked per line: one line's match is bounded (linear in its length), a chunk's
                        # thousands of them are not
                        if time.monotonic() >= deadline:
                            complete = False
                            break
                        line_no += 1
                        line = strip_ansi(raw)
                        level = line_level(line)
                        if query.level is not None and level != query.level:
                            continue
                        if not matcher.finds(line):
                            continue
                        if first <= total < first + query.pagesize:
                            found.append(
                                {
                                    "instance_id": record.instance_id,
                                    "bk_host_id": record.bk_host_id,
                                    "ip": record.ip,
                                    "attempt": record.attempt,
                                    "step_index": chunk.step_index,
                                    "step": names.get(chunk.step_index),
                                    "line_no": line_no,
                                    "text": line,
                                    "level": level,
                                    "spans": matcher.spans(line),
                                }
                            )
                        total += 1
                    if not complete:
                        break
                if complete:
                    searched += 1
        return {"total": total, "list": found, "complete": complete, "instances_searched": searched}

    def _records(
        self, cur: ReadHandle, args: CommonArgs, job_id: int, instance: InstanceId | None, attempt: int | None
    ) -> list[RecordRow]:
        """The records a job-wide or one-instance request reads, after checking access."""
        if instance is None:
            self.authorize_job(cur, args, job_id)
            return self.scans.latest_records(cur, job_id)
        query = parse_log_query({"job_id": job_id, "instance_id": str(instance), "attempt": attempt})
        record = self.logs.find_record(cur, args, query)
        assert record.record_id is not None
        return [self.scans.record_row(cur, record.record_id)]

    # --- download ----------------------------------------------------------------------------------------------

    async def open_download(self, args: CommonArgs, params: Mapping[str, object]) -> tuple[str, AsyncIterator[bytes]]:
        """Check the request, then return the file name and the stream of one instance's full log as text
        (colours kept, every other control dropped: ``_served``), each step under a header line, read a page of
        chunks at a time."""
        query = await self._validated(args, lambda: parse_log_query(params))
        attachment_id = await self._validated(args, lambda: ATTACHMENT.read(params).integer("attachment_id"))
        if attachment_id is not None:
            return await self._open_attachment(args, query, attachment_id)
        record = await self.db.read(lambda cur: self.logs.find_record(cur, args, query))
        record_id = record.record_id
        assert record_id is not None
        row = await self.db.read(lambda cur: self.scans.record_row(cur, record_id))
        name = f"job-{query.job_id}-{_host_name(row)}-{row.attempt}.log"
        return name, self._text_of(row.record_id)

    async def _open_attachment(
        self, args: CommonArgs, query: LogQuery, attachment_id: int
    ) -> tuple[str, AsyncIterator[bytes]]:
        """The file ``attachment_id`` attached to one of the instance's records (any attempt), after the same
        checks as its log; one of another instance or job is not found, as a missing one is."""

        def find(cur: ReadHandle) -> attachments.Attachment:
            found = attachments.find_attachment(cur, self.db.paramstyle, attachment_id=attachment_id)
            record = self.logs.find_record(cur, args, query, record_id=found.record_id if found else None)
            if found is None or record.record_id != found.record_id:
                raise AttachmentNotFound(
                    job_id=query.job_id, instance_id=str(query.instance), attachment_id=attachment_id
                )
            return found

        found = await self.db.read(find)
        return found.name, _once(found.content)

    async def _text_of(self, record_id: int) -> AsyncIterator[bytes]:
        _status, steps = await self.db.read(lambda cur: self.logs.reads.fetch_state(cur, record_id))
        for step, header in zip(steps, self._headers(steps), strict=True):
            yield header
            after = 0
            while True:
                page = await self.db.call(lambda a=after, s=step.index: self._page(record_id, s, a))  # type: ignore[misc]
                if page:
                    yield _served(page)
                if len(page) < PAGE:
                    break
                after = page[-1].id

    def _page(self, record_id: int, step_index: int, after: int, up_to: int | None = None) -> list[Chunk]:
        with self.db.cursor() as cur:
            return self.scans.step_page(cur, record_id, step_index, after, up_to)

    def _headers(self, steps: Sequence[StepLog]) -> list[bytes]:
        fields = self.logs.renderer.step_fields(steps)
        return [
            f"==> {f['step']} [{f['status']}] {f['start_time'] or '-'} - {f['finish_time'] or '-'}\n".encode()
            for f in fields
        ]

    async def open_archive(self, args: CommonArgs, params: Mapping[str, object]) -> tuple[str, AsyncIterator[bytes]]:
        """Check the request, then return the file name and a .tar.gz stream of every instance's log (newest
        attempt), one file each, their text as the download serves it; each member's size is counted first (a read
        of its text) so that it then streams without being held."""
        job_id = await self._validated(args, lambda: JOB.read(params).integer("job_id"))
        records = await self.db.read(lambda cur: self._archive_records(cur, args, job_id))
        return f"job-{job_id}-logs.tar.gz", self._archive(job_id, records)

    def _archive_records(self, cur: ReadHandle, args: CommonArgs, job_id: int) -> list[RecordRow]:
        self.authorize_job(cur, args, job_id)
        return self.scans.latest_records(cur, job_id)

    async def _archive(self, job_id: int, records: Sequence[RecordRow]) -> AsyncIterator[bytes]:
        gzip = zlib.compressobj(6, zlib.DEFLATED, 31)
        pending: list[bytes] = []
        now = int(time.time())

        def add(data: bytes) -> bytes | None:
            pending.append(gzip.compress(data))
            if sum(len(p) for p in pending) < ARCHIVE_FLUSH_BYTES:
                return None
            out = b"".join(pending)
            pending.clear()
            return out

        for record in records:
            headers, last, sizes = await self.db.call(lambda r=record: self._member_plan(r))  # type: ignore[misc]
            length = sum(len(h) for h in headers) + sum(sizes.values())
            info = tarfile.TarInfo(f"job-{job_id}/{_host_name(record)}-{record.attempt}.log")
            info.size, info.mtime, info.mode = length, now, 0o644
            if out := add(info.tobuf(format=tarfile.PAX_FORMAT)):
                yield out
            written = 0
            async for block in self._member_blocks(record.record_id, headers, last, sizes):
                block = block[: length - written]
                written += len(block)
                if block and (out := add(block)):
                    yield out
            # a log deleted meanwhile (retention) still makes a valid archive: pad to the size announced
            if out := add(b" " * (length - written) + b"\0" * (-length % tarfile.BLOCKSIZE)):
                yield out
        add(b"\0" * (2 * tarfile.BLOCKSIZE))
        pending.append(gzip.flush())
        yield b"".join(pending)

    def _member_plan(self, record: RecordRow) -> tuple[list[bytes], int, dict[int, int]]:
        """A member's step headers, the newest chunk it holds, and the bytes of each step's text as served.
        Those bytes are counted by reading the text a first time (a page at a time): what ``_served`` drops is
        known only from the text, and a tar header states its member's size before the member."""
        with self.db.cursor() as cur:
            _status, steps = self.logs.reads.fetch_state(cur, record.record_id)
            last, stored = self.scans.log_sizes(cur, record.record_id)
        sizes: dict[int, int] = {}
        for index in stored:
            size = after = 0
            while True:
                page = self._page(record.record_id, index, after, last)
                size += len(_served(page))
                if len(page) < PAGE:
                    break
                after = page[-1].id
            sizes[index] = size
        return self._headers(steps), last, sizes

    async def _member_blocks(
        self, record_id: int, headers: list[bytes], last: int, sizes: Mapping[int, int]
    ) -> AsyncIterator[bytes]:
        for index, header in enumerate(headers):
            yield header
            if index not in sizes:
                continue
            after = 0
            while True:
                page = await self.db.call(lambda a=after, i=index: self._page(record_id, i, a, last))  # type: ignore[misc]
                if page:
                    yield _served(page)
                if len(page) < PAGE:
                    break
                after = page[-1].id

    # --- batch -------------------------------------------------------------------------------------------------

    async def batch(
        self, args: CommonArgs, params: Mapping[str, object], language: Language = DEFAULT_LANGUAGE
    ) -> list[dict[str, Any]]:
        """Several instances of a job at once, in the order asked: the seed's steps of each, or with ``tail``
        its last N lines, step names in ``language``. Unknown instance_ids answer 3800007 naming every one."""
        job_id, instances, tail = await self._validated(args, lambda: parse_batch_query(params))
        return await self.db.call(lambda: self._batch(args, job_id, instances, tail, language))

    def _batch(
        self, args: CommonArgs, job_id: int, instances: Sequence[InstanceId], tail: int | None, language: Language
    ) -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = []
        with self.db.cursor() as cur:
            self.authorize_job(cur, args, job_id)
            records: list[RecordRef] = []
            missing: list[str] = []
            for instance in instances:
                found = self.logs.reads.look_up(cur, job_id, instance, None, self.logs.renderer.zone)
                if found.record is None or found.record.record_id is None:
                    missing.append(str(instance))
                else:
                    records.append(found.record)
            if missing:
                raise InstanceNotFound(job_id=job_id, instance_id=", ".join(missing))
            size = 0
            for record in records:
                assert record.record_id is not None
                status, steps = self.logs.reads.fetch_state(cur, record.record_id)
                answer: dict[str, Any] = {
                    "instance_id": record.instance_id,
                    "attempt": record.attempt,
                    "status": status,
                }
                if tail is not None:
                    answer["lines"] = self._last_lines(cur, record.record_id, steps, tail, language)
                else:
                    body = record.answer
                    if body is None:
                        capped = self.logs.reads.fetch_steps(
                            cur, record.record_id, max_bytes=self.logs.renderer.step_max_bytes
                        )
                        body = self.logs.renderer.render(
                            capped, job_id=job_id, instance_id=record.instance_id, attempt=record.attempt
                        )
                    size += len(body)
                    if size > self.batch_max_bytes:
                        raise InvalidInput.field(
                            "instance_id_list",
                            f"the steps of these {len(records)} instances come to more than "
                            f"{self.batch_max_bytes:,} bytes (the first {len(answers)} fit); ask for fewer "
                            "instance_ids at once, or add `tail` for their last lines",
                        )
                    answer["steps"] = orjson.loads(body)
                    for step in answer["steps"]:
                        step["step"] = step_name(step["step"], language)
                answers.append(answer)
        return answers

    def _last_lines(
        self, cur: ReadHandle, record_id: int, steps: Sequence[StepLog], count: int, language: Language
    ) -> list[dict[str, Any]]:
        names = _step_names(steps, language)
        lines: list[dict[str, Any]] = []
        for chunk in self.scans.chunks_backwards(cur, record_id):
            for text in reversed(chunk.text.split("\n")):
                if len(lines) >= count:
                    break
                lines.append(
                    {"step_index": chunk.step_index, "step": names.get(chunk.step_index), "text": strip_ansi(text)}
                )
            if len(lines) >= count:
                break
        lines.reverse()
        return lines


# --- validation and helpers -----------------------------------------------------------------------------------


def _step_names(steps: Sequence[StepLog], language: Language) -> dict[int, str]:
    """Each step's name in ``language``, by its index."""
    return {step.index: step_name(step.name, language) for step in steps}


def _served(page: Sequence[Chunk]) -> bytes:
    """A page of chunks as the download and the archive serve it: each chunk's lines with their colours (SGR)
    and without any other escape sequence or control character (``domain.terminal``)."""
    return "".join(strip_controls(chunk.text, keep_sgr=True) + "\n" for chunk in page).encode()


def _to_send(events: list[bytes], last_sent: float) -> tuple[bytes | None, float]:
    """What a stream sends now (its new events, else a keep-alive comment when it has been quiet for
    ``KEEPALIVE_S``, else nothing) and when it last sent something."""
    now = time.monotonic()
    if events:
        return b"".join(events), now
    if now - last_sent >= KEEPALIVE_S:
        return KEEPALIVE, now
    return None, last_sent


def _raise(problems: Mapping[str, str]) -> None:
    raise InvalidInput(problems)


def parse_search_query(params: Mapping[str, object]) -> SearchQuery:
    """Validate a search: ``job_id``, optional ``instance_id`` and ``attempt``, ``q`` (with ``regex`` and
    ``case``), ``level``, ``step``, ``page``, ``pagesize``; one InvalidInput names every bad field."""
    problems: dict[str, str] = {}
    values = SEARCH.gather(params, problems)
    regex, case = values.flag("regex"), values.flag("case")
    q = values["q"]
    matcher: Matcher | None = None
    try:
        matcher = compile_query(q, regex=regex, case=case)  # bounded: RE2 compiles within PATTERN_MAX_MEM_BYTES
    except InvalidInput as exc:
        problems.update(exc.problems)
    level = values["level"] or None
    if level is not None:
        level = str(level).upper()
        if level not in LEVELS:
            problems["level"] = f"{str(params['level'])[:40]!r} must be one of {', '.join(LEVELS)}"
    step: int | str | None = None
    raw_step = values["step"]
    if raw_step not in (None, ""):
        text = str(raw_step).strip()
        step = int(text) if is_ascii_digits(text) and len(text) < 6 else text
    pagesize = values.integer("pagesize") or 50
    if pagesize > MAX_PAGESIZE:
        problems["pagesize"] = f"must be from 1 to {MAX_PAGESIZE}"
    SEARCH.check(problems)
    job_id = values.integer("job_id")
    assert job_id is not None and isinstance(q, str) and matcher is not None
    return SearchQuery(
        job_id=job_id,
        instance=values.instance_id("instance_id"),
        attempt=values.integer("attempt"),
        q=q,
        matcher=matcher,
        level=level,
        step=step,
        page=values.integer("page") or 1,
        pagesize=pagesize,
    )


def parse_batch_query(params: Mapping[str, object]) -> tuple[int, list[InstanceId], int | None]:
    """Validate a batch: ``job_id``, ``instance_id_list`` (1 to 500) and the optional ``tail``."""
    problems: dict[str, str] = {}
    values = BATCH.gather(params, problems)
    tail = values.integer("tail")
    if tail is not None and tail > MAX_TAIL_LINES:
        problems["tail"] = f"must be from 1 to {MAX_TAIL_LINES} lines"
    BATCH.check(problems)
    job_id = values.integer("job_id")
    assert job_id is not None
    return job_id, values.instance_ids("instance_id_list"), tail


def _current_step(steps: Sequence[StepLog]) -> str:
    """The step an instance is at: the first RUNNING or FAILED one, else the last that ran, else the first."""
    for step in steps:
        if step.status in (Status.RUNNING.value, Status.FAILED.value):
            return step.name
    ran = [step for step in steps if step.status != Status.PENDING.value]
    return ran[-1].name if ran else (steps[0].name if steps else "")


def _step_index(wanted: int | str | None, steps: Sequence[StepLog]) -> int | None:
    """The index of the step ``wanted`` names: by its index, or its name in either language."""
    if wanted is None:
        return None
    for step in steps:
        if step.index == wanted or step.name == wanted or step_name(step.name, Language.EN) == wanted:
            return step.index
    return None


def _host_name(record: RecordRow) -> str:
    return record.ip or (str(record.bk_host_id) if record.bk_host_id is not None else str(record.record_id))


def _event_id(at: datetime) -> str:
    return str(int(at.timestamp() * 1_000_000))


async def _once(content: bytes) -> AsyncIterator[bytes]:
    """A download of bytes already in hand."""
    yield content
