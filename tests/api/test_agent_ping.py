"""``POST /api/agent/ping/``: what the 安装 step calls from a host before it starts the agent. It answers the
envelope without credentials; its body is read as every body is (a JSON object), and other methods are refused."""

from __future__ import annotations

import httpx

from tests.support.api import without_request_id


def test_ping_answers_the_envelope_and_refuses_bad_bodies_and_methods(api):
    client: httpx.Client = api.client
    assert without_request_id(client.post("/api/agent/ping/", json={}).json()) == {
        "result": True,
        "code": 0,
        "message": "success",
        "data": {"pong": True},
    }
    assert client.post("/api/agent/ping", json={}).json()["result"] is True  # no trailing slash, as elsewhere
    assert client.post("/api/agent/ping/", content=b"[1, 2]").json()["code"] == 3800001
    assert client.post("/api/agent/ping/", content='{"x": "\u4e2d"'.encode()).json()["code"] == 3800001
    assert client.post("/api/agent/ping/", content=b"x" * (2 * 1024 * 1024)).json()["code"] == 3800413
    assert client.get("/api/agent/ping/").json()["code"] == 3800405
