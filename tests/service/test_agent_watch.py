"""Agents that stop, on SQLite and PostgreSQL: ``store.agents.mark_silent`` (run by ``AgentWatch``) marks a RUNNING
agent TERMINATED once it has been silent for the configured number of its intervals, and not before; hosts that
are not RUNNING are never touched; the next heartbeat makes it RUNNING again; each transition is logged once."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from nodeops.service.agent_watch import MAX_PERIOD_S, MIN_PERIOD_S, AgentWatch
from nodeops.service.heartbeat_groups import HeartbeatGroups
from nodeops.store import agents as agent_rows
from nodeops.store.models import Host
from tests.support.factories import Agent, make_agents

MISSES = 3
DEFAULT_INTERVAL_S = 10.0


def set_host(
    services, agent: Agent, *, status: str, silent_s: float | None, interval_s: float | None
) -> datetime | None:
    """Give the host a status, a last heartbeat ``silent_s`` ago (None: none) and a configured interval."""
    seen = None if silent_s is None else datetime.now(UTC) - timedelta(seconds=silent_s)
    with services.db.session() as session:
        host = session.get(Host, agent.bk_host_id)
        assert host is not None
        host.agent_status, host.last_heartbeat_at, host.heartbeat_interval_s = status, seen, interval_s
    return seen


def states(services, agents: list[Agent]) -> list[tuple[str, datetime | None]]:
    """Each host's agent status and last heartbeat."""
    with services.db.session() as session:
        rows = {h.bk_host_id: h for h in session.scalars(sa.select(Host))}
        return [(rows[a.bk_host_id].agent_status, rows[a.bk_host_id].last_heartbeat_at) for a in agents]


def status_of(services, agents: list[Agent]) -> list[str]:
    return [status for status, _seen in states(services, agents)]


@pytest.fixture
def watch(services) -> AgentWatch:
    return AgentWatch(services.db, misses=MISSES, default_interval_s=DEFAULT_INTERVAL_S)


async def test_only_running_agents_silent_past_their_misses_are_terminated(services, watch, caplog):
    agents = make_agents(services, 8)
    cases = [
        ("RUNNING", 2.5, 1.0, "RUNNING"),  # 2.5 of 3 intervals of 1 s: not yet
        ("RUNNING", 3.5, 1.0, "TERMINATED"),  # past 3 intervals of its own 1 s
        ("RUNNING", 25.0, None, "RUNNING"),  # no interval recorded: the service's 10 s, 30 s not yet
        ("RUNNING", 31.0, None, "TERMINATED"),
        ("RUNNING", 100.0, 60.0, "RUNNING"),  # its own interval is long: 100 s of 180 s
        ("INSTALLED", 3600.0, 1.0, "INSTALLED"),  # not RUNNING: never swept
        ("RESTARTING", None, 1.0, "RESTARTING"),  # a step cleared its heartbeat
        ("TERMINATED", 3600.0, 1.0, "TERMINATED"),  # already: not marked (nor logged) again
    ]
    seen = [
        set_host(services, agent, status=status, silent_s=silent, interval_s=interval)
        for agent, (status, silent, interval, _want) in zip(agents, cases, strict=True)
    ]
    before = states(services, agents)
    caplog.set_level(logging.INFO, logger="nodeops.service.agent_watch")
    silenced = await watch.sweep()
    assert sorted(host for host, _ in silenced.hosts) == [agents[1].bk_host_id, agents[3].bk_host_id]
    assert status_of(services, agents) == [want for *_rest, want in cases]
    # the last heartbeat is kept as the time the agent was last seen
    assert [seen for _status, seen in states(services, agents)] == [seen for _status, seen in before]
    sent = {agent.bk_host_id: at for agent, at in zip(agents, seen, strict=True)}
    for host_id, last in silenced.hosts:
        at = sent[host_id]
        assert at is not None and abs((last - at).total_seconds()) < 0.01
    logged = [r for r in caplog.records if getattr(r, "action", "") == "agent_terminated"]
    assert sorted(r.bk_host_id for r in logged) == sorted(host for host, _ in silenced.hosts)
    assert silenced.shortest_interval_s == 1.0  # the RUNNING agents left: 1 s, none and 60 s
    # idempotent: a second look (another process's) marks nothing more
    assert (await watch.sweep()).hosts == []


async def test_a_heartbeat_revives_a_terminated_agent_and_says_so(services, watch, caplog):
    agents = make_agents(services, 3)
    groups = HeartbeatGroups(services.db, services.heartbeats)
    for agent in agents:
        await groups.receive(agent.heartbeat("2.0.0"))
    set_host(services, agents[0], status="RUNNING", silent_s=10, interval_s=1.0)
    await watch.sweep()
    assert status_of(services, agents) == ["TERMINATED", "RUNNING", "RUNNING"]
    caplog.set_level(logging.INFO, logger="nodeops.service.agent_watch")
    # together with a steady beat and a wrong token: only the silent one is news
    results = await asyncio.gather(
        groups.receive(agents[0].heartbeat("2.0.0")),
        groups.receive(agents[1].heartbeat("2.0.0")),
        groups.receive(agents[2].heartbeat("2.0.0", token="not-its-token")),
        return_exceptions=True,
    )
    assert results[:2] == [None, None] and isinstance(results[2], Exception)
    assert status_of(services, agents) == ["RUNNING", "RUNNING", "RUNNING"]
    last = states(services, agents)[0][1]
    assert last is not None and datetime.now(UTC) - last.replace(tzinfo=UTC) < timedelta(seconds=5)
    revived = [r.bk_host_id for r in caplog.records if getattr(r, "action", "") == "agent_revived"]
    assert revived == [agents[0].bk_host_id]
    assert (await watch.sweep()).hosts == []


async def test_watches_looking_at_once_mark_each_host_once(services):
    agents = make_agents(services, 40)
    for agent in agents:
        set_host(services, agent, status="RUNNING", silent_s=100, interval_s=1.0)
    watches = [AgentWatch(services.db, misses=MISSES, default_interval_s=DEFAULT_INTERVAL_S) for _ in range(4)]
    looks = await asyncio.gather(*(watch.sweep() for watch in watches))
    marked = [host for look in looks for host, _seen in look.hosts]
    assert sorted(marked) == sorted(agent.bk_host_id for agent in agents)  # each once, by one of them
    assert status_of(services, agents) == ["TERMINATED"] * 40


async def test_many_silent_hosts_are_marked_in_batches(services, watch, monkeypatch):
    monkeypatch.setattr(agent_rows, "MARK_BATCH", 2)
    agents = make_agents(services, 5)
    for agent in agents:
        set_host(services, agent, status="RUNNING", silent_s=100, interval_s=1.0)
    silenced = await watch.sweep()
    assert sorted(host for host, _ in silenced.hosts) == sorted(agent.bk_host_id for agent in agents)
    assert status_of(services, agents) == ["TERMINATED"] * 5


async def test_a_wrong_token_does_not_revive(services, watch):
    agent = make_agents(services, 1)[0]
    set_host(services, agent, status="RUNNING", silent_s=100, interval_s=1.0)
    await watch.sweep()
    written = agent_rows.record_heartbeats(
        services.db, [agent_rows.AgentHeartbeat(agent.bk_host_id, b"\0" * 32, "2.0.0")]
    )
    assert written == agent_rows.HeartbeatsRecorded([False], [])
    assert status_of(services, [agent]) == ["TERMINATED"]


def test_the_interval_recorded_at_config_time_is_the_one_counted(services):
    agent = make_agents(services, 1)[0]
    agent_rows.set_agent(services.db, bk_host_id=agent.bk_host_id, status="CONFIGURED", heartbeat_interval_s=2.5)
    with services.db.session() as session:
        host = session.get(Host, agent.bk_host_id)
        assert host is not None and host.heartbeat_interval_s == 2.5 and host.agent_status == "CONFIGURED"


@pytest.mark.parametrize(
    ("default", "shortest", "period"),
    [
        (10.0, None, 5.0),  # none recorded: half the service's own
        (10.0, 1.0, MIN_PERIOD_S),
        (10.0, 0.2, MIN_PERIOD_S),  # never more often than MIN_PERIOD_S
        (10.0, 3600.0, 5.0),  # hosts without a recorded interval are counted in the service's
        (30.0, 20.0, 10.0),
        (3600.0, None, MAX_PERIOD_S),  # never less often than MAX_PERIOD_S
    ],
)
def test_the_watch_looks_every_half_of_the_shortest_interval_within_bounds(services, default, shortest, period):
    assert AgentWatch(services.db, misses=MISSES, default_interval_s=default).period_s(shortest) == period
