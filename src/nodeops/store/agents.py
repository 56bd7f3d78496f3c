"""A host's agent state: heartbeats the agent reports, the status, version and token the steps set, and the
agents that stopped reporting.

Raw statements: every agent reports on a rhythm and every host of a job sets its state, so these stay indexed
statements; heartbeats that arrive together are written in one transaction (``record_heartbeats``), on
PostgreSQL in one statement, and the first heartbeat after an agent (re)started is announced to the other
processes (``notices.HEARTBEAT_CHANNEL``). RUNNING agents silent for too long are marked TERMINATED
(``mark_silent``: one read, then an update by primary key), and a heartbeat makes its host RUNNING again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from nodeops.domain.agent_status import AgentStatus
from nodeops.errors import LeaseLost, StoreError
from nodeops.store import notices
from nodeops.store.cluster import LEASE_HELD
from nodeops.store.db import Database, ReadHandle, WriteHandle, stored_utc
from nodeops.store.models import utcnow

log = logging.getLogger(__name__)
RUNNING, TERMINATED = AgentStatus.RUNNING.value, AgentStatus.TERMINATED.value


class AgentHeartbeat(NamedTuple):
    """A heartbeat to record: the host, the SHA-256 of the token it sent, and the version it reports."""

    bk_host_id: int
    token_hash: bytes
    version: str


class HeartbeatsRecorded(NamedTuple):
    """What ``record_heartbeats`` did: per beat, whether it was recorded (False, nothing written for it: its token
    is not the host's, or there is no such host); and the hosts it made RUNNING again from TERMINATED."""

    recorded: list[bool]
    revived: list[int]


def record_heartbeats(db: Database, beats: Sequence[AgentHeartbeat]) -> HeartbeatsRecorded:
    """Record ``beats`` in one transaction, each making its host RUNNING (a TERMINATED one too: it is back).
    Raises StoreError when the transaction fails, and then none is recorded.

    A beat that matches no row changes nothing and leaves the transaction intact, so a wrong token never fails
    the others. The stored value is a SHA-256, so comparing it in SQL tells a caller nothing about a token. Of
    several beats of one host, the last one's version stays.

    On PostgreSQL, a beat that changes what a waiting 查询Agent状态 looks at is announced with ``NOTIFY`` on
    ``notices.HEARTBEAT_CHANNEL`` (payload ``bk_host_id:version``), so a step waiting in another process wakes
    at once: the first beat after the agent was (re)started (the steps that (re)start it clear the host's last
    heartbeat first), and a beat whose version or status is not the host's. The steady beats of a running agent
    (thousands a second) send nothing. The notices go after the group's commit, in a second, short transaction
    of their own, only when there are some:

    - a transaction that NOTIFYs takes, as it commits, a lock every notifying transaction of the cluster shares;
      out of the group's transaction, the groups of every process commit without it;
    - sent after the commit, a notice never arrives before what it announces can be read;
    - if that second transaction fails (logged), or the process ends between the two, the heartbeats are still
      recorded, and the waiting step finds them at its next read of the store.
    """
    now = db.bind_time(utcnow())
    with db.transaction() as cur:
        if db.is_sqlite:
            return _record_one_by_one(cur, beats, now)
        recorded, news = _record_in_one_statement(cur, beats, now)
    if news:
        _announce(db, [(host, version) for host, version, _revived in news])
    return HeartbeatsRecorded(recorded.recorded, recorded.revived)


def _announce(db: Database, news: Sequence[tuple[int, str]]) -> None:
    try:
        with db.transaction() as cur:
            notices.notify_many(db, cur, notices.HEARTBEAT_CHANNEL, [f"{host}:{version}" for host, version in news])
    except StoreError:
        log.warning(
            "%d heartbeats are recorded but could not be announced; waiting steps find them at their next read",
            len(news),
            extra={"action": "heartbeat_notice_failed"},
        )


_RECORD_ONE = (
    "UPDATE hosts SET agent_status = ?, agent_version = ?, last_heartbeat_at = ?, updated_at = ? "
    "WHERE bk_host_id = ? AND agent_token_hash = ?"
)


def _record_one_by_one(cur: WriteHandle, beats: Sequence[AgentHeartbeat], now: Any) -> HeartbeatsRecorded:
    # SQLite runs in process: a statement per beat costs microseconds, and its changed-row count is the answer.
    # A beat first revives its host if it is TERMINATED, then (it was not) records itself: both are writes, in the
    # transaction's write lock, so no other writer (the watch) comes between what a beat saw and what it wrote.
    recorded: list[bool] = []
    revived: list[int] = []
    for beat in beats:
        values = (RUNNING, beat.version, now, now, beat.bk_host_id, beat.token_hash)
        cur.execute(_RECORD_ONE + " AND agent_status = ?", (*values, TERMINATED))
        if cur.rowcount == 1:
            revived.append(beat.bk_host_id)
        else:
            cur.execute(_RECORD_ONE, values)
        recorded.append(cur.rowcount == 1)
    return HeartbeatsRecorded(recorded, revived)


# PostgreSQL: one round trip for the whole group. A row is updated once per statement, so each (host, token) goes
# once, with its last version; the (host, token) pairs that matched a row are the ones recorded. The rows are
# first locked in bk_host_id order (``before``), which does two things: the groups of two processes lock their
# hosts in one order, so they never deadlock on each other; and ``before`` holds each row as it was just before
# this update, locked, so whether the beat is news is decided on the latest committed state (UPDATE ... RETURNING
# shows only the new row, and a plain join to hosts would show the statement's snapshot).
_RECORD_GROUP = (
    "WITH v AS (SELECT * FROM unnest(%s::bigint[], %s::bytea[], %s::text[]) AS v(bk_host_id, token_hash, version)), "
    "before AS (SELECT h.bk_host_id, h.agent_status, h.agent_version, h.last_heartbeat_at FROM hosts AS h "
    "JOIN v ON h.bk_host_id = v.bk_host_id AND h.agent_token_hash = v.token_hash "
    "ORDER BY h.bk_host_id FOR UPDATE OF h) "
    "UPDATE hosts AS h SET agent_status = %s, agent_version = v.version, last_heartbeat_at = %s, updated_at = %s "
    "FROM before JOIN v ON v.bk_host_id = before.bk_host_id "
    "WHERE h.bk_host_id = before.bk_host_id AND h.agent_token_hash = v.token_hash "
    "RETURNING v.bk_host_id, v.token_hash, v.version, before.last_heartbeat_at IS NULL "
    "OR before.agent_status IS DISTINCT FROM %s OR before.agent_version IS DISTINCT FROM v.version, "
    "before.agent_status = %s"
)


def _record_in_one_statement(
    cur: WriteHandle, beats: Sequence[AgentHeartbeat], now: Any
) -> tuple[HeartbeatsRecorded, list[tuple[int, str, bool]]]:
    """What was recorded, and ``(bk_host_id, version, revived)`` of the recorded beats that are news (a revived
    host's always is: its status was not RUNNING)."""
    versions = {(beat.bk_host_id, beat.token_hash): beat.version for beat in beats}
    cur.execute(
        _RECORD_GROUP,
        (
            [key[0] for key in versions],
            [key[1] for key in versions],
            list(versions.values()),
            RUNNING,
            now,
            now,
            RUNNING,
            TERMINATED,
        ),
    )
    rows = cur.fetchall()
    matched = {(row[0], bytes(row[1])) for row in rows}
    news = [(int(row[0]), str(row[2]), bool(row[4])) for row in rows if row[3]]
    recorded = [(beat.bk_host_id, beat.token_hash) in matched for beat in beats]
    return HeartbeatsRecorded(recorded, sorted({host for host, _version, revived in news if revived})), news


def heartbeat_state(cur: ReadHandle, paramstyle: str, *, bk_host_id: int) -> tuple[str | None, bool]:
    """``(agent_version, whether a heartbeat is recorded)`` of a host: one indexed read on the cursor
    ``Database.read`` hands over."""
    cur.execute(
        "SELECT agent_version, last_heartbeat_at IS NOT NULL FROM hosts WHERE bk_host_id = " + paramstyle,
        (bk_host_id,),
    )
    row = cur.fetchone()
    return (None, False) if row is None else (row[0], bool(row[1]))


def set_agent(
    db: Database,
    *,
    bk_host_id: int,
    status: str,
    version: str | None = None,
    token_hash: bytes | None = None,
    heartbeat_interval_s: float | None = None,
    clear_heartbeat: bool = False,
    worker_id: str | None = None,
) -> None:
    """Set a host's agent status, and its version, token hash, heartbeat interval (the one its config says, which
    ``mark_silent`` counts the misses in) or last heartbeat (cleared) when asked: one raw statement in its own
    transaction, as the steps of every host of a job call it. A cluster worker's step gives its ``worker_id``:
    the write is made only while it holds its lease (``store.cluster.hold_lease``), else LeaseLost."""
    p = db.paramstyle
    columns, values = ["agent_status", "updated_at"], [status, db.bind_time(utcnow())]
    if version is not None:
        columns.append("agent_version")
        values.append(version)
    if token_hash is not None:
        columns.append("agent_token_hash")
        values.append(token_hash)
    if heartbeat_interval_s is not None:
        columns.append("heartbeat_interval_s")
        values.append(heartbeat_interval_s)
    assignments = ", ".join(f"{column} = {p}" for column in columns)
    if clear_heartbeat:
        assignments += ", last_heartbeat_at = NULL"
    with db.transaction() as cur:
        if worker_id is not None:
            cur.execute(f"{LEASE_HELD} {p} FOR SHARE", (worker_id,))
            if cur.fetchone() is None:
                raise LeaseLost(worker_id)
        cur.execute(f"UPDATE hosts SET {assignments} WHERE bk_host_id = {p}", (*values, bk_host_id))


class Silenced(NamedTuple):
    """What ``mark_silent`` did: ``(bk_host_id, last heartbeat)`` of each host it marked TERMINATED, and the
    shortest heartbeat interval configured into a RUNNING agent (None: none is recorded), which tells the
    sweeper how soon to look again."""

    hosts: list[tuple[int, datetime]]
    shortest_interval_s: float | None


# The silent agents: RUNNING, with a last heartbeat older than ``misses`` of their interval (the host's own, else
# the service's); NULL last heartbeats (an agent being (re)started) never compare older. The agent_status index
# narrows the read to the RUNNING rows. The read takes no lock (SQLite's driver begins the write transaction only
# at the UPDATE), so a fleet's heartbeats are not held up while it scans; the UPDATE then takes the silent rows
# by primary key, checking the condition again, so a heartbeat committed in between keeps its host RUNNING.
_SILENT_PG = (
    "agent_status = %s AND last_heartbeat_at < %s - make_interval(secs => %s * COALESCE(heartbeat_interval_s, %s))"
)
_SILENT_SQLITE = (
    "agent_status = ? AND julianday(last_heartbeat_at) < julianday(?) - ? * COALESCE(heartbeat_interval_s, ?) / 86400.0"
)
MARK_BATCH = 500  # hosts per UPDATE: within SQLite's limit of bound parameters


def mark_silent(db: Database, *, misses: int, default_interval_s: float) -> Silenced:
    """Mark TERMINATED every RUNNING host whose agent has sent nothing for ``misses`` heartbeat intervals, keeping
    its last heartbeat. Several processes may do it at once: a row one of them has marked is no longer RUNNING
    when another's UPDATE reaches it, so each host is marked, and reported, by one of them."""
    now = db.bind_time(utcnow())
    p = db.paramstyle
    silent = _SILENT_SQLITE if db.is_sqlite else _SILENT_PG
    condition = (RUNNING, now, float(misses), default_interval_s)
    hosts: list[tuple[int, datetime]] = []
    with db.transaction() as cur:
        cur.execute(f"SELECT MIN(heartbeat_interval_s) FROM hosts WHERE agent_status = {p}", (RUNNING,))
        shortest = cur.fetchone()[0]
        cur.execute(f"SELECT bk_host_id FROM hosts WHERE {silent}", condition)
        found = [int(row[0]) for row in cur.fetchall()]
        for first in range(0, len(found), MARK_BATCH):
            batch = found[first : first + MARK_BATCH]
            cur.execute(
                f"UPDATE hosts SET agent_status = {p}, updated_at = {p} "
                f"WHERE bk_host_id IN ({', '.join([p] * len(batch))}) AND {silent} "
                "RETURNING bk_host_id, last_heartbeat_at",
                (TERMINATED, now, *batch, *condition),
            )
            hosts.extend(_seen(cur.fetchall()))
    return Silenced(hosts, None if shortest is None else float(shortest))


def _seen(rows: Sequence[Any]) -> list[tuple[int, datetime]]:
    """``(bk_host_id, last heartbeat)`` of the rows ``mark_silent``'s UPDATE returned (never a NULL heartbeat)."""
    found = []
    for host, seen in rows:
        at = stored_utc(seen)
        assert at is not None
        found.append((int(host), at))
    return found
