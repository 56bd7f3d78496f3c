"""The services of one process, built once from Settings by an entry point and passed down."""

from __future__ import annotations

from dataclasses import dataclass

from nodeops.service.auth import Authenticator
from nodeops.service.logs import LogService
from nodeops.settings import Settings
from nodeops.store.access import AccessReads
from nodeops.store.db import Database


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    settings: Settings
    db: Database
    auth: Authenticator
    logs: LogService

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Open the database (lazily) and wire the use cases; reads or creates the secret key file."""
        db = Database.connect(settings.database_url)
        auth = Authenticator(AccessReads(db), settings.resolved_secret_key())
        return cls(settings=settings, db=db, auth=auth, logs=LogService(db, auth, settings.tz))

    def close(self) -> None:
        self.db.dispose()
