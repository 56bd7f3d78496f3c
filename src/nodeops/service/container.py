"""The services of one process, built once from Settings by an entry point and passed down."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from nodeops.crypto import SecretBox
from nodeops.domain.answer import AnswerRenderer
from nodeops.engine import host_keys, packages
from nodeops.engine.cluster import ClusterWorker, WorkerConfig, worker_id_for
from nodeops.engine.connect import transport_factory
from nodeops.engine.dispatch import Dispatcher
from nodeops.engine.heartbeats import HeartbeatWaiters
from nodeops.engine.pipeline import FanOut
from nodeops.engine.runner import Engine
from nodeops.engine.steps import StepTimeouts, TransportFactory
from nodeops.metrics import MetricsListener
from nodeops.service.agent_watch import AgentWatch
from nodeops.service.auth import Authenticator, Throttle
from nodeops.service.heartbeat_groups import HeartbeatGroups
from nodeops.service.instance_log import LogService
from nodeops.service.job_launch import JobLauncher
from nodeops.service.log_reading import LogReading
from nodeops.service.metrics import read_counts
from nodeops.service.retention import RetentionJanitor
from nodeops.service.webhooks import Notifier
from nodeops.settings import Settings
from nodeops.store import packages as package_rows
from nodeops.store.access import AccessReads
from nodeops.store.db import Database


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    settings: Settings
    db: Database
    auth: Authenticator
    logs: LogService
    reading: LogReading  # follow, search, download, batch (docs/log-reading.md)
    engine: Dispatcher  # the embedded Engine, or CeleryDispatcher in celery mode (it runs no pipeline here)
    jobs: JobLauncher
    heartbeats: HeartbeatWaiters  # steps waiting for a heartbeat, woken by the heartbeat API
    heartbeat_groups: HeartbeatGroups  # the heartbeat API's writes, in groups
    retention: RetentionJanitor  # deletes old jobs when NODEOPS_RETENTION_DAYS > 0
    agent_watch: AgentWatch  # marks agents that stopped heartbeating TERMINATED
    notifier: Notifier  # sends the webhooks of ended jobs (service.webhooks)
    # task id -> the action it runs, for task results; a task's actions never change once it exists
    task_actions: dict[int, str] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Open the database (lazily) and wire the use cases; reads or creates the secret key file.

        Nothing runs until ``start()``: commands that only read or administer never start the engine.
        """
        db = Database.connect(settings.database_url, statement_timeout_s=settings.db_statement_timeout_s)
        secret_key = settings.resolved_secret_key()
        throttle = Throttle(
            max_failures=settings.auth_max_failures,
            window_s=settings.auth_failure_window_s,
            block_s=settings.auth_block_s,
        )
        auth = Authenticator(AccessReads(db), secret_key, throttle=throttle)
        box = SecretBox(secret_key)
        heartbeats = HeartbeatWaiters()
        engine: Dispatcher
        if settings.executor == "celery":
            from nodeops.engine.dispatch.celery import CeleryDispatcher

            engine = CeleryDispatcher(
                db, settings.tz, broker_url=settings.broker_url, reaper_interval_s=settings.reaper_interval_s
            )
        else:
            engine = Engine(
                db,
                settings.tz,
                box,
                _transports(settings, db),
                packages.LocalPackages(db, settings.packages_dir),
                fan_out=FanOut(limit=settings.job_limit, step_timeout_s=settings.step_timeout_s),
                heartbeats=heartbeats,
                timeouts=step_timeouts(settings),
                heartbeat_interval_s=settings.agent_heartbeat_interval_s,
                relay_port=settings.proxy_relay_port,
                renderer=AnswerRenderer(settings.tz, step_max_bytes=settings.log_step_max_bytes),
            )
        logs = LogService(db, auth, settings.tz, step_max_bytes=settings.log_step_max_bytes)
        return cls(
            settings=settings,
            db=db,
            auth=auth,
            logs=logs,
            reading=LogReading(db, logs),
            engine=engine,
            jobs=JobLauncher(db, engine, settings, box),
            heartbeats=heartbeats,
            heartbeat_groups=HeartbeatGroups(db, heartbeats),
            retention=RetentionJanitor(db, days=settings.retention_days, interval_s=settings.cleanup_interval_s),
            agent_watch=AgentWatch(
                db, misses=settings.agent_missed_heartbeats, default_interval_s=settings.agent_heartbeat_interval_s
            ),
            notifier=Notifier(db, settings),
        )

    async def start(self) -> None:
        """Make access point 1 point at this service, register the bundled agent (its bytes into the database) and
        store the bytes of packages registered without them, import a known_hosts file left in the data dir, start
        the engine (which fails what a previous process left running), then the background work: retention and
        the watch for agents that stop (in each API process, in both modes: ``service.agent_watch``) and the
        delivery of webhooks (``service.webhooks``)."""

        def prepare() -> None:
            with self.db.session() as session:
                package_rows.ensure_default_access_point(session, server_url=self.settings.agent_server_url)
            packages.register(self.db, self.settings.packages_dir)
            packages.store_missing_contents(self.db)
            host_keys.import_known_hosts(self.db, self.settings.known_hosts_path)

        await self.db.call(prepare)
        await self.engine.start()
        self.retention.start()
        self.agent_watch.start()
        self.notifier.start()

    async def aclose(self) -> None:
        await self.notifier.aclose()
        await self.agent_watch.aclose()
        await self.retention.aclose()
        await self.engine.aclose()
        self.close()

    def close(self) -> None:
        self.reading.close()
        self.db.dispose()


def step_timeouts(settings: Settings) -> StepTimeouts:
    """The steps' waits as configured (the embedded engine's and a worker's alike)."""
    return StepTimeouts(
        poll_interval_s=settings.heartbeat_poll_s,
        manual_install_s=settings.manual_install_timeout_s,
        manual_poll_s=settings.manual_install_poll_s,
    )


def _transports(settings: Settings, db: Database) -> TransportFactory:
    return transport_factory(db=db, policy=settings.ssh_host_key_policy, connect_timeout_s=30.0)


LEASE_LOST_EXIT = 75  # a worker that lost its lease ends at once with this status (EX_TEMPFAIL: start it again)


def run_worker(
    settings: Settings,
    *,
    name: str | None,
    concurrency: int | None,
    celery_args: Sequence[str],
    metrics_port: int | None = None,
) -> None:
    """``nodeops worker``: one worker process of the cluster, until Celery's worker stops (SIGTERM: it finishes its
    hosts first). Should it lose its lease, it ends at once (exit status 75) without writing anything more. With
    NODEOPS_METRICS_TOKEN set it serves its own /metrics (``worker_metrics``) while it runs."""
    from nodeops.engine.dispatch import celery as celery_dispatch

    concurrency = concurrency or settings.worker_concurrency
    worker_id = worker_id_for(name)
    db = Database.connect(
        settings.database_url, pool_size=min(32, concurrency + 4), statement_timeout_s=settings.db_statement_timeout_s
    )
    app = celery_dispatch.celery_app(settings.broker_url)
    config = WorkerConfig(
        worker_id=worker_id,
        concurrency=concurrency,
        job_limit=settings.job_limit,
        lease_s=settings.worker_lease_s,
        reaper_interval_s=settings.reaper_interval_s,
        step_timeout_s=settings.step_timeout_s,
        heartbeat_interval_s=settings.agent_heartbeat_interval_s,
        relay_port=settings.proxy_relay_port,
    )
    worker = ClusterWorker(
        db,
        settings.tz,
        SecretBox(settings.resolved_secret_key()),
        _transports(settings, db),
        config,
        celery_dispatch.publisher(app),
        packages_dir=settings.packages_dir,
        timeouts=step_timeouts(settings),
        renderer=AnswerRenderer(settings.tz, step_max_bytes=settings.log_step_max_bytes),
        on_lease_lost=lambda: os._exit(LEASE_LOST_EXIT),
    )
    notifier = NotifierThread(Notifier(db, settings))
    notifier.start()
    listener = worker_metrics(settings, db, port=metrics_port)
    try:
        celery_dispatch.run_worker(app, worker, name=worker_id, concurrency=concurrency, celery_args=celery_args)
    finally:
        if listener is not None:
            listener.stop()
        notifier.stop()
        db.dispose()


class NotifierThread:
    """A worker's ``Notifier``, on a loop of its own in a thread: the worker's loop belongs to its engine."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nodeops-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

        async def begin() -> None:
            self.notifier.start()

        asyncio.run_coroutine_threadsafe(begin(), self._loop).result(timeout=30)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.notifier.aclose(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def worker_metrics(settings: Settings, db: Database, *, port: int | None) -> MetricsListener | None:
    """A worker's own /metrics listener, started (on ``port``, else NODEOPS_WORKER_METRICS_PORT), when
    NODEOPS_METRICS_TOKEN is set; None when it is not."""
    token = settings.metrics_token.get_secret_value()
    if not token:
        return None
    listener = MetricsListener(
        settings.worker_metrics_host,
        settings.worker_metrics_port if port is None else port,
        token,
        functools.partial(read_counts, db, settings),
    )
    listener.start()
    return listener
