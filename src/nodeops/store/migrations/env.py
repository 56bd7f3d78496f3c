"""Alembic environment: migrates the database named by the config's ``sqlalchemy.url`` (SQLite in batch mode)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from nodeops.store.models import Base

config = context.config


def run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


given = config.attributes.get("connection")
if given is not None:
    run(given)
else:
    # our own engine, so close its connection here rather than leave it open until garbage collection
    engine = create_engine(config.get_main_option("sqlalchemy.url", ""), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            run(conn)
    finally:
        engine.dispose()
