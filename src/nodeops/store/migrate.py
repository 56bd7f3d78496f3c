"""Schema migrations with Alembic, driven from code (``nodeops db upgrade``) rather than an alembic.ini."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

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
        config = alembic_config(db.engine.url.render_as_string(hide_password=False))
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(db: Database, revision: str) -> None:
    """Take the schema back to ``revision`` (``base`` = empty)."""
    with translate_errors(), db.engine.begin() as conn:
        config = alembic_config(db.engine.url.render_as_string(hide_password=False))
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
