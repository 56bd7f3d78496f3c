"""The services of one process, built once from Settings by an entry point and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeops.crypto import SecretBox
from nodeops.engine import packages
from nodeops.engine.connect import transport_factory
from nodeops.engine.runner import Engine, FanOut
from nodeops.service.auth import Authenticator
from nodeops.service.jobs import JobRunner
from nodeops.service.logs import LogService
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
    engine: Engine
    jobs: JobRunner
    # task id -> the action it runs, for task results; a task's actions never change once it exists
    task_actions: dict[int, str] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Open the database (lazily) and wire the use cases; reads or creates the secret key file.

        Nothing runs until ``start()``: commands that only read or administer never start the engine.
        """
        db = Database.connect(settings.database_url)
        secret_key = settings.resolved_secret_key()
        auth = Authenticator(AccessReads(db), secret_key)
        box = SecretBox(secret_key)
        engine = Engine(
            db,
            settings.tz,
            box,
            transport_factory(
                known_hosts=settings.known_hosts_path, policy=settings.ssh_host_key_policy, connect_timeout_s=30.0
            ),
            fan_out=FanOut(limit=settings.job_limit, step_timeout_s=settings.step_timeout_s),
        )
        return cls(
            settings=settings,
            db=db,
            auth=auth,
            logs=LogService(db, auth, settings.tz),
            engine=engine,
            jobs=JobRunner(db, engine, settings, box),
        )

    async def start(self) -> None:
        """Make access point 1 point at this service, register the bundled agent, start the engine
        (which fails what a previous process left running)."""

        def prepare() -> None:
            with self.db.session() as session:
                package_rows.ensure_default_access_point(session, server_url=self.settings.agent_server_url)
            packages.register(self.db, self.settings.packages_dir)

        await self.db.call(prepare)
        await self.engine.start()

    async def aclose(self) -> None:
        await self.engine.aclose()
        self.close()

    def close(self) -> None:
        self.db.dispose()
