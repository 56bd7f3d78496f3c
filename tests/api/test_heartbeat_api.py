"""``POST /api/agent/heartbeat/`` over real HTTP, on SQLite and PostgreSQL: many agents at once are each recorded
and answered (their heartbeats written in groups), a wrong token fails only itself, and bodies that are too
large, not ASCII or not JSON are answered as they always were."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import sqlalchemy as sa

from nodeops.settings import MAX_BODY_BYTES
from nodeops.store.models import Host
from tests.support.api import without_request_id
from tests.support.factories import make_agents

HEARTBEAT = "/api/agent/heartbeat/"
ACCEPTED = {"result": True, "code": 0, "message": "success", "data": None}


def recorded_versions(services) -> dict[int, str | None]:
    with services.db.session() as session:
        return {
            host.bk_host_id: host.agent_version
            for host in session.scalars(sa.select(Host).where(Host.last_heartbeat_at.is_not(None)))
        }


async def test_200_heartbeats_at_once_are_each_recorded_and_answered(services, live_server):
    agents = make_agents(services, 200)
    bodies = [agent.heartbeat(f"1.{n}") for n, agent in enumerate(agents)]
    wrong = {7, 99, 150}
    for n in wrong:
        bodies[n]["token"] = "not-this-agent's-token"
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30, limits=limits) as client:
        answers = await asyncio.gather(*(client.post(HEARTBEAT, json=body) for body in bodies))
    for n, answer in enumerate(answers):
        if n in wrong:
            assert answer.json()["code"] == 3800403, answer.text
            assert str(agents[n].bk_host_id) in answer.json()["message"]
        else:
            assert without_request_id(answer.json()) == ACCEPTED, answer.text
    assert recorded_versions(services) == {
        agent.bk_host_id: f"1.{n}" for n, agent in enumerate(agents) if n not in wrong
    }


@pytest.fixture
def client(live_server):
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


def post_raw(client: httpx.Client, raw: bytes) -> dict[str, object]:
    answer: dict[str, object] = client.post(HEARTBEAT, content=raw, headers={"content-type": "application/json"}).json()
    return answer


def test_a_non_ascii_version_is_recorded_and_a_non_ascii_token_refused(services, client):
    agent = make_agents(services, 1)[0]
    raw = json.dumps(agent.heartbeat("版本-1.0")).encode()
    assert without_request_id(post_raw(client, raw)) == ACCEPTED
    assert recorded_versions(services) == {agent.bk_host_id: "版本-1.0"}
    answer = post_raw(client, json.dumps(agent.heartbeat(token="令牌"), ensure_ascii=False).encode())
    assert answer["code"] == 3800403, answer


def test_a_body_over_the_limit_is_3800413(services, client):
    agent = make_agents(services, 1)[0]
    raw = json.dumps(agent.heartbeat(padding="x" * MAX_BODY_BYTES)).encode()
    answer = post_raw(client, raw)
    assert answer["code"] == 3800413 and f"request body exceeds {MAX_BODY_BYTES} bytes" in str(answer["message"])
    assert recorded_versions(services) == {}


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"bk_host_id": 1, "token": ', "body: is not valid JSON"),
        (b"[1, 2]", "body: must be a JSON object"),
        (b'{"bk_host_id": 1, "version": "1.0"}', "token: is required"),
        (b'{"bk_host_id": 1, "token": "t", "version": ""}', "version: must be a string of 1 to 64 characters"),
    ],
)
def test_a_malformed_body_is_3800001_naming_what_is_wrong(services, client, raw, says):
    answer = post_raw(client, raw)
    assert answer["code"] == 3800001 and says in str(answer["message"]), answer
