"""A PostgreSQL database for one benchmark run: on a throwaway server this module starts, or on a given one.

``--database postgresql`` starts a private server (``scripts/test-postgres.sh`` with a data folder in the run's
temp dir and a free port on 127.0.0.1) and destroys it afterwards; ``--database postgresql=URL`` uses the server
at URL (an admin URL on 127.0.0.0/8, such as the test suite's). Either way the bench gets a database of its own,
``nodeops_bench_<random>``, dropped at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "test-postgres.sh"


def parse_database(value: str) -> str | None:
    """``sqlite`` -> None; ``postgresql`` -> "" (start a server); ``postgresql=URL`` -> URL. Raises ValueError."""
    if value == "sqlite":
        return None
    name, _, url = value.partition("=")
    if name != "postgresql":
        raise ValueError("--database takes sqlite, postgresql or postgresql=URL")
    if url:
        host = sa.make_url(url).host or ""
        if not host.startswith("127."):
            raise ValueError("--database postgresql=URL must point to 127.0.0.0/8")
        if not url.startswith("postgresql+psycopg://"):
            raise ValueError("--database postgresql=URL takes a postgresql+psycopg:// URL")
    return url


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def server(admin_url: str, temp: Path) -> Iterator[str]:
    """The admin URL of a PostgreSQL server for the run: ``admin_url``, or a throwaway one started in ``temp``
    when it is empty (stopped and deleted on exit)."""
    if admin_url:
        yield admin_url
        return
    folder = temp / "postgres"
    folder.mkdir(mode=0o755)
    os.chmod(temp, 0o755)  # the server runs as the postgres user when the bench runs as root
    env = {
        **os.environ,
        "TEST_PG_DIR": str(folder),
        "TEST_PG_PORT": str(_free_port()),
        "TEST_PG_URL_FILE": str(temp / "postgres-url"),
    }
    try:
        subprocess.run(["bash", str(SCRIPT), "start"], env=env, check=True, capture_output=True, text=True)
        yield (temp / "postgres-url").read_text().strip()
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"could not start PostgreSQL: {(exc.stderr or exc.stdout).strip()}") from None
    finally:
        subprocess.run(["bash", str(SCRIPT), "destroy"], env=env, check=False, capture_output=True)


@contextlib.contextmanager
def database(admin_url: str) -> Iterator[str]:
    """A new empty database on the server at ``admin_url`` for this run, dropped on exit: its URL."""
    name = f"nodeops_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def size_mib(url: str) -> float:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return float(conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()) / 2**20
    finally:
        engine.dispose()
