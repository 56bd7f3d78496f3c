"""The database handle: one SQLAlchemy engine, sessions, and how reads are scheduled on the event loop.

SQLite runs in WAL mode so readers never wait for the writer; its indexed reads take microseconds, so they
run inline on the event loop. PostgreSQL calls go to a worker thread. ``Database.read`` is the one place that
decides this. SQLAlchemy errors are mapped to ``StoreError`` by ``translate_errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import DateTime, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import Session as Session  # re-exported: the service names the unit of work it is handed
from sqlalchemy.orm import sessionmaker

from nodeops.errors import StoreError, TransientStoreError

log = logging.getLogger(__name__)
T = TypeVar("T")
READ_THREADS = 4  # PostgreSQL reader threads; each holds one pooled connection
CONNECT_TIMEOUT_S = 10  # PostgreSQL: longest wait for a new connection (unless the URL says connect_timeout)
# A pooled PostgreSQL connection that rested longer than this is pinged before it is handed out (one used again
# sooner is not: the ping is a round trip and ~80 µs of CPU on every checkout, several per host of a job)
PING_AFTER_IDLE_S = 1.0


class ReadHandle(Protocol):
    """What the store's raw reads use of the driver's cursor that ``Database.read`` and ``Database.cursor`` hand
    out: a type only, so the hot paths pass the driver's own cursor, unwrapped. Callers outside the store only
    pass it on to the store's read functions (``store.log_reads``, ``store.log_scans``, ``store.access``...)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> object: ...
    def fetchone(self) -> Any: ...
    def fetchmany(self, size: int = ..., /) -> Sequence[Any]: ...
    def fetchall(self) -> Sequence[Any]: ...


class WriteHandle(ReadHandle, Protocol):
    """The driver's cursor in a transaction of ``Database.transaction``: a read handle that also tells how many
    rows a statement changed."""

    @property
    def rowcount(self) -> int: ...


class Database:
    """An engine plus a session factory; build one per process with ``Database.connect(url)``."""

    def __init__(self, engine: Engine, *, session_args: dict[str, Any] | None = None) -> None:
        self.engine = engine
        self._session_args = session_args or {}  # PostgreSQL: libpq parameters of every connection of this process
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.paramstyle = "?" if self.is_sqlite else "%s"  # placeholder of the raw SQL of the hot paths
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self._local = threading.local()
        # the per-thread connections of cursor(), so dispose() can close them; weak, so a dead thread's goes
        self._raw_connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._raw_lock = threading.Lock()
        self._readers: ThreadPoolExecutor | None = None
        self._loop_connections = _LoopConnections()  # PostgreSQL: the batches' ahead reads (read_batch_later)
        # how SQLAlchemy binds a naive DateTime on this database (SQLite: text), for the raw writes
        self._time_processor = DateTime().dialect_impl(engine.dialect).bind_processor(engine.dialect)

    @classmethod
    def connect(cls, url: str, *, pool_size: int = 10, statement_timeout_s: float = 0) -> Database:
        """Open (lazily) the database at ``url``; a SQLite file is created if missing (``create_private``), and
        its folder too.

        On PostgreSQL a new connection waits at most ``CONNECT_TIMEOUT_S`` for the server, and, when
        ``statement_timeout_s`` > 0, the server cancels any statement of this process that runs longer (waits for
        a lock included): a stalled database fails the request with a StoreError saying so instead of holding it
        and its connection. Migrations run without that limit.
        """
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:" and not parsed.query.get("uri"):
                path = Path(parsed.database)
                path.parent.mkdir(parents=True, exist_ok=True)
                create_private(path)
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            session_args = _pg_session_args(parsed, statement_timeout_s)
            engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, connect_args=session_args)
            event.listen(engine, "checkin", _note_checkin)
            event.listen(engine, "checkout", _ping_if_idle)
            return cls(engine, session_args=session_args)
        return cls(engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on error, maps database errors to StoreError (the
        driver's own too, raised by the raw statements some store functions run on the session's connection)."""
        with translate_errors(self.engine.dialect.loaded_dbapi.Error), self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def cursor(self) -> Iterator[ReadHandle]:
        """A DBAPI cursor on this thread's connection, for the few hot read paths that skip the ORM.

        The read transaction ends on exit, so the next use sees everything committed meanwhile (on PostgreSQL
        the connection is in autocommit: every statement reads the latest commit). A connection
        found broken (the server restarted, the network cut it) is let go, and the next use opens another.
        """
        driver_error = self.engine.dialect.loaded_dbapi.Error
        with translate_errors(driver_error):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self.engine.raw_connection()
                if not self.is_sqlite:  # reads only: each statement its own transaction, no BEGIN and ROLLBACK
                    cast(Any, conn.driver_connection).autocommit = True  # round trips around every read
                self._local.conn = conn
                with self._raw_lock:
                    self._raw_connections.add(conn)
            try:
                yield conn.cursor()
                conn.rollback()
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.rollback()
                if _is_broken(conn):
                    self._local.conn = None
                    with self._raw_lock:
                        self._raw_connections.discard(conn)
                    with contextlib.suppress(Exception):
                        conn.invalidate()
                raise

    @contextmanager
    def transaction(self) -> Iterator[WriteHandle]:
        """A DBAPI cursor in a transaction of a pooled connection, for the few hot writes that skip SQLAlchemy's
        statement machinery (a heartbeat, an agent's state). Commits on success, rolls back on error; times are
        bound with ``bind_time``."""
        with translate_errors(self.engine.dialect.loaded_dbapi.Error):
            conn = self.engine.raw_connection()
            try:
                yield conn.cursor()
                conn.commit()
            finally:
                conn.close()  # back to the pool, which rolls back whatever was not committed

    def bind_time(self, value: datetime | None) -> Any:
        """An aware datetime as a raw statement's parameter, stored exactly as the ORM's UTC columns store it;
        raises ValueError for a naive one, as they do."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(UTC)")
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return naive if self._time_processor is None else self._time_processor(naive)

    async def read(self, fn: Callable[[ReadHandle], T]) -> T:
        """Run a short read, ``fn(cursor)``: inline for SQLite (microseconds, WAL), in a reader thread for
        PostgreSQL. ``fn`` must fetch everything it executes; the cursor is not valid after it returns.

        Reader threads keep their connection (``cursor``), so there are few of them (``READ_THREADS``),
        well under the pool's size: reads can never take every connection from writers.
        """
        if self.is_sqlite:
            return self._read_sqlite(fn)
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool(), self._read_with_cursor, fn)

    def _read_with_cursor(self, fn: Callable[[ReadHandle], T]) -> T:
        with self.cursor() as cur:
            return fn(cur)

    def _read_sqlite(self, fn: Callable[[sqlite3.Cursor], T]) -> T:
        # The log API's hot path: a cursor of this thread's own driver connection, kept between reads. The
        # driver opens a transaction only before a write, so each SELECT reads the latest commit and there is
        # nothing to end afterwards.
        cur: sqlite3.Cursor | None = getattr(self._local, "sqlite_cursor", None)
        try:
            if cur is None:
                with self._raw_lock:
                    conn = self.engine.raw_connection()
                    self._raw_connections.add(conn)
                driver: sqlite3.Connection | None = conn.driver_connection
                assert driver is not None  # a checked-out connection always has its driver connection
                cur = self._local.sqlite_cursor = driver.cursor()
                self._local.sqlite_conn = conn  # keeps the pooled connection checked out with its cursor
            return fn(cur)
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc

    @property
    def reads_inline(self) -> bool:
        """Whether ``read`` runs on the caller's thread (SQLite): ``read_batch`` may then run on the event loop;
        elsewhere it runs in a reader thread (``read_batch_later``)."""
        return self.is_sqlite

    def read_batch_later(
        self, fns: Sequence[Callable[[ReadHandle], T]], *, ahead: Ahead = ()
    ) -> asyncio.Future[list[T | Exception]]:
        """``read_batch`` for PostgreSQL, from the event loop; the future is the loop's.

        The ``ahead`` statements run on one of the loop's own connections (psycopg's async one: no thread), and
        the reads then run on the loop from their rows. A read that asks for anything else (a record still
        running, a caller not yet remembered...) goes to a reader thread with every read after it, in one hop,
        with the rows already read; so does the whole batch when the ahead statements fail."""
        return asyncio.ensure_future(self._read_batch_async(fns, ahead))

    async def _read_batch_async(self, fns: Sequence[Callable[[ReadHandle], T]], ahead: Ahead) -> list[T | Exception]:
        answers = await self._ahead_on_loop(ahead) if ahead else None
        results: list[T | Exception] = []
        if answers is not None:
            handle = _Prefetched(_NOTHING_ELSE, answers)
            for fn in fns:
                try:
                    results.append(fn(handle))
                except _NotAnsweredAhead:
                    break
                except Exception as exc:  # the caller answers it; the other reads go on
                    results.append(exc)
        rest = fns[len(results) :]
        if rest:
            results += await asyncio.get_running_loop().run_in_executor(
                self._reader_pool(), functools.partial(self._read_batch_elsewhere, rest, ahead, answers)
            )
        return results

    async def _ahead_on_loop(self, ahead: Ahead) -> dict[Statement, Sequence[Any]] | None:
        """The rows of the ``ahead`` statements, read on one of the loop's connections; None when they could
        not be read (the reader thread then tries, and meets any error for itself)."""
        conns = self._loop_connections
        loop = asyncio.get_running_loop()
        if conns.loop is not loop:  # connections of another loop (tests run several): let them go
            conns.close_all()
            conns.loop = loop
        try:
            conn = conns.free.pop() if conns.free else await self._connect_on_loop()
        except Exception as exc:  # the server is down or refuses us: the reader thread meets it too
            log.debug("no connection on the loop: %s", exc)
            return None
        try:
            return await _run_ahead_async(conn, ahead)
        except Exception as exc:  # a driver error: the reader thread asks again, and reports what it meets
            log.debug("ahead statements failed on the loop: %s", exc)
            return None
        finally:
            if conn.closed or conn.broken or len(conns.free) >= READ_THREADS:
                conn.pgconn.finish()
            else:
                conns.free.append(conn)

    async def _connect_on_loop(self) -> Any:
        import psycopg  # PostgreSQL's driver: only this path, and the engine's, load it

        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return await psycopg.AsyncConnection.connect(
            url, autocommit=True, application_name="nodeops-read-loop", **self._session_args
        )

    def _reader_pool(self) -> ThreadPoolExecutor:
        with self._raw_lock:
            if self._readers is None:
                self._readers = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="nodeops-read")
            return self._readers

    def read_batch(self, fns: Sequence[Callable[[ReadHandle], T]], *, ahead: Ahead = ()) -> list[T | Exception]:
        """Run several short reads together, in order, on the caller's thread: each ``fn(cursor)`` as ``read``
        runs it. A read that raises does not stop the others: its result is the exception (a driver error
        becomes a StoreError, as in ``read``).

        On SQLite (on the event loop) they share one read transaction, so all of them see the same snapshot and
        its locks are taken once rather than once per statement; the snapshot is taken when the first read runs,
        so a caller batching requests answers each with the store as it was at some moment between the request's
        arrival and its answer, as unbatched reads do. ``ahead`` is not used there.

        On PostgreSQL (``read_batch_later``) each statement reads the latest commit, as ``read`` does. The
        ``ahead`` statements run first: a read that then executes one of the statements they answered, with
        the same parameters, gets those rows without asking the server again. If they fail, each read asks for
        itself (and meets its own error).
        """
        if not self.is_sqlite:
            return self._read_batch_elsewhere(fns, ahead)
        results: list[T | Exception] = []

        def run_all(cur: sqlite3.Cursor) -> None:
            if cur.connection.in_transaction:  # never read inside a transaction an earlier failure left open
                cur.execute("ROLLBACK")
            cur.execute("BEGIN")
            try:
                for fn in fns:
                    try:
                        results.append(fn(cur))
                    except sqlite3.Error as exc:
                        results.append(_store_error(exc))
                    except Exception as exc:  # the caller answers it; the other reads go on
                        results.append(exc)
            finally:
                cur.execute("ROLLBACK")  # nothing was written: ending the read is all there is to do

        try:
            self._read_sqlite(run_all)
        except StoreError as exc:  # the transaction itself failed: every read not yet run gets its error
            results.extend(exc for _ in range(len(fns) - len(results)))
        return results

    def _read_batch_elsewhere(
        self,
        fns: Sequence[Callable[[ReadHandle], T]],
        ahead: Ahead,
        answers: Mapping[Statement, Sequence[Any]] | None = None,
    ) -> list[T | Exception]:
        driver_error = self.engine.dialect.loaded_dbapi.Error
        results: list[T | Exception] = []
        try:
            with self.cursor() as cur:
                conn = cast(Any, cur).connection  # the driver's connection (psycopg's)
                handle: ReadHandle = cur
                if answers is not None:  # read already, on the loop
                    handle = _Prefetched(cur, answers)
                elif ahead:
                    try:
                        handle = _Prefetched(cur, _run_ahead(conn, ahead))
                    except driver_error:
                        if _is_broken(conn):
                            raise
                        conn.rollback()
                for fn in fns:
                    try:
                        results.append(fn(handle))
                    except driver_error as exc:
                        results.append(_store_error(exc))
                        if _is_broken(conn):
                            raise  # the connection is gone: cursor() lets it go, the rest get this error
                        conn.rollback()  # the failed statement ended the transaction: start anew
                    except Exception as exc:  # the caller answers it; the other reads go on
                        results.append(exc)
        except StoreError as exc:
            results.extend(exc for _ in range(len(fns) - len(results)))
        return results

    async def call(self, fn: Callable[[], T]) -> T:
        """Run a store call that may write or wait on locks, off the event loop."""
        return await asyncio.to_thread(fn)

    def dispose(self) -> None:
        """Close every connection, including those cursor() keeps per thread (else they leak until GC)."""
        with self._raw_lock:
            raw, self._raw_connections = list(self._raw_connections), weakref.WeakSet()
            self._local = threading.local()
            readers, self._readers = self._readers, None
        self._loop_connections.close_all()
        if readers is not None:
            readers.shutdown(wait=True)
        for conn in raw:
            conn.close()
        self.engine.dispose()


def create_private(path: Path) -> None:
    """Create ``path`` empty (an empty file is an empty SQLite database), readable and writable by its owner
    only (0600), unless it exists. SQLite would create it with the umask's mode, often readable by every user,
    and it holds the hosts' logs and their sealed credentials; created with its mode, it is never readable by
    others, not even for a moment. SQLite gives the ``-wal`` and ``-shm`` files it adds the database's mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def lock_for_update(session: Session, name: str | None = None) -> None:
    """Serialize ``session`` with other writers from now until it ends, so that what it reads next cannot change
    before it commits.

    On SQLite this takes the database's write lock: its driver begins a transaction only at a session's first
    write, so a session that reads, decides, then writes would otherwise decide on rows another session may have
    changed meanwhile (a lost update, or a duplicate that fails a unique index). On PostgreSQL, rows are locked
    with ``FOR UPDATE``; ``name`` adds a transaction advisory lock of that name, for decisions no row lock can
    guard: "no running job has this host", "no host has this address yet". Waits for the other writer (SQLite:
    up to the busy timeout).
    """
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        driver = connection.connection.dbapi_connection
        if driver is not None and not driver.in_transaction:  # in one already: a write took the lock
            connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif name is not None:
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"nodeops.{name}"})


def follow_explicit_id(session: Session, table: str, column: str, value: int) -> None:
    """After a row of ``table`` is given the explicit id ``value``, keep the ids ``column`` generates above it.

    SQLite's rowid already goes on from the highest id. A PostgreSQL sequence does not look at the table, so it
    would later hand out ``value`` again and the insert would fail; this moves it past ``value`` (never back).
    Call it holding the lock that serializes the writers of ``table`` (``lock_for_update``): reading the
    sequence and setting it are two steps.
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return
    connection.execute(
        text(
            "SELECT setval(CAST(seq AS regclass), :value) FROM pg_get_serial_sequence(:table, :column) AS seq "
            "WHERE :value > COALESCE(pg_sequence_last_value(CAST(seq AS regclass)), 0)"
        ),
        {"table": table, "column": column, "value": value},
    )


def session_cursor(session: Session) -> tuple[Any, str]:
    """A driver cursor in the session's own transaction, with the placeholder of its raw SQL ("?" or "%s"): for
    the hot statements that skip SQLAlchemy's statement machinery but must commit with the session."""
    placeholder = "?" if session.get_bind().dialect.name == "sqlite" else "%s"
    return session.connection().connection.cursor(), placeholder


def stored_utc(value: datetime | str | None) -> datetime | None:
    """A UTC column's value as a raw statement reads it (SQLite: text; PostgreSQL: a naive datetime), aware."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)


# A statement of a raw read: its SQL and its parameters.
Statement = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class AheadRead:
    """A statement run before the reads of a batch (``Database.read_batch``), on a binary cursor (bytea comes
    back as bytes), and how its rows answer some of the reads' own statements in advance: each statement with
    the rows it would return."""

    sql: str
    params: tuple[Any, ...]
    answers: Callable[[Sequence[Any]], Mapping[Statement, Sequence[Any]]]


Ahead = Sequence[AheadRead]


def _run_ahead(conn: Any, ahead: Ahead) -> dict[Statement, Sequence[Any]]:
    found: dict[Statement, Sequence[Any]] = {}
    cur = conn.cursor(binary=True)
    for read in ahead:
        cur.execute(read.sql, read.params, prepare=True)
        found.update(read.answers(cur.fetchall()))
    return found


async def _run_ahead_async(conn: Any, ahead: Ahead) -> dict[Statement, Sequence[Any]]:
    found: dict[Statement, Sequence[Any]] = {}
    cur = conn.cursor(binary=True)
    for read in ahead:
        await cur.execute(read.sql, read.params, prepare=True)
        found.update(read.answers(await cur.fetchall()))
    return found


class _LoopConnections:
    """The event loop's own PostgreSQL connections (psycopg's async ones), idle ones kept for the next batch."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.free: list[Any] = []

    def close_all(self) -> None:
        free, self.free = self.free, []
        for conn in free:
            with contextlib.suppress(Exception):
                conn.pgconn.finish()  # closes the socket at once, with or without a running loop


class _NotAnsweredAhead(BaseException):
    """A read on the loop asked for a statement the ahead rows do not answer: it goes to a reader thread. A
    BaseException, so no ``except Exception`` on the way turns it into an answer."""


class _NothingElse:
    """The cursor behind ``_Prefetched`` on the loop: there is no other."""

    def execute(self, *_args: Any) -> Any:
        raise _NotAnsweredAhead

    fetchone = fetchmany = fetchall = execute


_NOTHING_ELSE = _NothingElse()


class _Prefetched:
    """A cursor that answers the statements a batch's ``ahead`` answered from their rows (the same statement with
    the same parameters twice in a batch: the same rows), and passes every other statement to the driver's
    cursor."""

    __slots__ = ("_answers", "_at", "_cur", "_rows")

    def __init__(self, cur: Any, answers: Mapping[Statement, Sequence[Any]]) -> None:
        self._cur = cur
        self._answers = answers
        self._rows: Sequence[Any] | None = None
        self._at = 0

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> object:
        self._rows = self._answers.get((sql, tuple(params)))
        self._at = 0
        if self._rows is None:
            return self._cur.execute(sql, params)
        return self

    def fetchone(self) -> Any:
        if self._rows is None:
            return self._cur.fetchone()
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchmany(self, size: int = 1, /) -> Sequence[Any]:
        if self._rows is None:
            return self._cur.fetchmany(size)  # type: ignore[no-any-return]
        start, self._at = self._at, min(len(self._rows), self._at + size)
        return self._rows[start : self._at]

    def fetchall(self) -> Sequence[Any]:
        if self._rows is None:
            return self._cur.fetchall()  # type: ignore[no-any-return]
        start, self._at = self._at, len(self._rows)
        return self._rows[start:]


def _is_broken(conn: Any) -> bool:
    """Whether a connection (SQLAlchemy's pooled one or the driver's) can no longer be used: lost or closed."""
    driver = getattr(conn, "driver_connection", conn)
    return bool(getattr(driver, "broken", False) or getattr(driver, "closed", False))


_EMPTY_QUERY = 0  # libpq's PGRES_EMPTY_QUERY: what a live server answers to an empty query


def _pg_session_args(url: URL, statement_timeout_s: float) -> dict[str, Any]:
    """libpq parameters for every PostgreSQL connection: the connect timeout, and the statement timeout put before
    any ``options`` of the URL's own (a ``-c statement_timeout=...`` there comes later, so it wins)."""
    args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        args["connect_timeout"] = CONNECT_TIMEOUT_S
    if statement_timeout_s > 0:
        own = url.query.get("options", "")
        own = " ".join(own) if isinstance(own, tuple) else own
        timeout_ms = max(1, round(statement_timeout_s * 1000))
        args["options"] = f"-c statement_timeout={timeout_ms} {own}".strip()
    return args


def _note_checkin(_dbapi_conn: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """Ping a connection that rested in the pool (the server may have restarted or cut it meanwhile); a dead one
    raises DisconnectionError, on which the pool drops it and checks out another (SQLAlchemy's own retry). A
    connection used again within ``PING_AFTER_IDLE_S`` is not pinged: when one of those was cut after all, its
    statement fails, SQLAlchemy marks the pool's older connections stale, and they are replaced."""
    rested = time.monotonic() - record.info.get("checked_in", 0.0)
    if rested < PING_AFTER_IDLE_S:
        return
    try:  # an empty query on libpq: one round trip, nothing parsed, no transaction begun
        alive = dbapi_conn.pgconn.exec_(b"").status == _EMPTY_QUERY
    except Exception as exc:  # the driver's error: the connection is closed
        raise DisconnectionError(f"a pooled connection is gone: {type(exc).__name__}") from exc
    if not alive:
        raise DisconnectionError("a pooled connection is gone: the server did not answer its ping")


def select_one(cur: ReadHandle) -> None:
    """The trivial query of a health check, on a cursor."""
    cur.execute("SELECT 1")
    cur.fetchone()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # reads map the file instead of copying pages through SQLite's cache (about halves an indexed lookup); up
    # to SQLite's default ceiling of 2 GiB, beyond which pages are read with pread
    cursor.execute("PRAGMA mmap_size=2147418112")
    cursor.execute("PRAGMA cache_size=-16384")
    cursor.close()


@contextmanager
def translate_errors(driver_error: type[Exception] = SQLAlchemyError) -> Iterator[None]:
    """Turn SQLAlchemy and driver errors into StoreError, keeping the cause for the log."""
    try:
        yield
    except (SQLAlchemyError, driver_error) as exc:
        raise _store_error(exc) from exc


# SQLSTATEs after which the same transaction may well succeed if it is run again: serialization_failure,
# deadlock_detected, lock_not_available (lock_timeout), query_canceled (statement_timeout, pg_cancel_backend),
# and the server ending the session (admin_shutdown, crash_shutdown, cannot_connect_now); class 08 (connection
# exceptions) is matched by its prefix. The log writer and the cluster's claims wait these out and try again.
_QUERY_CANCELED = "57014"
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", _QUERY_CANCELED, "57P01", "57P02", "57P03"})


def _store_error(exc: Exception) -> StoreError:
    text = str(exc).lower()
    if "no such table" in text or ("relation" in text and "does not exist" in text):
        return StoreError("the database has no nodeops schema yet: run `nodeops db upgrade`")
    if getattr(getattr(exc, "orig", None) or exc, "sqlstate", None) == _QUERY_CANCELED:
        log.warning("database statement cancelled: %s", exc, extra={"action": "store_error_cancelled"})
        return TransientStoreError(
            "the database cancelled a statement that ran longer than NODEOPS_DB_STATEMENT_TIMEOUT_S allows (or an "
            "administrator cancelled it); nothing was changed by it: try again later"
        )
    if is_transient(exc):
        log.warning("database error, worth trying again: %s", exc, extra={"action": "store_error_transient"})
        return TransientStoreError()
    log.error("database error", exc_info=exc, extra={"action": "store_error"})
    return StoreError()


def is_transient(exc: BaseException) -> bool:
    """Whether a driver or SQLAlchemy error is one after which the same transaction may succeed if run again:
    a deadlock, a serialization failure, a lock or statement timeout, a lost or refused connection, SQLite's busy
    database.

    Note that after a connection lost during COMMIT the transaction may have been committed all the same.
    """
    if getattr(exc, "connection_invalidated", False):  # SQLAlchemy saw the connection die under it
        return True
    driver = getattr(exc, "orig", None) or exc
    sqlstate = getattr(driver, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate in _TRANSIENT_SQLSTATES or sqlstate.startswith("08")
    if isinstance(driver, sqlite3.OperationalError):
        return "locked" in str(driver) or "busy" in str(driver)
    # psycopg raises OperationalError without a SQLSTATE when the server is gone or the socket broke
    return type(driver).__name__ == "OperationalError" and type(driver).__module__.startswith("psycopg")
