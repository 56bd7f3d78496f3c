"""The services of one process, built once from Settings by an entry point and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeops.crypto import SecretBox
from nodeops.domain.answer import AnswerRenderer
from nodeops.engine import host_keys, packages
from nodeops.engine.connect import transport_factory
from nodeops.engine.heartbeats import HeartbeatWaiters
from nodeops.engine.runner import Engine, FanOut
from nodeops.service.auth import Authenticator, Throttle
from nodeops.service.heartbeat_groups import HeartbeatGroups
from nodeops.service.instance_log import LogService
from nodeops.service.job_launch import JobLauncher
from nodeops.service.log_reading import LogReading
from nodeops.service.retention import RetentionJanitor
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
    engine: Engine
    jobs: JobLauncher
    heartbeats: HeartbeatWaiters  # steps waiting for a heartbeat, woken by the heartbeat API
    heartbeat_groups: HeartbeatGroups  # the heartbeat API's writes, in groups
    retention: RetentionJanitor  # deletes old jobs when NODEOPS_RETENTION_DAYS > 0
    # task id -> the action it runs, for task results; a task's actions never change once it exists
    task_actions: dict[int, str] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Open the database (lazily) and wire the use cases; reads or creates the secret key file.

        Nothing runs until ``start()``: commands that only read or administer never start the engine.
        """
        db = Database.connect(settings.database_url)
        secret_key = settings.resolved_secret_key()
        throttle = Throttle(
            max_failures=settings.auth_max_failures,
            window_s=settings.auth_failure_window_s,
            block_s=settings.auth_block_s,
        )
        auth = Authenticator(AccessReads(db), secret_key, throttle=throttle)
        box = SecretBox(secret_key)
        heartbeats = HeartbeatWaiters()
        engine = Engine(
            db,
            settings.tz,
            box,
            transport_factory(db=db, policy=settings.ssh_host_key_policy, connect_timeout_s=30.0),
            packages.LocalPackages(db, settings.packages_dir),
            fan_out=FanOut(limit=settings.job_limit, step_timeout_s=settings.step_timeout_s),
            heartbeats=heartbeats,
            heartbeat_interval_s=settings.agent_heartbeat_interval_s,
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
        )

    async def start(self) -> None:
        """Make access point 1 point at this service, register the bundled agent (its bytes into the database) and
        store the bytes of packages registered without them, import a known_hosts file left in the data dir, start
        the engine (which fails what a previous process left running)."""

        def prepare() -> None:
            with self.db.session() as session:
                package_rows.ensure_default_access_point(session, server_url=self.settings.agent_server_url)
            packages.register(self.db, self.settings.packages_dir)
            packages.store_missing_contents(self.db)
            host_keys.import_known_hosts(self.db, self.settings.known_hosts_path)

        await self.db.call(prepare)
        await self.engine.start()
        self.retention.start()

    async def aclose(self) -> None:
        await self.retention.aclose()
        await self.engine.aclose()
        self.close()

    def close(self) -> None:
        self.reading.close()
        self.db.dispose()
