"""Wake-ups over PostgreSQL: the first heartbeat after an agent (re)started is announced with NOTIFY, the steady
ones are not; a ``Listener`` hands notices over, and after its connection is killed it connects again and says so."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa

from nodeops.engine.heartbeats import HeartbeatWaiters
from nodeops.service.heartbeat_groups import HeartbeatGroups
from nodeops.store import agents as agent_rows
from nodeops.store import notices
from nodeops.store.db import Database
from nodeops.store.notices import HEARTBEAT_CHANNEL, REVOKE_CHANNEL, Listener
from tests.support.factories import make_agents

QUIET_S = 0.5  # how long "no notice arrives" is watched for


class Received:
    """What a Listener handed over: its notices, and how many times it (re)connected."""

    def __init__(self) -> None:
        self.notices: list[tuple[str, str]] = []
        self.reconnects = 0
        self.changed = asyncio.Event()

    def on_notice(self, channel: str, payload: str) -> None:
        self.notices.append((channel, payload))
        self.changed.set()

    def on_reconnect(self) -> None:
        self.reconnects += 1
        self.changed.set()

    async def until(self, done, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not done():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def db(pg_database_url):
    database = Database.connect(pg_database_url)
    yield database
    database.dispose()


@pytest.fixture
async def listening(db):
    """A started Listener on both channels, with a name of its own in pg_stat_activity, and what it received."""
    received = Received()
    listener = Listener.of(
        db,
        [HEARTBEAT_CHANNEL, REVOKE_CHANNEL],
        received.on_notice,
        on_reconnect=received.on_reconnect,
        application_name=f"nodeops-listen-{uuid.uuid4().hex[:8]}",
    )
    listener.start()
    await listener.wait_listening(5)
    yield listener, received
    await listener.aclose()


class OnlyDatabase:  # what make_agents uses of the services: their database
    def __init__(self, db: Database) -> None:
        self.db = db


def kill(db: Database, application_name: str) -> int:
    with db.engine.begin() as conn:
        return len(
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name AND datname = current_database()"
                ),
                {"name": application_name},
            ).all()
        )


async def test_a_notice_sent_in_a_transaction_arrives_once_it_commits_and_not_when_it_rolls_back(db, listening):
    _listener, received = listening
    assert received.reconnects == 1  # the first connection counts: a caller reads what it may have missed
    with pytest.raises(RuntimeError), db.session() as session:
        notices.notify(session, REVOKE_CHANNEL, "41")
        raise RuntimeError("rolled back")
    with db.session() as session:
        notices.notify(session, REVOKE_CHANNEL, "42")
        await asyncio.sleep(0.2)
        assert received.notices == []  # not before the commit
    await received.until(lambda: received.notices)
    assert received.notices == [(REVOKE_CHANNEL, "42")]


async def test_only_the_heartbeats_that_are_news_are_announced(db, listening):
    _listener, received = listening
    agents = make_agents(OnlyDatabase(db), 4)  # installed, no heartbeat yet
    groups = HeartbeatGroups(db, HeartbeatWaiters())
    await asyncio.gather(*(groups.receive(agent.heartbeat("1.0.0")) for agent in agents))
    first = {(HEARTBEAT_CHANNEL, f"{agent.bk_host_id}:1.0.0") for agent in agents}
    await received.until(lambda: len(received.notices) >= len(agents))
    assert sorted(received.notices) == sorted(first)

    for _ in range(5):  # the steady rhythm of running agents: nothing to announce
        await asyncio.gather(*(groups.receive(agent.heartbeat("1.0.0")) for agent in agents))
    await asyncio.sleep(QUIET_S)
    assert len(received.notices) == len(agents)

    # the steps (re)start agent 0 (its last heartbeat cleared) and upgrade agent 1 (the version the store expects)
    agent_rows.set_agent(db, bk_host_id=agents[0].bk_host_id, status="RESTARTING", clear_heartbeat=True)
    agent_rows.set_agent(db, bk_host_id=agents[1].bk_host_id, status="INSTALLED", version="2.0.0", clear_heartbeat=True)
    await asyncio.gather(
        groups.receive(agents[0].heartbeat("1.0.0")),
        groups.receive(agents[1].heartbeat("1.0.0")),  # the old agent, late: news too (the host had none)
        groups.receive(agents[2].heartbeat("1.0.0")),
    )
    await groups.receive(agents[1].heartbeat("2.0.0"))  # the new agent: a new version is news again
    await groups.receive(agents[1].heartbeat("2.0.0"))
    await received.until(lambda: len(received.notices) >= len(agents) + 3)
    await asyncio.sleep(QUIET_S)
    assert received.notices[len(agents) :] in (
        [(HEARTBEAT_CHANNEL, f"{agents[n].bk_host_id}:{v}") for n, v in order]
        for order in ([(0, "1.0.0"), (1, "1.0.0"), (1, "2.0.0")], [(1, "1.0.0"), (0, "1.0.0"), (1, "2.0.0")])
    )


async def test_a_killed_listening_connection_is_opened_again_and_its_caller_told(db, listening):
    listener, received = listening
    assert kill(db, listener.application_name) == 1
    await received.until(lambda: received.reconnects == 2)
    assert listener.connections == 2 and listener.is_listening
    with db.session() as session:
        notices.notify(session, REVOKE_CHANNEL, "7")
    await received.until(lambda: received.notices)
    assert received.notices == [(REVOKE_CHANNEL, "7")]


async def test_a_listener_waits_out_a_database_it_cannot_reach_and_listens_once_it_can(db, caplog):
    received = Received()
    unreachable = db.engine.url.set(port=1).render_as_string(hide_password=False)  # nothing listens on port 1
    listener = Listener(unreachable, [REVOKE_CHANNEL], received.on_notice, on_reconnect=received.on_reconnect)
    listener.start()
    await asyncio.sleep(1.0)  # several tries, 0.1 s doubling
    await listener.aclose()
    assert received.reconnects == 0 and not listener.is_listening
    failed = [record for record in caplog.records if getattr(record, "action", "") == "listen_failed"]
    assert len(failed) == 1  # once per loss, not once per try


def test_a_listener_needs_postgresql_and_a_channel(tmp_path):
    with pytest.raises(ValueError, match="PostgreSQL"):
        Listener(f"sqlite:///{tmp_path}/x.sqlite3", [REVOKE_CHANNEL], lambda channel, payload: None)
    with pytest.raises(ValueError, match="channel"):
        Listener("postgresql+psycopg://postgres@127.0.0.1:1/x", [], lambda channel, payload: None)


async def test_a_quiet_connection_is_checked_and_keeps_listening(db):
    received = Received()
    listener = Listener.of(db, [REVOKE_CHANNEL], received.on_notice, check_interval_s=0.1)
    listener.start()
    try:
        await listener.wait_listening(5)
        await asyncio.sleep(0.5)  # several checks of the quiet connection
        with db.session() as session:
            notices.notify(session, REVOKE_CHANNEL, "9")
        await received.until(lambda: received.notices)
        assert received.notices == [(REVOKE_CHANNEL, "9")] and listener.connections == 1
    finally:
        await listener.aclose()


async def test_notices_sent_while_the_connection_is_being_checked_all_arrive_once(db):
    """Notices that come in during the check's query are handed over by that query, the others by the wait on
    the socket: with a check every millisecond both happen, and each notice arrives once, in order."""
    received = Received()
    listener = Listener.of(db, [REVOKE_CHANNEL], received.on_notice, check_interval_s=0.001)
    listener.start()
    try:
        await listener.wait_listening(5)
        for batch in range(20):
            with db.session() as session:
                for i in range(10):
                    notices.notify(session, REVOKE_CHANNEL, f"{batch}-{i}-作业")
            await asyncio.sleep(0.003)
        await received.until(lambda: len(received.notices) >= 200)
        await asyncio.sleep(QUIET_S)
        assert received.notices == [(REVOKE_CHANNEL, f"{b}-{i}-作业") for b in range(20) for i in range(10)]
        assert listener.connections == 1
    finally:
        await listener.aclose()
