"""The files of the embedded mode that hold secrets are created readable by their owner only (0600), whatever
the umask: the SQLite database (hosts' logs, sealed credentials) with its WAL files, and the generated secret
key. SQLite only: PostgreSQL keeps no file of ours."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from nodeops.settings import SECRET_KEY_FILE_NAME, Settings
from nodeops.store import migrate
from nodeops.store.db import Database


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """A umask that lets every user read new files, as many systems have."""
    previous = os.umask(0o002)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_database_and_its_wal_files_are_readable_by_their_owner_only(tmp_path, loose_umask):
    path = tmp_path / "data" / "nodeops.sqlite3"
    db = Database.connect(f"sqlite:///{path}")
    try:
        migrate.upgrade(db)
        with db.session() as session:
            session.execute(text("SELECT 1"))
        assert mode(path) == 0o600
        companions = [Path(f"{path}{suffix}") for suffix in ("-wal", "-shm")]
        assert all(companion.exists() for companion in companions)  # WAL mode, with a connection open
        assert [mode(companion) for companion in companions] == [0o600, 0o600]
    finally:
        db.dispose()


def test_an_existing_database_file_keeps_its_mode_and_contents(tmp_path, loose_umask):
    path = tmp_path / "nodeops.sqlite3"
    first = Database.connect(f"sqlite:///{path}")
    migrate.upgrade(first)
    first.dispose()
    path.chmod(0o640)  # the operator's choice
    again = Database.connect(f"sqlite:///{path}")
    try:
        with again.session() as session:
            assert session.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        assert mode(path) == 0o640
    finally:
        again.dispose()


def test_the_generated_secret_key_is_readable_by_its_owner_only(tmp_path, loose_umask):
    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    key = settings.resolved_secret_key()
    path = tmp_path / "data" / SECRET_KEY_FILE_NAME
    assert mode(path) == 0o600
    assert len(key) >= 32 and settings.resolved_secret_key() == key  # generated once, then read
