"""The SSH host keys the service trusts, one per address and port (``host_keys``), shared by every process.

``HostKeyTable`` is what the SSH transport receives as its ``HostKeyStore`` (engine/transports/ssh.py): the first
process to record a new host's key wins, and any other one reads that key back and compares it with the one it was
shown. A key is kept as its OpenSSH algorithm name and base64 blob ("ssh-ed25519 AAAA...").
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nodeops.store.db import Database, lock_for_update
from nodeops.store.models import HostKey

LOCK_NAME = "host_keys"  # serializes "this host has no key yet, so record this one"


def trusted_keys(session: Session, host: str, port: int) -> list[str]:
    """The key trusted for ``host:port`` as ``["algorithm base64"]``, or ``[]`` when none is."""
    row = session.get(HostKey, (host, port))
    return [] if row is None else [f"{row.algorithm} {row.key}"]


def trust_first(session: Session, host: str, port: int, key: str) -> list[str]:
    """Record ``key`` ("algorithm base64") for ``host:port`` unless a key is trusted for it already; returns the
    key trusted afterwards, which is another one when another process recorded its key first."""
    algorithm, blob = _split(key)
    lock_for_update(session, LOCK_NAME)
    known = trusted_keys(session, host, port)
    if known:
        return known
    session.add(HostKey(host=host, port=port, algorithm=algorithm, key=blob))
    return [f"{algorithm} {blob}"]


def add_missing(session: Session, entries: Iterable[tuple[str, int, str]]) -> int:
    """Trust each ``(host, port, "algorithm base64")`` whose address has no key yet; returns how many were
    added. The first entry of an address wins, as in ``trust_first``."""
    lock_for_update(session, LOCK_NAME)
    known = {(host, port) for host, port in session.execute(select(HostKey.host, HostKey.port))}
    added = 0
    for host, port, key in entries:
        if (host, port) in known:
            continue
        algorithm, blob = _split(key)
        session.add(HostKey(host=host, port=port, algorithm=algorithm, key=blob))
        known.add((host, port))
        added += 1
    return added


def forget(session: Session, host: str, port: int | None = None) -> int:
    """Stop trusting the key of ``host`` on ``port`` (every port when None), so the next login trusts the key the
    host shows then (policy accept-new); returns how many keys were forgotten."""
    statement = delete(HostKey).where(HostKey.host == host)
    if port is not None:
        statement = statement.where(HostKey.port == port)
    return int(getattr(session.execute(statement), "rowcount", 0) or 0)


def _split(key: str) -> tuple[str, str]:
    algorithm, blob = key.split()[:2]
    return algorithm, blob


class HostKeyTable:
    """The ``HostKeyStore`` of the SSH transport, on this database; each call is one unit of work off the loop."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def known(self, host: str, port: int) -> list[str]:
        """The keys trusted for ``host:port``, each "algorithm base64" (none: ``[]``)."""

        def read() -> list[str]:
            with self.db.session() as session:
                return trusted_keys(session, host, port)

        return await self.db.call(read)

    async def add(self, host: str, port: int, key: str) -> list[str]:
        """Trust ``key`` for ``host:port`` if no key is trusted for it yet; returns the keys trusted afterwards."""

        def write() -> list[str]:
            with self.db.session() as session:
                return trust_first(session, host, port, key)

        return await self.db.call(write)


class ReadAhead:
    """The ``HostKeyStore`` of one host's transport whose trusted keys were read with its work
    (``HostWork.host_keys``): ``known`` answers for that address from them, without a query of its own; ``add``
    is the table's, and the keys it returns are those known for the address from then on."""

    def __init__(self, table: HostKeyTable, host: str, port: int, keys: Iterable[str]) -> None:
        self.table = table
        self.address = (host, port)
        self.keys = list(keys)

    async def known(self, host: str, port: int) -> list[str]:
        if (host, port) == self.address:
            return list(self.keys)
        return await self.table.known(host, port)

    async def add(self, host: str, port: int, key: str) -> list[str]:
        keys = await self.table.add(host, port, key)
        if (host, port) == self.address:
            self.keys = list(keys)
        return keys
