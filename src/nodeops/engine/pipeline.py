"""``HostPipeline``: one host's steps, run in order until one fails, whoever decided the host may run.

The embedded engine (``engine.runner``) and a cluster worker (``engine.cluster``) differ only in how a record
gets its turn: a lock and a semaphore in one process, or a claim in PostgreSQL. Once it has it, both run it here.
A step's outcome (SUCCESS, or FAILED with the reason in its log) is queued in ``finally`` so a cancelled step
never stays RUNNING; a host that fails a step leaves the later steps PENDING, as Node Manager does. A record that
cannot run (its host or access point no longer exists) ends FAILED at once, with a line saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from nodeops import metrics
from nodeops.crypto import SecretBox
from nodeops.domain.plans import StepCode
from nodeops.domain.status import Status
from nodeops.engine.heartbeats import HeartbeatWaiters
from nodeops.engine.logwriter import LogWriter
from nodeops.engine.packages import ChosenPackage, LocalPackages
from nodeops.engine.steps import STEPS, StepContext, StepTimeouts, TransportFactory
from nodeops.errors import NodeopsError
from nodeops.settings import RELAY_PORT
from nodeops.store.db import Database
from nodeops.store.models import utcnow
from nodeops.store.pipelines import BlockedWork, HostWork, PlannedRun

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class FanOut:
    """How many hosts run at once, and how long one step may take."""

    limit: int = 100  # hosts running at once, Node Manager's SERVICE_SSH limit (spec §9.1)
    step_timeout_s: float = 600.0


class HostPipeline:
    """Runs a host's record through its steps, writing through ``writer``."""

    def __init__(
        self,
        *,
        db: Database,
        writer: LogWriter,
        box: SecretBox,
        connect: TransportFactory,
        packages: LocalPackages,
        heartbeats: HeartbeatWaiters,
        worker_id: str | None = None,
        timeouts: StepTimeouts,
        step_timeout_s: float,
        heartbeat_interval_s: float,
        relay_port: int = RELAY_PORT,
    ) -> None:
        self.db = db
        self.writer = writer
        self.box = box
        self.connect = connect
        self.packages = packages
        self.worker_id = worker_id  # a cluster worker's: its steps' own writes are fenced by its lease
        self.heartbeats = heartbeats
        self.timeouts = timeouts
        self.step_timeout_s = step_timeout_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.relay_port = relay_port  # where proxies' relays listen (configured into proxies and their agents)

    async def run(self, work: HostWork, package: ChosenPackage, *, prologue: str = "") -> Status:
        """The pipeline of one host, once it has its turn: the record RUNNING, then each step until one fails;
        the record ends SUCCESS or FAILED (returned), also when cancelled. ``prologue``, when given, is the first
        line of the first step run (a worker names itself there)."""
        writer = self.writer
        writer.record(work.record_id, Status.RUNNING, start_at=utcnow())
        context = StepContext(
            work=work,
            db=self.db,
            writer=writer,
            box=self.box,
            package=package,
            packages=self.packages,
            worker_id=self.worker_id,
            timeouts=self.timeouts,
            connect=self.connect,
            heartbeats=self.heartbeats,
            heartbeat_interval_s=self.heartbeat_interval_s,
            relay_port=self.relay_port,
        )
        outcome = Status.SUCCESS
        metrics.HOSTS_RUNNING.inc()
        try:
            for step in work.steps:
                if step.status == Status.SUCCESS.value:  # retry_node resumes after the steps that passed
                    continue
                if not await self._run_step(context, step, prologue):
                    outcome = Status.FAILED
                    break
                prologue = ""
        except asyncio.CancelledError:
            outcome = Status.FAILED
            raise
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(context.aclose())
            writer.record(work.record_id, outcome, finish_at=utcnow())
            metrics.HOSTS_RUNNING.dec()
        return outcome

    async def _run_step(self, context: StepContext, step: PlannedRun, prologue: str) -> bool:
        writer, record_id = self.writer, context.work.record_id
        context.step = step
        context.step_started_at = utcnow()
        writer.step(record_id, step.index, Status.RUNNING, start_at=context.step_started_at)
        if prologue:
            writer.line(record_id, step.index, "INFO", prologue)
        writer.line(record_id, step.index, "INFO", f"开始 {step.name}.")
        outcome, reason = Status.FAILED, ""
        try:
            await asyncio.wait_for(STEPS[StepCode(step.code)](context), timeout=self.step_timeout_s)
            outcome = Status.SUCCESS
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        except TimeoutError:
            reason = f"step timed out after {self.step_timeout_s:g} s"
        except NodeopsError as exc:
            reason = exc.message
        except Exception as exc:
            log.exception(
                "step %s crashed on %s",
                step.name,
                context.work.ip,
                extra={
                    "action": "step_crashed",
                    "job_id": context.work.job_id,
                    "instance_id": context.work.instance_id,
                    "host": context.work.ip,
                    "step": step.name,
                },
            )
            reason = f"unexpected {type(exc).__name__}; see the service log"
        finally:
            if outcome == Status.SUCCESS:
                writer.line(record_id, step.index, "INFO", f"{step.name} 成功")
            elif reason == "cancelled":
                writer.line(record_id, step.index, "WARNING", f"{step.name} 已终止 (revoked by a user)")
            else:
                writer.line(record_id, step.index, "ERROR", f"{step.name} 失败: {reason}")
            finished_at = utcnow()
            writer.step(record_id, step.index, outcome, finish_at=finished_at)
            metrics.STEP_SECONDS.labels(context.work.job_type, step.code).observe(
                (finished_at - context.step_started_at).total_seconds()
            )
            # a step that ends well is in the job's log already; the service's own log names the others
            # (at INFO, a fleet-wide job would write a line per host and step, and spend CPU formatting them)
            log.log(
                logging.DEBUG if outcome == Status.SUCCESS else logging.INFO,
                "step %s %s on %s",
                step.name,
                outcome,
                context.work.ip,
                extra={
                    "action": "step_finished",
                    "job_id": context.work.job_id,
                    "instance_id": context.work.instance_id,
                    "host": context.work.ip,
                    "step": step.name,
                },
            )
        return outcome == Status.SUCCESS

    def ignore_unstarted(self, record_id: int, step_index: int, reason: str) -> None:
        """End a record that will not start (its job passed its failure threshold) IGNORED, its first step too,
        with ``reason`` in that step's log."""
        now = utcnow()
        self.writer.step(record_id, step_index, Status.IGNORED, start_at=now, finish_at=now)
        self.writer.line(record_id, step_index, "WARNING", reason)
        self.writer.record(record_id, Status.IGNORED, finish_at=now)

    def fail_blocked(self, work: BlockedWork) -> None:
        """End a record that cannot run FAILED, its first step not yet passed with it, saying why in its log."""
        if work.ap_id is None:
            reason = (
                f"主机不存在 (host {work.bk_host_id} is no longer in the inventory); "
                "marked FAILED without running, install the host again to run it"
            )
        else:
            reason = (
                f"接入点(id:{work.ap_id})不存在 (the host's access point {work.ap_id} does not exist); marked "
                "FAILED without running, give the host an existing ap_id (install_job or inventory import), then retry"
            )
        now = utcnow()
        self.writer.step(work.record_id, work.step_index, Status.FAILED, start_at=now, finish_at=now)
        self.writer.line(work.record_id, work.step_index, "ERROR", reason)
        self.writer.record(work.record_id, Status.FAILED, start_at=now, finish_at=now)
        log.warning(
            "instance %s of job %d cannot run: %s",
            work.instance_id,
            work.job_id,
            "its host is gone" if work.ap_id is None else f"access point {work.ap_id} does not exist",
            extra={"action": "instance_blocked", "job_id": work.job_id, "instance_id": work.instance_id},
        )
