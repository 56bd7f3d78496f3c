"""Alembic environment: migrates the database named by the config's ``sqlalchemy.url`` (SQLite in batch mode)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from nodeops.store.models import Base

config = context.config
connectable = config.attributes.get("connection") or create_engine(config.get_main_option("sqlalchemy.url", ""))


def run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if hasattr(connectable, "connect"):
    with connectable.connect() as conn:
        run(conn)
else:
    run(connectable)
