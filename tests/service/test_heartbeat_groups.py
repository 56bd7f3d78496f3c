"""``HeartbeatGroups``: heartbeats that arrive together are written in one transaction, each caller answered with
its own outcome, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
import sqlalchemy as sa

from nodeops.errors import AgentTokenRejected, ErrorCode, InvalidInput, StoreError
from nodeops.service.heartbeat_groups import HeartbeatGroups
from nodeops.store import agents as agent_rows
from nodeops.store.agents import AgentHeartbeat, HeartbeatsRecorded
from nodeops.store.db import Database
from nodeops.store.models import Host
from tests.support.factories import Agent, make_agents


@pytest.fixture
def agents(services) -> list[Agent]:
    return make_agents(services, 12)


@pytest.fixture
def writes(monkeypatch) -> list[int]:
    """How many heartbeats each transaction of the test was given (one ``record_heartbeats``, one transaction),
    whether it committed or failed."""
    sizes: list[int] = []
    record = agent_rows.record_heartbeats

    def counted(db: Database, beats: Sequence[AgentHeartbeat]) -> HeartbeatsRecorded:
        sizes.append(len(beats))
        return record(db, beats)

    monkeypatch.setattr(agent_rows, "record_heartbeats", counted)
    return sizes


def versions(services, agents: list[Agent]) -> list[str | None]:
    """Each agent's recorded version, or None when no heartbeat is recorded."""
    with services.db.session() as session:
        rows = {host.bk_host_id: host for host in session.scalars(sa.select(Host))}
    return [
        rows[agent.bk_host_id].agent_version if rows[agent.bk_host_id].last_heartbeat_at else None for agent in agents
    ]


async def receive_all(groups: HeartbeatGroups, bodies: list[dict[str, object]]) -> list[BaseException | None]:
    """Hand every body to ``groups`` at once; each caller's outcome."""
    return await asyncio.gather(*(groups.receive(body) for body in bodies), return_exceptions=True)


async def test_heartbeats_that_arrive_together_are_written_in_one_transaction(services, agents, writes):
    groups = services.heartbeat_groups
    await groups.receive(agents[0].heartbeat("0.9"))  # the store is idle: written at once, alone
    outcomes = await receive_all(groups, [agent.heartbeat(f"2.{n}") for n, agent in enumerate(agents)])
    assert outcomes == [None] * len(agents)
    assert writes == [1, len(agents)]
    assert versions(services, agents) == [f"2.{n}" for n in range(len(agents))]


async def test_a_group_holds_at_most_max_group_heartbeats(services, agents, writes):
    groups = HeartbeatGroups(services.db, services.heartbeats, max_group=5)
    outcomes = await receive_all(groups, [agent.heartbeat() for agent in agents])
    assert outcomes == [None] * len(agents)
    assert writes == [5, 5, 2]
    assert versions(services, agents) == ["1.0.0"] * len(agents)


async def test_a_wrong_token_or_an_unknown_host_fails_only_itself(services, agents, writes):
    bodies = [agent.heartbeat() for agent in agents[:4]]
    bodies[1]["token"] = agents[2].token  # another host's token
    bodies.append({"bk_host_id": 999_999, "token": "t", "version": "1.0.0"})
    outcomes = await receive_all(services.heartbeat_groups, bodies)
    assert [type(outcome) for outcome in outcomes] == [
        type(None),
        AgentTokenRejected,
        type(None),
        type(None),
        AgentTokenRejected,
    ]
    assert str(outcomes[1]) == (
        f"heartbeat refused: wrong token for host {agents[1].bk_host_id} (reinstall the agent to renew it)"
    )
    assert writes == [5]
    assert versions(services, agents[:4]) == ["1.0.0", None, "1.0.0", "1.0.0"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"token": ""}, "token"),
        ({"version": "x" * 65}, "version"),
        ({"version": "1.0\x00"}, "version"),
        ({"version": "1.0\ud800"}, "version"),
        ({"bk_host_id": "one"}, "bk_host_id"),
    ],
)
async def test_a_malformed_heartbeat_fails_alone_before_any_write(services, agents, writes, change, field):
    bodies = [agents[0].heartbeat(), {**agents[1].heartbeat(), **change}, agents[2].heartbeat()]
    outcomes = await receive_all(services.heartbeat_groups, bodies)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], InvalidInput) and list(outcomes[1].problems) == [field]
    assert writes == [2]
    assert versions(services, agents[:3]) == ["1.0.0", None, "1.0.0"]


@pytest.fixture
def refuse_version_boom(services) -> None:
    """A trigger that makes the database fail any UPDATE of hosts setting agent_version 'boom'."""
    with services.db.engine.begin() as conn:
        if services.db.is_sqlite:
            conn.execute(
                sa.text(
                    "CREATE TRIGGER refuse_boom BEFORE UPDATE ON hosts WHEN NEW.agent_version = 'boom' "
                    "BEGIN SELECT RAISE(ABORT, 'boom refused'); END"
                )
            )
        else:
            conn.execute(
                sa.text(
                    "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    "IF NEW.agent_version = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF; RETURN NEW; END $$"
                )
            )
            conn.execute(
                sa.text("CREATE TRIGGER refuse_boom BEFORE UPDATE ON hosts FOR EACH ROW EXECUTE FUNCTION refuse_boom()")
            )


async def test_a_store_error_fails_every_heartbeat_of_its_group_and_the_next_group_is_written(
    services, agents, writes, refuse_version_boom
):
    groups = services.heartbeat_groups
    failing = [agent.heartbeat() for agent in agents[:5]]
    failing[2]["version"] = "boom"
    outcomes = await receive_all(groups, failing)
    assert all(isinstance(outcome, StoreError) for outcome in outcomes), outcomes
    assert {outcome.code for outcome in outcomes if isinstance(outcome, StoreError)} == {ErrorCode.INTERNAL}
    assert versions(services, agents[:5]) == [None] * 5  # the transaction was rolled back

    outcomes = await receive_all(groups, [agent.heartbeat("2.0") for agent in agents[:5]])
    assert outcomes == [None] * 5
    assert writes == [5, 5]
    assert versions(services, agents[:5]) == ["2.0"] * 5


async def test_the_waiting_step_is_woken_once_its_heartbeat_is_committed(services, agents):
    agent = agents[3]
    with services.heartbeats.watch(agent.bk_host_id) as watch:
        bodies = [*(other.heartbeat() for other in agents[:3]), agent.heartbeat("3.1")]
        receiving = asyncio.ensure_future(receive_all(services.heartbeat_groups, bodies))
        assert await watch.wait(5) is True
        assert watch.versions == ["3.1"]
        assert versions(services, [agent]) == ["3.1"]  # committed before the wake-up
        assert await receiving == [None] * 4


async def test_a_caller_that_goes_away_leaves_its_heartbeat_and_the_others_to_be_written(services, agents, writes):
    groups = services.heartbeat_groups
    await groups.receive(agents[0].heartbeat("0.9"))
    tasks = [asyncio.create_task(groups.receive(agent.heartbeat("4.0"))) for agent in agents]
    await asyncio.sleep(0)  # every caller has queued its heartbeat
    tasks[4].cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(outcomes[4], asyncio.CancelledError)
    assert [outcome for n, outcome in enumerate(outcomes) if n != 4] == [None] * (len(agents) - 1)
    assert versions(services, agents) == ["4.0"] * len(agents)
    assert writes == [1, len(agents)]


async def test_a_heartbeat_on_an_idle_store_is_written_at_once_and_alone(services, agents, writes):
    groups = services.heartbeat_groups
    for n, agent in enumerate(agents[:3]):
        await groups.receive(agent.heartbeat(f"5.{n}"))
    assert writes == [1, 1, 1]
    assert versions(services, agents[:3]) == ["5.0", "5.1", "5.2"]


async def test_heartbeats_of_one_host_in_a_group_each_get_their_answer_and_the_last_version_stays(
    services, agents, writes
):
    agent, other = agents[0], agents[1]
    bodies = [
        agent.heartbeat("6.0"),
        agent.heartbeat("6.1", token=other.token),
        agent.heartbeat("6.2"),
        other.heartbeat(),
    ]
    outcomes = await receive_all(services.heartbeat_groups, bodies)
    assert [type(outcome) for outcome in outcomes] == [type(None), AgentTokenRejected, type(None), type(None)]
    assert writes == [4]
    assert versions(services, [agent, other]) == ["6.2", "1.0.0"]
