"""Request ids (``nodeops.request_context``, ``api.fastpath.request_ids``): every answer's envelope carries a
``request_id`` (as ESB adds it, spec §1.2) equal to its ``X-Request-Id`` header, on every path: FastAPI routes and
each of the envelope's handlers, the body limit, the streamed task_result, the log API through the lane and the
ASGI fast path, the heartbeat path. A caller's sane id is kept; anything else (huge, not ASCII, a header split by
CRLF, quotes, markup) is replaced by a fresh one and never echoed. Real uvicorn on 127.0.0.1, both databases."""

from __future__ import annotations

import json
import logging
import re
import socket
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from nodeops.process_logging import RedactingFilter
from nodeops.request_context import accept_request_id, current_request_id, request_id_of, serving
from tests.support.api import ESB_PATH, nodeman_path
from tests.support.factories import make_seed_job

FRESH = re.compile(r"[0-9a-f]{32}")
BACKEND = "/api/c/compapi/v2/nodeman/backend/api/subscription"


@pytest.fixture
def seeded(services, auth) -> dict[str, str]:
    """The seed's job 1 (host 1); the common args of the superuser's calls."""
    make_seed_job(services)
    return auth


def calls(common: dict[str, str]) -> list[tuple[str, str, dict[str, Any], int]]:
    """(method, path, httpx arguments, expected code): one call down each path an answer can take."""
    wrong = {**common, "bk_app_secret": "not-the-secret-of-this-app"}
    return [
        ("GET", "/healthz", {}, 0),  # a FastAPI route
        ("GET", "/no/such/api/", {}, 3800404),  # the HTTP error handler
        ("DELETE", "/healthz", {}, 3800405),
        ("POST", "/api/agent/ping/", {"content": b"[1, 2]"}, 3800001),  # a NodeopsError from a route
        ("POST", "/api/agent/ping/", {"content": b"x" * (1024 * 1024 + 1)}, 3800413),  # the body limit
        ("POST", "/api/agent/heartbeat/", {"json": {}}, 3800001),  # the heartbeat path
        ("GET", ESB_PATH, {"params": {**common, "job_id": 1, "instance_id": 1}}, 0),  # the lane (SQLite)
        ("GET", ESB_PATH, {"params": {**wrong, "job_id": 1, "instance_id": 1}}, 1306403),
        ("GET", nodeman_path(1), {"params": {**common, "instance_id": 7}}, 3800007),
        ("POST", ESB_PATH, {"json": {**common, "job_id": 1, "instance_id": 1}}, 0),  # the ASGI fast path
        ("POST", ESB_PATH, {"content": b"{not json"}, 3800001),
        ("POST", f"{BACKEND}/task_result/", {"json": {**common, "subscription_id": 1, "pagesize": -1}}, 0),
    ]


def body_and_header(response: httpx.Response) -> tuple[dict[str, Any], str]:
    body = response.json()
    assert list(body)[-1] == "request_id", body  # last, as ESB appends it
    return body, response.headers["x-request-id"]


def test_every_path_answers_its_request_id_in_the_body_and_the_header(services, live_server, seeded):
    seen: set[str] = set()
    with httpx.Client(base_url=live_server.url, timeout=10) as http:
        for method, path, arguments, code in calls(seeded):
            response = http.request(method, path, **arguments)
            body, header = body_and_header(response)
            assert body["code"] == code, (path, body)
            assert body["request_id"] == header and FRESH.fullmatch(header), (path, body, header)
            seen.add(header)
    assert len(seen) == len(calls(seeded))  # a new one for each


def test_the_callers_sane_request_id_is_the_answers(services, live_server, seeded):
    with httpx.Client(base_url=live_server.url, timeout=10) as http:
        for n, (method, path, arguments, code) in enumerate(calls(seeded)):
            mine = f"caller.{n}-A_z" + "9" * 40
            response = http.request(method, path, headers={"X-Request-Id": mine}, **arguments)
            body, header = body_and_header(response)
            assert (body["code"], body["request_id"], header) == (code, mine, mine), path


def test_a_pipelined_connection_gets_each_answer_with_its_own_id(services, live_server, seeded):
    """Through the lane on SQLite: log requests answered in one batch keep their own ids."""
    target = ESB_PATH + "?" + urlencode({**seeded, "job_id": 1, "instance_id": 1})
    payload = b"".join(
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: pipelined-{n}\r\n\r\n".encode() for n in range(8)
    )
    answers = exchange(live_server.url, payload, 8)
    assert [body["request_id"] for _head, body in answers] == [f"pipelined-{n}" for n in range(8)]
    assert [head["x-request-id"] for head, _body in answers] == [f"pipelined-{n}" for n in range(8)]


def test_an_unforeseen_error_is_answered_and_logged_under_the_requests_id(services, live_server, caplog, monkeypatch):
    caplog.set_level(logging.ERROR)
    caplog.handler.addFilter(RedactingFilter())  # as the service's own handler: it stamps the request id

    async def broken(*_args: object) -> None:
        raise RuntimeError("the database broke (password=hunter2)")

    monkeypatch.setattr(services.db, "read", broken)  # /healthz: a FastAPI route
    monkeypatch.setattr(services.heartbeat_groups, "receive", broken)  # the heartbeat path
    # a new connection each: uvicorn closes one whose request raised, after its answer
    for path, method, mine in (("/healthz", "GET", "broken-route"), ("/api/agent/heartbeat/", "POST", "broken-hb")):
        body_of = {"json": {}} if method == "POST" else {}
        response = httpx.request(method, live_server.url + path, headers={"X-Request-Id": mine}, timeout=10, **body_of)
        body, header = body_and_header(response)
        assert (body["code"], body["request_id"], header) == (3800500, mine, mine)
        assert "hunter2" not in response.text
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    by_request = {getattr(record, "request_id", None) for record in errors}
    assert by_request == {"broken-route", "broken-hb"}, [(r.name, r.getMessage()) for r in errors]
    assert all("hunter2" not in (record.exc_text or "") for record in errors)


HOSTILE = [
    pytest.param(b"a" * 65, id="65-chars"),
    pytest.param(b"a" * 20000, id="huge"),
    pytest.param("请求-1".encode(), id="utf-8"),
    pytest.param(b"caf\xe9", id="latin-1"),
    pytest.param(b'"quoted"', id="quotes"),
    pytest.param(b"<script>alert(1)</script>", id="markup"),
    pytest.param(b"a b", id="space"),
    pytest.param(b"abc%0d%0aSet-Cookie:%20x=1", id="encoded-crlf"),
    pytest.param(b"id\x00nul", id="nul"),
    pytest.param(b"", id="empty"),
]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("path", ["lane", "asgi"])
def test_a_hostile_request_id_is_replaced_never_echoed(services, live_server, seeded, value, path):
    if path == "lane":
        head = f"GET {ESB_PATH}?{urlencode({**seeded, 'job_id': 1, 'instance_id': 1})} HTTP/1.1\r\n".encode()
    else:
        head = b"GET /healthz HTTP/1.1\r\n"
    payload = head + b"Host: 127.0.0.1\r\nX-Request-Id: " + value + b"\r\n\r\n"
    try:
        answers = exchange(live_server.url, payload, 1)
    except AnswerRefused as refused:  # the HTTP parser refused the request itself, before any code of ours
        assert refused.head.startswith(b"HTTP/1.1 400"), refused.head
        assert value not in refused.head or not value, refused.head
        return
    (headers, body) = answers[0]
    assert body["result"] is True, body
    assert FRESH.fullmatch(body["request_id"]) and headers["x-request-id"] == body["request_id"]


def test_a_crlf_in_the_request_id_splits_no_answer_header(services, live_server):
    """What follows a CRLF is another request header to the parser, never an answer's: only the sane part before
    it is echoed, and the would-be header is nowhere in the answer."""
    payload = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: abc\r\nSet-Cookie: stolen=1\r\n\r\n"
    ((headers, body),) = exchange(live_server.url, payload, 1)
    assert body["request_id"] == headers["x-request-id"] == "abc"
    assert "set-cookie" not in headers and "stolen" not in json.dumps(body)


def test_two_request_id_headers_the_first_is_taken(services, live_server):
    payload = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: first\r\nX-Request-Id: second\r\n\r\n"
    ((headers, body),) = exchange(live_server.url, payload, 1)
    assert body["request_id"] == headers["x-request-id"] == "first"


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (b"a", True),
        (b"A-z_0.9", True),
        (b"x" * 64, True),
        (b"x" * 65, False),
        (b"", False),
        (b"a/b", False),
        (b"a\r\nb", False),
        (b"a\nb", False),
        ("ü".encode(), False),
        (b"a'b", False),
        (None, False),
    ],
)
def test_accept_request_id(value, kept):
    accepted = accept_request_id(value)
    if kept:
        assert value is not None and accepted == value.decode()
    else:
        assert FRESH.fullmatch(accepted), accepted


def test_request_id_of_takes_the_first_header_and_serving_restores_the_previous_id():
    assert request_id_of([(b"host", b"x"), (b"x-request-id", b"one"), (b"x-request-id", b"two")]) == "one"
    assert FRESH.fullmatch(request_id_of([(b"host", b"x")]))
    assert current_request_id() is None
    with serving("outer"):
        with serving("inner"):
            assert current_request_id() == "inner"
        assert current_request_id() == "outer"
    assert current_request_id() is None


class AnswerRefused(AssertionError):
    def __init__(self, head: bytes) -> None:
        super().__init__(head)
        self.head = head


def exchange(url: str, payload: bytes, responses: int) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Send ``payload`` on one new connection; read ``responses`` answers: (headers, JSON body) each."""
    parts = urlsplit(url)
    answers = []
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(payload)
        buffer = b""
        for _ in range(responses):
            while b"\r\n\r\n" not in buffer:
                data = sock.recv(65536)
                if not data:
                    raise AnswerRefused(buffer)
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
            if not status_line.startswith("HTTP/1.1 200"):
                raise AnswerRefused(head)
            length = int(headers["content-length"])
            while len(buffer) < length:
                buffer += sock.recv(65536)
            answers.append((headers, json.loads(buffer[:length])))
            buffer = buffer[length:]
    return answers
