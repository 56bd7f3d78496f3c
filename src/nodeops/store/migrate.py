"""Schema migrations with Alembic, driven from code (``nodeops db upgrade``) rather than an alembic.ini."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from nodeops.store.db import Database, translate_errors

SCRIPT_LOCATION = "nodeops.store:migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at our migrations and this database."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest)."""
    with translate_errors(), db.engine.begin() as conn:
        _unlimited(db, conn)
        config = alembic_config(db.engine.url.render_as_string(hide_password=False))
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(db: Database, revision: str) -> None:
    """Take the schema back to ``revision`` (``base`` = empty)."""
    with translate_errors(), db.engine.begin() as conn:
        _unlimited(db, conn)
        config = alembic_config(db.engine.url.render_as_string(hide_password=False))
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def _unlimited(db: Database, conn: Connection) -> None:
    """A migration may rewrite a big table: no statement timeout for its transaction (NODEOPS_DB_STATEMENT_TIMEOUT_S
    is for the service's requests and work)."""
    if not db.is_sqlite:
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")


def schema_problem(db: Database) -> str | None:
    """Why this code cannot serve the database as it is: no nodeops schema yet, or a schema older (or newer) than
    the code's newest migration; None when it is current. Raises StoreError when the database cannot be read."""
    head = ScriptDirectory.from_config(alembic_config(str(db.engine.url))).get_current_head()
    with translate_errors(), db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current == head:
        return None
    if current is None:
        return "the database has no nodeops schema yet: run `nodeops db upgrade` (`make run` does it)"
    return (
        f"the database schema is at revision {current} and this nodeops needs {head}: run `nodeops db upgrade` "
        "(`make run` does it); a schema newer than the code needs the newer nodeops"
    )
