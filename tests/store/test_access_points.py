"""The default access point is written by every process that starts; processes starting together (``nodeops serve
--workers N``) must not collide on inserting it."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from nodeops.store import packages
from nodeops.store.db import Database
from nodeops.store.models import AccessPoint

STARTS = 8


def test_processes_starting_together_write_the_default_access_point_once(database_url):
    db = Database.connect(database_url, pool_size=STARTS)
    try:
        with db.session() as session:
            session.execute(sa.delete(AccessPoint))
        barrier = threading.Barrier(STARTS)
        failures: list[BaseException] = []

        def start(n: int) -> None:
            barrier.wait()
            try:
                with db.session() as session:
                    packages.ensure_default_access_point(session, server_url=f"http://127.0.0.1:{8000 + n}")
            except BaseException as exc:  # collected and asserted below
                failures.append(exc)

        threads = [threading.Thread(target=start, args=(n,)) for n in range(STARTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert failures == []
        with db.session() as session:
            (only,) = session.scalars(sa.select(AccessPoint)).all()
        assert only.id == packages.DEFAULT_AP_ID
        assert only.server_url in {f"http://127.0.0.1:{8000 + n}" for n in range(STARTS)}
    finally:
        db.dispose()
