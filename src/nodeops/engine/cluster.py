"""The distributed mode's engine, apart from the broker: a worker's runtime, the reaper, and revoke.

``ClusterWorker`` is the engine of one ``nodeops worker`` process. Its pipelines run on one asyncio loop in a
thread of their own; the broker's consumer threads hand it "run these records of this task" (``run``) and wait
until they are done, so a message is acknowledged only once its hosts have finished. Every decision is a row in
PostgreSQL (``store.cluster``): a record runs only once this worker has claimed it, a host runs one pipeline at
a time across the cluster and at most ``job_limit`` records run at once; a message delivered twice finds its
records claimed and runs nothing. The worker renews its lease every third of ``lease_s``; its log writer writes
only while it holds the lease (fencing). Once the lease is gone (the process was paused, or cut off from the
database, past the lease) it writes nothing more: it cancels its pipelines and ``on_lease_lost`` ends it.

``Reaper`` runs in every worker and in the API, one pass at a time across the cluster: it ends lost workers,
fails their running records with a line naming them, and publishes again what they left PENDING, with tasks
committed but never published. Nothing here imports the broker's library: publishing is a ``Publish`` callable.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path

from nodeops import metrics
from nodeops.crypto import SecretBox
from nodeops.domain.answer import AnswerRenderer
from nodeops.domain.status import Status
from nodeops.engine import packages
from nodeops.engine.heartbeats import HeartbeatWaiters
from nodeops.engine.logwriter import LogWriter, format_lines, line_stamp
from nodeops.engine.notices import heartbeat_router
from nodeops.engine.packages import ChosenPackage, LocalPackages
from nodeops.engine.pipeline import HostPipeline
from nodeops.engine.steps import StepTimeouts, TransportFactory
from nodeops.errors import LeaseLost, NodeopsError, TransientStoreError
from nodeops.settings import RELAY_PORT
from nodeops.store import cluster, pipelines
from nodeops.store.db import Database, ReadHandle
from nodeops.store.models import utcnow
from nodeops.store.notices import REVOKE_CHANNEL, Listener
from nodeops.store.pipelines import BlockedWork

log = logging.getLogger(__name__)

# (task_id, record_ids, package_version): one broker message, "run these records of this task" (one host's)
Publish = Callable[[int, Sequence[int], str], None]
UNPUBLISHED_AFTER_S = 10.0  # a task committed this long ago and never published was lost by its API process
MAX_CLAIM_RETRY_S = 1.0  # the longest pause of a claim waiting for its host's turn or a slot
REVOKE_BACKSTOP_S = 1.0  # a revoke whose notice was lost still reaches the worker within this
SETTLE_S = 0.02  # a host's end is written at most this long after it, not at the log writer's next tick
# a message whose rolling batch is still closed after this is published again and its thread freed: threads held
# by later batches could otherwise leave an earlier batch's message (republished by the reaper) waiting forever
WAIT_HOLD_S = 3.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    worker_id: str
    concurrency: int  # messages (hosts) this worker takes at once
    job_limit: int  # records running at once over the whole cluster
    lease_s: float
    reaper_interval_s: float
    step_timeout_s: float
    heartbeat_interval_s: float
    claim_retry_s: float = 0.2  # how often a host waiting for its turn (or for a slot) tries again
    relay_port: int = RELAY_PORT  # where proxies' relays listen (configured into proxies and their agents)


MAX_MESSAGE_RECORDS = 10_000


@dataclass(frozen=True, slots=True)
class Claimed:
    """What one claim decided, with the record's work when it became this worker's (None if deleted since)."""

    outcome: cluster.Claim
    work: pipelines.HostWork | BlockedWork | None = None


def is_message(task_id: object, record_ids: object, package_version: object) -> bool:
    """Whether a broker message's arguments are ``(task_id, record_ids, package_version)`` as ``publish_task``
    sends them: positive integer ids (at most ``MAX_MESSAGE_RECORDS``) and a version of at most 64 characters."""

    def is_id(value: object) -> bool:
        return type(value) is int and 0 < value < 2**63

    return (
        is_id(task_id)
        and type(record_ids) is list
        and 0 < len(record_ids) <= MAX_MESSAGE_RECORDS
        and all(is_id(record_id) for record_id in record_ids)
        and type(package_version) is str
        and 0 < len(package_version) <= 64
    )


def worker_id_for(name: str | None) -> str:
    """A worker's id: its name (default: the machine's name) with the process id, unique while it lives."""
    return f"{name or socket.gethostname()}.{os.getpid()}"


def publish_task(db: Database, publish: Publish, task_id: int, package_version: str | None = None) -> int:
    """Publish one message per host of the task's PENDING records and mark the task published; returns the
    number of messages. ``package_version`` None: the one recorded on the task (the newest package if none)."""

    def groups() -> tuple[list[list[int]], str]:
        with db.session() as session:
            version = package_version or cluster.task_package(session, task_id=task_id)
            return cluster.host_groups(session, task_id=task_id), version or packages.choose(db).version

    host_groups, version = groups()
    for record_ids in host_groups:
        publish(task_id, record_ids, version)
    with db.session() as session:
        cluster.mark_published(session, task_id=task_id, package_version=version)
    return len(host_groups)


class Reaper:
    """Ends lost workers and publishes what nobody will run otherwise, every ``interval_s``."""

    def __init__(self, db: Database, tz: tzinfo, publish: Publish, *, interval_s: float) -> None:
        self.db = db
        self.tz = tz
        self.publish = publish
        self.interval_s = interval_s

    def reap_once(self) -> cluster.Reaped | None:
        """One pass (blocking): None when another process reaps at this moment."""
        with self.db.session() as session:
            reaped = cluster.reap(self.db, session, line_for=self._line, unpublished_after_s=UNPUBLISHED_AFTER_S)
        if reaped is None:
            return None
        if reaped.workers:
            log.warning(
                "workers lost their lease: %s; failed %d running instances",
                ", ".join(reaped.workers),
                reaped.records,
                extra={"action": "workers_reaped"},
            )
        for task_id in reaped.republish:
            publish_task(self.db, self.publish, task_id)
        return reaped

    def _needed(self, cur: ReadHandle) -> bool:
        return cluster.reaping_needed(cur, self.db.paramstyle, unpublished_after_s=UNPUBLISHED_AFTER_S)

    async def run(self) -> None:
        """Look every ``interval_s`` (one short read), and reap when there is something to reap."""
        failing = False
        while True:
            try:
                if await self.db.read(self._needed):
                    await asyncio.to_thread(self.reap_once)
            except Exception as exc:  # the database or the broker is away: try again next time, say so once
                if not failing:
                    log.exception(
                        "reaping failed; trying again every %g s", self.interval_s, extra={"action": "reaper_failed"}
                    )
                else:
                    log.debug("reaping failed again: %s", exc)
                failing = True
            else:
                if failing:
                    log.info("reaping works again", extra={"action": "reaper_recovered"})
                failing = False
            await asyncio.sleep(self.interval_s)

    def _line(self, worker_id: str) -> str:
        message = (
            f"工作进程 {worker_id} 失联 (worker {worker_id} stopped renewing its lease: it was killed, paused or cut "
            "off from the database); marked FAILED, retry the instance to run it again"
        )
        return "\n".join(format_lines(message, level="ERROR", stamp=line_stamp(self.tz)))


class ClusterWorker:
    """The engine of one worker process: ``start()``, then ``run()`` from any thread, ``stop()`` at the end."""

    def __init__(
        self,
        db: Database,
        tz: tzinfo,
        box: SecretBox,
        connect: TransportFactory,
        config: WorkerConfig,
        publish: Publish,
        *,
        packages_dir: Path,
        timeouts: StepTimeouts | None = None,
        renderer: AnswerRenderer | None = None,
        on_lease_lost: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.tz = tz
        self.config = config
        self.packages_dir = packages_dir
        self.heartbeats = HeartbeatWaiters()
        self.writer = LogWriter(db, tz, renderer=renderer, worker_id=config.worker_id, on_lease_lost=self._lease_lost)
        self.pipeline = HostPipeline(
            db=db,
            writer=self.writer,
            box=box,
            connect=connect,
            packages=LocalPackages(db, packages_dir),
            worker_id=config.worker_id,
            heartbeats=self.heartbeats,
            timeouts=timeouts or StepTimeouts(),
            step_timeout_s=config.step_timeout_s,
            heartbeat_interval_s=config.heartbeat_interval_s,
            relay_port=config.relay_port,
        )
        self.reaper = Reaper(db, tz, publish, interval_s=config.reaper_interval_s)
        metrics.JOB_LIMIT.set(config.concurrency)  # this worker's share of the cluster's hosts at once
        self._on_lease_lost = on_lease_lost
        self._loop = asyncio.new_event_loop()
        # the database calls of every pipeline (claims, log flushes, reads) run in these threads
        self._loop.set_default_executor(
            ThreadPoolExecutor(max_workers=min(32, config.concurrency + 4), thread_name_prefix="nodeops-db")
        )
        self._chosen: dict[str, ChosenPackage] = {}
        self._thread = threading.Thread(target=self._loop.run_forever, name="nodeops-worker-loop", daemon=True)
        self._running: dict[int, asyncio.Task[Status]] = {}  # record_id -> its pipeline
        self._claimed: set[int] = set()  # the records this worker claimed and has not finished
        self._background: set[asyncio.Task[None]] = set()
        self._lost = threading.Event()
        self._listener: Listener | None = None
        self._prologue = f"由工作进程 {config.worker_id} 执行 (run by worker {config.worker_id})"

    # --- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Take a lease, then start the loop with the log writer, the lease's renewal, the reaper and the watch
        for revoke requests."""
        with self.db.session() as session:
            cluster.register_worker(
                session,
                worker_id=self.config.worker_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                concurrency=self.config.concurrency,
                lease_s=self.config.lease_s,
            )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start_background(), self._loop).result()
        log.info("worker %s started", self.config.worker_id, extra={"action": "worker_started"})

    def stop(self, reason: str = "stopped") -> None:
        """Flush what is written and give up the lease (a worker told to stop finishes its hosts first: the
        broker's warm shutdown waits for ``run`` to return)."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop_background(), self._loop).result(timeout=30)
        if not self._lost.is_set():
            with contextlib.suppress(NodeopsError), self.db.session() as session:
                cluster.end_worker(session, worker_id=self.config.worker_id, reason=reason)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    @property
    def lease_lost(self) -> bool:
        return self._lost.is_set()

    async def _start_background(self) -> None:
        self.writer.start()
        router = heartbeat_router(self.heartbeats)
        router.route(REVOKE_CHANNEL, self._revoke_notice, on_reconnect=lambda: self._revoke_notice(""))
        self._listener = router.listener(self.db, application_name=f"nodeops-listen {self.config.worker_id}"[:63])
        self._listener.start()
        for coroutine, name in (
            (self._renew_lease(), "nodeops-lease"),
            (self.reaper.run(), "nodeops-reaper"),
            (self._watch_revokes(), "nodeops-revokes"),
        ):
            task = asyncio.get_running_loop().create_task(coroutine, name=name)
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _stop_background(self) -> None:
        if self._listener is not None:
            await self._listener.aclose()
        for task in list(self._background):
            task.cancel()
        with contextlib.suppress(LeaseLost):
            await self.writer.aclose()

    # --- running records (called from the broker's threads) ---------------------------------------------------

    def run(self, task_id: object, record_ids: object, package_version: object) -> None:
        """Run the records (one host's, of one task) one after another; returns when they are done, or at once
        for those another worker ran. A message not of that shape is logged and dropped (anyone who can write to
        the broker can send one). Raises LeaseLost if this worker lost its lease meanwhile."""
        if not is_message(task_id, record_ids, package_version):
            log.error(
                "dropped a malformed message: (%.80r, %.80r, %.80r)",
                task_id,
                record_ids,
                package_version,
                extra={"action": "message_dropped"},
            )
            return
        assert isinstance(task_id, int) and isinstance(record_ids, list) and isinstance(package_version, str)
        if self._lost.is_set():
            raise LeaseLost(self.config.worker_id)
        asyncio.run_coroutine_threadsafe(self._run(task_id, record_ids, package_version), self._loop).result()

    async def _run(self, task_id: int, record_ids: Sequence[int], package_version: str) -> None:
        package: ChosenPackage | None = None
        for position, record_id in enumerate(record_ids):
            claimed = await self._claim(record_id)
            if claimed is None:
                continue
            if claimed.outcome is cluster.Claim.WAIT:  # its batch is not open: back of the queue, thread freed
                rest = list(record_ids[position:])
                await asyncio.get_running_loop().run_in_executor(
                    None, self.reaper.publish, task_id, rest, package_version
                )
                return
            job_id, first_step = None, 0
            try:
                work = claimed.work
                if work is None:  # deleted since (retention): nothing left to run or to write
                    continue
                job_id = work.job_id
                if isinstance(work, BlockedWork):
                    self.pipeline.fail_blocked(work)
                    continue
                first_step = work.steps[0].index if work.steps else 0
                if work.transport == "local":
                    self._fail_record(
                        record_id,
                        first_step,
                        "transport=local 不能在集群模式下执行 (a local host would run on whichever worker took it); "
                        "marked FAILED, reinstall the host with transport=ssh",
                    )
                    continue
                if package is None:
                    package = self._chosen.get(package_version)  # read once per worker: no thread for the rest
                if package is None:
                    package = await self.db.call(functools.partial(self._package, package_version))
                pipeline = asyncio.get_running_loop().create_task(
                    self.pipeline.run(work, package, prologue=self._prologue), name=f"host-{work.ip}"
                )
                self._running[record_id] = pipeline
                try:
                    await asyncio.wait([pipeline])
                finally:
                    self._running.pop(record_id, None)
            except (asyncio.CancelledError, LeaseLost):
                raise
            except Exception as exc:  # a claimed record must end: nobody else will run it while this worker lives
                log.exception(
                    "could not run record %d", record_id, extra={"action": "record_failed", "record_id": record_id}
                )
                reason = exc.message if isinstance(exc, NodeopsError) else f"unexpected {type(exc).__name__}"
                self._fail_record(
                    record_id,
                    first_step,
                    f"工作进程无法执行该主机 (worker {self.config.worker_id} could not run this host: {reason}); "
                    "marked FAILED, retry the instance to run it again",
                )
                if job_id is None:
                    with contextlib.suppress(NodeopsError):
                        job_id = await self.db.call(functools.partial(self._job_of, record_id))
            finally:
                self._claimed.discard(record_id)
                # the record's end written before the message is done (and its slot taken again), within
                # SETTLE_S: hosts ending together share the flush
                await self.writer.settled(within_s=SETTLE_S)
                if job_id is not None and not await self.db.read(functools.partial(self._active, job_id)):
                    await self.db.call(functools.partial(self._refresh, job_id))

    async def _claim(self, record_id: int) -> Claimed | None:
        """Wait for the record's turn: its work once this worker claimed it, None if it is no longer PENDING.
        While its host is busy, the cluster full, its rolling batch not open or the database away for a moment
        (``TransientStoreError``), it tries again after a pause that grows to ``MAX_CLAIM_RETRY_S``; a batch still
        closed after ``WAIT_HOLD_S`` returns the WAIT claim, for the message to go back to the queue."""
        pause_s, failed = self.config.claim_retry_s, False
        waiting_since = asyncio.get_running_loop().time()
        while True:
            try:
                claimed = await self.db.call(functools.partial(self._claim_once, record_id, after_failure=failed))
            except TransientStoreError:  # the record is still PENDING (or claimed by a commit that was not heard)
                log.warning(
                    "claiming record %d failed for a passing reason; trying again",
                    record_id,
                    extra={"action": "claim_retry", "record_id": record_id},
                )
                claimed, failed = Claimed(cluster.Claim.BUSY), True
            if claimed.outcome is cluster.Claim.CLAIMED:
                if record_id in self._claimed:  # adopted, but another message of this worker runs it already
                    return None
                self._claimed.add(record_id)
                return claimed
            if claimed.outcome is cluster.Claim.GONE:
                return None
            if claimed.outcome is cluster.Claim.FENCED:
                self._lease_lost()
                raise LeaseLost(self.config.worker_id)
            if (
                claimed.outcome is cluster.Claim.WAIT
                and asyncio.get_running_loop().time() - waiting_since > WAIT_HOLD_S
            ):
                return claimed
            await asyncio.sleep(pause_s * (0.5 + random.random()))
            pause_s = min(pause_s * 2, MAX_CLAIM_RETRY_S)

    def _claim_once(self, record_id: int, *, after_failure: bool = False) -> Claimed:
        """One claim, and the record's work read in the same transaction when it is this worker's. After a
        failed attempt, a record this worker already runs is its own: that attempt's commit was not heard."""
        worker_id = self.config.worker_id
        with self.db.session() as session:
            outcome = cluster.claim(
                self.db,
                session,
                record_id=record_id,
                worker_id=worker_id,
                limit=self.config.job_limit,
                line_for=self._stop_line,
            )
            if after_failure and outcome is cluster.Claim.GONE:
                if cluster.running_owner(session, record_id=record_id) == worker_id:
                    outcome = cluster.Claim.CLAIMED
            work = pipelines.record_work(session, record_id=record_id) if outcome is cluster.Claim.CLAIMED else None
            return Claimed(outcome, work)

    def _stop_line(self, reason: str) -> str:
        """The log line of a record its job's failure threshold keeps from starting (whole lines)."""
        return "\n".join(format_lines(reason, level="WARNING", stamp=line_stamp(self.tz)))

    def _job_of(self, record_id: int) -> int | None:
        with self.db.session() as session:
            return cluster.job_of(session, record_id=record_id)

    def _package(self, version: str) -> ChosenPackage:
        """The package of ``version``, read once per worker (a version's package never changes)."""
        chosen = self._chosen.get(version)
        if chosen is None:
            chosen = self._chosen[version] = packages.choose(self.db, version)
        return chosen

    def _active(self, job_id: int, cur: ReadHandle) -> bool:
        """Whether the job still has records to run: then its recount can wait for its last one."""
        return pipelines.job_has_active_records(cur, self.db.paramstyle, job_id=job_id)

    def _refresh(self, job_id: int) -> None:
        with self.db.session() as session:
            pipelines.refresh_job_if_settled(session, job_id=job_id)

    def _fail_record(self, record_id: int, step_index: int, reason: str) -> None:
        """End a claimed record FAILED without running it, ``reason`` in the log of its first step."""
        now = utcnow()
        self.writer.step(record_id, step_index, Status.FAILED, start_at=now, finish_at=now)
        self.writer.line(record_id, step_index, "ERROR", reason)
        self.writer.record(record_id, Status.FAILED, finish_at=now)

    # --- the lease, and revoke requests --------------------------------------------------------------------

    async def _renew_lease(self) -> None:
        while True:
            await asyncio.sleep(self.config.lease_s / 3)
            try:
                held = await self.db.call(self._renew_once)
            except NodeopsError:  # the database is away: the lease may still be renewed before it passes
                log.warning("renewing the lease failed", extra={"action": "lease_renewal_failed"}, exc_info=True)
                continue
            if not held:
                self._lease_lost()
                return

    def _renew_once(self) -> bool:
        with self.db.session() as session:
            return cluster.renew_lease(session, worker_id=self.config.worker_id, lease_s=self.config.lease_s)

    def _revoke_notice(self, payload: str) -> None:
        """A revoke was requested somewhere (or notices may have been missed): look for this worker's records."""
        if self._running:
            task = asyncio.get_running_loop().create_task(self._cancel_quietly(), name="nodeops-revoke")
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _cancel_quietly(self) -> None:
        with contextlib.suppress(NodeopsError):
            await self.cancel_revoked()

    async def _watch_revokes(self, interval_s: float = REVOKE_BACKSTOP_S) -> None:
        """The backstop of the revoke notices: reads this worker's revoke requests every ``interval_s``."""
        while True:
            await asyncio.sleep(interval_s)
            if self._running:
                with contextlib.suppress(NodeopsError):
                    await self.cancel_revoked()

    async def cancel_revoked(self) -> int:
        """Cancel this worker's pipelines a revoke asked to stop; returns how many."""
        wanted = await self.db.read(self._revoke_requests)
        targets = [self._running[record_id] for record_id in wanted if record_id in self._running]
        for task in targets:
            task.cancel()
        return len(targets)

    def _revoke_requests(self, cur: ReadHandle) -> list[int]:
        return cluster.revoke_requests(cur, self.db.paramstyle, worker_id=self.config.worker_id)

    def _lease_lost(self) -> None:
        """The lease is gone: write nothing more, stop every pipeline, and end the process (``on_lease_lost``)."""
        if self._lost.is_set():
            return
        self._lost.set()
        log.critical(
            "worker %s lost its lease; it stops without writing anything more",
            self.config.worker_id,
            extra={"action": "lease_lost"},
        )
        self.writer.lease_lost = True
        for task in list(self._running.values()):
            task.cancel()
        if self._on_lease_lost is not None:
            self._on_lease_lost()
