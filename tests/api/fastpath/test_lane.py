"""The log lane (``nodeops.api.fastpath.lane``): the log API's GETs are answered by the HTTP protocol below ASGI, a
loop turn's requests at once (on SQLite read on the loop, on PostgreSQL in a reader thread, their lookups sent
together). Real uvicorn, real sockets, both databases."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from nodeops.api.fastpath.lane import LaneProtocol, LogLane
from tests.support.api import ESB_PATH, apigw_path, nodeman_path, without_request_id
from tests.support.factories import make_app, make_seed_job, make_user


@pytest.fixture
def seeded(services) -> dict[str, str]:
    """The seed's job 1 (host 1) and the common args of a superuser's call."""
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    make_seed_job(services)
    return {"bk_app_code": app.code, "bk_app_secret": app.secret, "bk_username": "admin"}


def lane_of(live_server) -> LogLane | None:
    protocol = live_server.app.http_protocol
    return protocol.lane if isinstance(protocol, type) and issubclass(protocol, LaneProtocol) else None


def log_target(common: dict[str, str], **params: object) -> str:
    return ESB_PATH + "?" + urlencode({**common, **params})


def exchange(url: str, payload: bytes, *, responses: int) -> tuple[list[tuple[bytes, bytes]], socket.socket]:
    """Send ``payload`` on one new connection and read ``responses`` HTTP responses: (head, body) each."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(payload)
    buffer = b""
    answers = []
    for _ in range(responses):
        while b"\r\n\r\n" not in buffer:
            buffer += receive(sock)
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        while len(buffer) < length:
            buffer += receive(sock)
        answers.append((head, buffer[:length]))
        buffer = buffer[length:]
    return answers, sock


def receive(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise AssertionError("the server closed the connection early")
    return data


def get(target: str, *, version: str = "1.1", headers: str = "") -> bytes:
    return f"GET {target} HTTP/{version}\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()


def asgi_get(app: Any, target: str, headers: dict[str, str] | None = None) -> bytes:
    """The same GET answered in process through the ASGI path (``LogFastPath``), for comparison."""

    async def run() -> bytes:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return (await client.get(target, headers=headers)).content

    return asyncio.run(run())


def test_the_lane_answers_on_both_databases(services, live_server, seeded):
    response = httpx.get(live_server.url + log_target(seeded, job_id=1, instance_id=1))
    assert response.json()["result"] is True
    lane = lane_of(live_server)
    assert lane is not None and (lane.requests, lane.batches) == (1, 1)
    assert lane.inline is services.db.is_sqlite  # PostgreSQL: read in a reader thread


def test_lane_answers_byte_for_byte_as_the_asgi_path(services, live_server, seeded):
    secret_header = {"X-Bkapi-Authorization": json.dumps(seeded)}
    cases: list[tuple[str, dict[str, str] | None]] = [
        (log_target(seeded, job_id=1, instance_id=1), None),
        (log_target(seeded, job_id=1, instance_id="host|instance|host|127.0.0.1-0-0"), None),
        (log_target(seeded, job_id=1, instance_id=1, attempt=1), None),
        (log_target(seeded, job_id=1, instance_id=1, cursor=""), None),  # a tail answer
        (log_target(seeded, job_id=1, instance_id=1, cursor="x"), None),
        (log_target(seeded, job_id=2, instance_id=1), None),  # 3801012
        (log_target(seeded, job_id=1, instance_id=7), None),  # 3800007
        (log_target(seeded, job_id="x", instance_id="host|instance|bad"), None),  # 3800001
        (log_target({**seeded, "bk_app_secret": "wrong"}, job_id=1, instance_id=1), None),  # ESB 1306xxx
        (log_target({}, job_id=1, instance_id=1), secret_header),  # the common args in the header
        (log_target({}, job_id=1, instance_id=1), {"X-Bkapi-Authorization": "{not json"}),
        (nodeman_path(1) + "?" + urlencode({**seeded, "instance_id": 1}), None),
        (apigw_path(1) + "?" + urlencode({"instance_id": 1}), secret_header),
    ]
    for n, (target, headers) in enumerate(cases):
        headers = {**(headers or {}), "X-Request-Id": f"case-{n}"}  # the same id both ways, so the same bodies
        over_http = httpx.get(live_server.url + target, headers=headers).content
        assert over_http == asgi_get(live_server.app, target, headers), target
    lane = lane_of(live_server)
    assert lane is None or lane.requests == len(cases)


def test_lane_answers_with_the_asgi_paths_headers_nosniff_included(services, live_server, seeded):
    target = log_target(seeded, job_id=1, instance_id=1)
    over_http = httpx.get(live_server.url + target, headers={"X-Request-Id": "same-id"})
    lane = lane_of(live_server)
    assert lane is None or lane.requests == 1

    async def asgi_headers() -> list[tuple[bytes, bytes]]:
        transport = httpx.ASGITransport(app=live_server.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return (await client.get(target, headers={"X-Request-Id": "same-id"})).headers.raw

    own = [(name, value) for name, value in over_http.headers.raw if name not in (b"date", b"server")]
    assert own == asyncio.run(asgi_headers())
    assert (b"x-content-type-options", b"nosniff") in own
    assert own[-1] == (b"x-request-id", b"same-id")


def test_a_connection_gets_its_answers_in_the_order_it_asked(services, live_server, seeded):
    ok = log_target(seeded, job_id=1, instance_id=1)
    missing = log_target(seeded, job_id=1, instance_id=7)
    payload = get(ok) + get("/healthz") + get(missing) + get(ok)  # log (lane), ASGI, log, log: one packet
    answers, sock = exchange(live_server.url, payload, responses=4)
    sock.close()
    bodies = [json.loads(body) for _head, body in answers]
    assert bodies[0]["result"] is True and len(bodies[0]["data"]) == 5
    assert bodies[1]["data"] == {"status": "ok"}  # the health check's own answer, through ASGI
    assert (bodies[2]["result"], bodies[2]["code"]) == (False, 3800007)
    assert without_request_id(bodies[3]) == without_request_id(bodies[0])
    assert len({body["request_id"] for body in bodies}) == 4  # each answer its own
    for head, _body in answers:
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"content-type: application/json" in head


def test_many_connections_at_once_each_get_their_own_answer(services, live_server, seeded):
    clients, rounds = 12, 15
    same_id = {"X-Request-Id": "many"}
    expected_ok = httpx.get(live_server.url + log_target(seeded, job_id=1, instance_id=1), headers=same_id).content
    failures: list[str] = []

    def client(n: int) -> None:
        with httpx.Client(base_url=live_server.url, timeout=10, headers=same_id) as http:  # one keep-alive connection
            for i in range(rounds):
                instance = 1 if (n + i) % 3 else 1000 + n
                body = http.get(log_target(seeded, job_id=1, instance_id=instance)).content
                if instance == 1 and body != expected_ok:
                    failures.append(f"client {n} round {i}: {body[:80]!r}")
                if instance != 1 and json.loads(body)["code"] != 3800007:
                    failures.append(f"client {n} round {i}: {body[:80]!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    lane = lane_of(live_server)
    if lane is not None:
        assert lane.requests == 1 + clients * rounds
        assert 1 <= lane.batches <= lane.requests


@pytest.mark.parametrize(
    ("version", "headers"), [("1.0", ""), ("1.1", "Connection: close\r\n")], ids=["http-1.0", "connection-close"]
)
def test_a_closing_request_is_answered_then_closed(services, live_server, seeded, version, headers):
    target = log_target(seeded, job_id=1, instance_id=1)
    answers, sock = exchange(live_server.url, get(target, version=version, headers=headers), responses=1)
    head, body = answers[0]
    assert json.loads(body)["result"] is True
    assert b"connection: close" in head.lower()
    assert sock.recv(1) == b""  # closed by the server
    sock.close()


def test_a_client_gone_before_its_answer_leaves_the_others_served(services, live_server, seeded):
    target = log_target(seeded, job_id=1, instance_id=1)
    parts = urlsplit(live_server.url)
    for _ in range(5):
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as gone:
            gone.sendall(get(target) * 3)
    answers, sock = exchange(live_server.url, get(target) * 2, responses=2)
    sock.close()
    assert [json.loads(body)["result"] for _head, body in answers] == [True, True]


def test_a_long_pipeline_is_answered_whole_and_in_order(services, live_server, seeded):
    # more requests in one packet than the lane keeps waiting before it stops reading the connection
    targets = [log_target(seeded, job_id=1, instance_id=1 if i % 10 == 0 else 5000 + i) for i in range(200)]
    answers, sock = exchange(live_server.url, b"".join(get(target) for target in targets), responses=200)
    sock.close()
    for i, (_head, body) in enumerate(answers):
        answer = json.loads(body)
        if i % 10 == 0:
            assert answer["result"] is True, i
        else:
            assert answer["code"] == 3800007 and f"host|instance|host|{5000 + i}" in answer["message"], i
    follow_up = httpx.get(live_server.url + targets[0])  # the server goes on serving
    assert follow_up.json()["result"] is True


def test_every_request_target_form_is_answered_as_through_asgi(services, live_server, seeded):
    """The origin form is split at ``?`` by the lane itself; an absolute URL or a fragment goes through the HTTP
    parser's split; a path that is no log address (a doubled slash, bytes that are not ASCII) goes on to ASGI."""
    target = log_target(seeded, job_id=1, instance_id=1)
    same_id = "X-Request-Id: form\r\n"
    expected = asgi_get(live_server.app, target, {"X-Request-Id": "form"})
    host = urlsplit(live_server.url).netloc
    for sent in (target, f"http://{host}{target}", target + "#fragment"):
        (answer,), sock = exchange(live_server.url, get(sent, headers=same_id), responses=1)
        sock.close()
        assert answer[0].startswith(b"HTTP/1.1 200") and answer[1] == expected, sent
    doubled = target.replace("?", "/?", 1)
    (answer,), sock = exchange(live_server.url, get(doubled, headers=same_id), responses=1)
    sock.close()
    assert answer[1] == asgi_get(live_server.app, doubled, {"X-Request-Id": "form"}), answer
    assert b"3800404" in answer[1], answer
    sock = socket.create_connection((urlsplit(live_server.url).hostname, urlsplit(live_server.url).port), timeout=10)
    sock.sendall(b"GET /api/c/compapi/v2/nodeman/api/job/l\xf6g/?job_id=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    head = receive(sock)
    sock.close()
    assert head.startswith(b"HTTP/1.1 400"), head  # the HTTP parser refuses it before any of ours runs
    lane = lane_of(live_server)
    assert lane is None or lane.requests == 3
