"""``Engine``: the embedded dispatcher; runs the PENDING records of a task in this process, one pipeline per
host (``engine.pipeline``), bounded by a global limit.

Each host pipeline is one asyncio task named after its host; a host runs one pipeline at a time. Revoking a job
(or some of its instances) cancels their pipelines: running steps end FAILED with "已终止", pending hosts never
start, and the job is TERMINATED. A retry submits another task of the same job, which may run beside the first.
On start, records a previous process left RUNNING are marked FAILED with a line saying why (crash recovery);
lines already written stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo

from nodeops import metrics
from nodeops.crypto import SecretBox
from nodeops.domain.answer import AnswerRenderer
from nodeops.domain.rollout import Rollout
from nodeops.domain.status import Status
from nodeops.engine.dispatch import REVOKED_LINE, cancel_all
from nodeops.engine.heartbeats import HeartbeatWaiters
from nodeops.engine.logwriter import LogWriter, format_lines, line_stamp
from nodeops.engine.packages import ChosenPackage, LocalPackages
from nodeops.engine.pipeline import FanOut, HostPipeline
from nodeops.engine.steps import DEFAULT_HEARTBEAT_INTERVAL_S, StepTimeouts, TransportFactory
from nodeops.errors import NodeopsError
from nodeops.settings import RELAY_PORT
from nodeops.store import attempts, hosts, jobs, pipelines
from nodeops.store.db import Database
from nodeops.store.models import utcnow
from nodeops.store.pipelines import HostWork, TaskWork

log = logging.getLogger(__name__)
JANITOR_INTERVAL_S = 300.0


async def forget_expired_credentials(db: Database) -> int:
    """Drop host passwords and keys past their retention; returns how many hosts lost them."""

    def forget() -> int:
        with db.session() as session:
            return hosts.forget_expired_credentials(session, now=utcnow())

    return await db.call(forget)


async def forget_credentials_forever(db: Database) -> None:
    """The credentials janitor of the process that runs the API (either dispatcher starts it)."""
    while True:
        try:
            if count := await forget_expired_credentials(db):
                log.info("forgot the credentials of %d hosts", count, extra={"action": "credentials_forgotten"})
        except NodeopsError:
            log.exception("forgetting expired credentials failed", extra={"action": "janitor_failed"})
        await asyncio.sleep(JANITOR_INTERVAL_S)


@dataclass
class _HostTurn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # pipelines running on the host or waiting for it


@dataclass
class _Rolling:
    """A task's batches as it runs (``domain.rollout``): which are open, and how many hosts started and failed."""

    plan: Rollout
    opened: dict[int, asyncio.Event]
    started: int = 0
    failed: int = 0
    stop_reason: str | None = None  # set once the threshold is passed: no host starts after that

    async def turn(self, batch: int | None) -> None:
        """Until the host's batch is open (a record without one, of a retry, runs at once)."""
        if batch is not None and batch in self.opened:
            await self.opened[batch].wait()

    def ended(self, outcome: Status) -> None:
        """A host ended: the threshold is checked, and once passed every batch opens so the hosts waiting end."""
        self.failed += outcome == Status.FAILED
        if self.stop_reason is None and self.plan.threshold_reached(started=self.started, failed=self.failed):
            self.stop_reason = self.plan.stop_reason(started=self.started, failed=self.failed)
            for event in self.opened.values():
                event.set()


@dataclass
class _JobRun:
    tasks: dict[int, asyncio.Task[None]] = field(default_factory=dict)  # record_id -> its host pipeline
    revoked: bool = False
    revoked_records: set[int] = field(default_factory=set)  # revoked one by one (revoke with instance_id_list)
    submitted: int = 0  # tasks of the job submitted and not finished (a retry may run beside the first run)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Engine:
    """Runs jobs in this process. ``start()`` before use, ``aclose()`` at the end."""

    def __init__(
        self,
        db: Database,
        tz: tzinfo,
        box: SecretBox,
        connect: TransportFactory,
        packages: LocalPackages,
        *,
        fan_out: FanOut | None = None,
        timeouts: StepTimeouts | None = None,
        heartbeats: HeartbeatWaiters | None = None,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        renderer: AnswerRenderer | None = None,
        relay_port: int = RELAY_PORT,
    ) -> None:
        """``heartbeats`` is shared with the heartbeat API of the process, so it wakes the steps waiting for a
        heartbeat; ``heartbeat_interval_s`` is the rhythm configured into agents this engine installs;
        ``renderer`` seals the answers of records as they finish (the log API's, so its settings apply); ``packages``
        gives the steps that push a package its local file (``LocalPackages``, the same as a worker's)."""
        self.db = db
        self.fan_out = fan_out or FanOut()
        self.heartbeats = HeartbeatWaiters() if heartbeats is None else heartbeats
        self.writer = LogWriter(db, tz, renderer=renderer)
        self.pipeline = HostPipeline(
            db=db,
            writer=self.writer,
            box=box,
            connect=connect,
            packages=packages,
            heartbeats=self.heartbeats,
            timeouts=timeouts or StepTimeouts(),
            step_timeout_s=self.fan_out.step_timeout_s,
            heartbeat_interval_s=heartbeat_interval_s,
            relay_port=relay_port,
        )
        self._limit = asyncio.Semaphore(self.fan_out.limit)
        metrics.JOB_LIMIT.set(self.fan_out.limit)
        self._hosts: dict[int, _HostTurn] = {}  # the hosts some pipeline runs on or waits for
        self._runs: dict[int, _JobRun] = {}
        self._background: set[asyncio.Task[None]] = set()

    @property
    def timeouts(self) -> StepTimeouts:
        return self.pipeline.timeouts

    @timeouts.setter
    def timeouts(self, timeouts: StepTimeouts) -> None:
        self.pipeline.timeouts = timeouts

    async def start(self) -> None:
        """Start the log writer and the janitor, and fail what a previous process left RUNNING."""
        self.writer.start()
        await self.recover()
        janitor = asyncio.get_running_loop().create_task(self._janitor(), name="nodeops-janitor")
        self._background.add(janitor)
        janitor.add_done_callback(self._background.discard)

    async def forget_expired_credentials(self) -> int:
        """Drop host passwords and keys past their retention; returns how many hosts lost them."""
        return await forget_expired_credentials(self.db)

    async def _janitor(self) -> None:
        await forget_credentials_forever(self.db)

    async def recover(self) -> None:
        left = await self.db.call(lambda: self._left_running())
        for record_id, _job_id, step_index in left:
            if step_index < 0:
                self.writer.line(
                    record_id,
                    0,
                    "ERROR",
                    "服务进程退出, 该主机未执行完 (the service stopped before this "
                    "host finished); marked FAILED on restart, retry the instance to run it",
                )
                self.writer.record(record_id, Status.FAILED, finish_at=utcnow())
                continue
            index = step_index
            self.writer.line(
                record_id,
                index,
                "ERROR",
                "服务进程在执行中退出 (the service stopped while this step ran); "
                "marked FAILED on restart, retry the instance to run it again",
            )
            self.writer.step(record_id, index, Status.FAILED, finish_at=utcnow())
            self.writer.record(record_id, Status.FAILED, finish_at=utcnow())
        await self.writer.flush()
        for job_id in sorted({job_id for _r, job_id, _s in left}):
            await self.db.call(functools.partial(self._refresh, job_id))
        if left:
            log.warning("marked %d interrupted instances FAILED", len(left), extra={"action": "recovered"})

    def submit(self, job_id: int, task_id: int, package: ChosenPackage) -> None:
        """Run the task's PENDING records in the background, pushing ``package`` where a step needs one."""
        run = self._runs.setdefault(job_id, _JobRun())
        run.done.clear()
        run.revoked = False
        run.submitted += 1
        task = asyncio.get_running_loop().create_task(
            self._run_task(job_id, task_id, run, package), name=f"job-{job_id}"
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def wait(self, job_id: int) -> None:
        """Until no pipeline of the job is running (returns at once for an unknown job)."""
        run = self._runs.get(job_id)
        if run is not None:
            await run.done.wait()

    async def revoke(self, job_id: int, record_ids: Sequence[int], *, whole_job: bool) -> None:
        """Cancel the job's pipelines (only those of ``record_ids`` unless ``whole_job``) and mark the job
        TERMINATED; records among ``record_ids`` no pipeline of this process runs end FAILED with the 已终止 line.

        The job is TERMINATED before its pipelines are cancelled: the recount after the last one stops is the one
        that ends the job (and records its notification, ``store.webhooks``), and it must already say TERMINATED."""
        await self.db.call(lambda: self._mark_terminated(job_id))
        run = self._runs.get(job_id)
        if run is not None:
            if whole_job:
                run.revoked = True
                for task in run.tasks.values():
                    task.cancel()
                await run.done.wait()
            else:
                run.revoked_records.update(record_ids)
                targets = [task for record_id, task in run.tasks.items() if record_id in run.revoked_records]
                for task in targets:
                    task.cancel()
                if targets:
                    await asyncio.wait(targets)
        await self.writer.flush()
        line = "\n".join(format_lines(REVOKED_LINE, level="WARNING", stamp=line_stamp(self.writer.tz)))
        await self.db.call(lambda: self._terminate(job_id, record_ids, line))

    async def aclose(self) -> None:
        await cancel_all(self._background)
        await self.writer.aclose()

    async def _run_task(self, job_id: int, task_id: int, run: _JobRun, package: ChosenPackage) -> None:
        tasks: dict[int, asyncio.Task[None]] = {}
        controller: asyncio.Task[None] | None = None
        try:
            work = await self.db.call(lambda: self._pending(task_id))
            await self.db.call(lambda: self._mark_running(job_id))
            for blocked in work.blocked:
                self.pipeline.fail_blocked(blocked)
            rolling = None
            if work.rollout is not None:
                batches = sorted({item.batch for item in work.runnable if item.batch is not None})
                rolling = _Rolling(plan=work.rollout, opened={batch: asyncio.Event() for batch in batches})
            tasks = {
                item.record_id: asyncio.get_running_loop().create_task(
                    self._run_host(item, run, package, rolling), name=f"host-{item.ip}"
                )
                for item in work.runnable
            }
            run.tasks.update(tasks)
            if rolling is not None:
                controller = asyncio.get_running_loop().create_task(
                    self._roll(rolling, work.runnable, tasks), name=f"job-{job_id}-batches"
                )
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        finally:
            if controller is not None:
                await cancel_all([controller])
            for record_id in tasks:
                run.tasks.pop(record_id, None)
            await self.writer.flush()
            await asyncio.shield(self.db.call(lambda: self._refresh(job_id)))
            run.submitted -= 1
            if run.submitted <= 0:
                run.done.set()

    @staticmethod
    async def _roll(rolling: _Rolling, runnable: Sequence[HostWork], tasks: dict[int, asyncio.Task[None]]) -> None:
        """Open the batches one by one: the next once every host of this one has ended and the interval passed
        (no pause once the threshold stopped the job: the hosts left end at once)."""
        for position, batch in enumerate(rolling.opened):
            if position and rolling.stop_reason is None and rolling.plan.batch_interval_s > 0:
                await asyncio.sleep(rolling.plan.batch_interval_s)
            rolling.opened[batch].set()
            members = [tasks[item.record_id] for item in runnable if item.batch == batch]
            if members:
                await asyncio.wait(members)

    @contextlib.asynccontextmanager
    async def _host_turn(self, bk_host_id: int) -> AsyncIterator[None]:
        """Wait until no other pipeline of this engine runs on the host, then hold it: two service instances of
        one host, or a job and another job's retry, would otherwise stop and start its agent at once."""
        turn = self._hosts.setdefault(bk_host_id, _HostTurn())
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if not turn.users:
                del self._hosts[bk_host_id]

    async def _run_host(
        self, work: HostWork, run: _JobRun, package: ChosenPackage, rolling: _Rolling | None = None
    ) -> None:
        writer = self.writer
        async with contextlib.AsyncExitStack() as held:
            try:
                if rolling is not None:  # its batch first: a host waiting for its batch holds nothing
                    await rolling.turn(work.batch)
                if run.revoked or work.record_id in run.revoked_records:
                    raise asyncio.CancelledError
                # the host first, then a slot: a pipeline waiting for its host holds no slot
                await held.enter_async_context(self._host_turn(work.bk_host_id))
                await self._limit.acquire()
            except asyncio.CancelledError:  # revoked before its turn: the instance ends without running
                writer.line(
                    work.record_id,
                    work.steps[0].index if work.steps else 0,
                    "WARNING",
                    "已终止 (revoked by a user before this host started)",
                )
                writer.record(work.record_id, Status.FAILED, finish_at=utcnow())
                raise
            try:
                if rolling is not None:
                    if rolling.stop_reason is not None:  # the threshold was passed while it waited
                        first = next((s.index for s in work.steps if s.status != Status.SUCCESS.value), 0)
                        self.pipeline.ignore_unstarted(work.record_id, first, rolling.stop_reason)
                        return
                    rolling.started += 1
                outcome = await self.pipeline.run(work, package)
            finally:
                self._limit.release()
            if rolling is not None:
                rolling.ended(outcome)

    def _pending(self, task_id: int) -> TaskWork:
        with self.db.session() as session:
            return pipelines.pending_work(session, task_id=task_id)

    def _mark_running(self, job_id: int) -> None:
        with self.db.session() as session:
            jobs.set_job_status(session, job_id=job_id, status=Status.RUNNING)

    def _refresh(self, job_id: int) -> None:
        with self.db.session() as session:
            pipelines.refresh_job(session, job_id=job_id)

    def _mark_terminated(self, job_id: int) -> None:
        with self.db.session() as session:
            jobs.set_job_status(session, job_id=job_id, status=Status.TERMINATED, end_at=utcnow())

    def _terminate(self, job_id: int, record_ids: Sequence[int], line: str) -> None:
        with self.db.session() as session:
            jobs.set_job_status(session, job_id=job_id, status=Status.TERMINATED, end_at=utcnow())
            # instances no pipeline of this process was running (e.g. queued when it restarted)
            attempts.fail_unfinished(self.db, session, record_ids, line=line)
            pipelines.refresh_job(session, job_id=job_id)

    def _left_running(self) -> list[tuple[int, int, int]]:
        with self.db.session() as session:
            return pipelines.interrupted_records(session)
