"""Slow and lying clients (``nodeops.api.fastpath.connections``): the header and body read timeouts, the
Content-Length check of the fast paths, the cap on open connections, and a client leaving mid-body. Real uvicorn,
raw sockets, on SQLite (log lane on) and PostgreSQL (lane off)."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from nodeops.process_logging import RedactingFilter
from nodeops.settings import MAX_BODY_BYTES
from tests.support.api import ESB_PATH
from tests.support.logs import append, finish, running_job

HEARTBEAT_PATH = "/api/agent/heartbeat/"
JOB_LIST_PATH = "/api/job/job_list/"  # a FastAPI route (api.routing.add_post)
SHORT = {"header_timeout_s": 0.5, "body_timeout_s": 0.5}  # the timeouts of most tests here
WAIT_S = 10.0  # the longest a test waits for the server; every expected event comes far sooner


@pytest.fixture
def limits() -> dict[str, Any]:
    """The connection settings of the test's server; a test parametrizes ``limits`` to change them."""
    return SHORT


@pytest.fixture
def settings(settings, limits):
    return settings.model_copy(update=limits)


@pytest.fixture
def server_logs(caplog):
    """The records the server logs from INFO on (it runs in a thread of this process)."""
    caplog.set_level(logging.INFO)
    return caplog


@pytest.fixture
def connect(live_server):
    """``connect()``: a new connection to the live server, closed at the end of the test."""
    parts = urlsplit(live_server.url)
    opened: list[socket.socket] = []

    def open_one() -> socket.socket:
        sock = socket.create_connection((parts.hostname, parts.port), timeout=WAIT_S)
        opened.append(sock)
        return sock

    yield open_one
    for sock in opened:
        sock.close()


def request_head(method: str, path: str, *, content_length: int | None = None, request_id: str = "") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    if request_id:
        lines.append(f"X-Request-Id: {request_id}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, Any], bytes]:
    """One HTTP answer: its status, headers, JSON body, and whatever followed it until the server closed (when
    it announced ``connection: close``)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        buffer += receive(sock)
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    length = int(headers["content-length"])
    while len(buffer) < length:
        buffer += receive(sock)
    rest = buffer[length:]
    if headers.get("connection") == "close":
        rest += read_until_closed(sock)
    return int(status_line.split()[1]), headers, json.loads(buffer[:length]), rest


def receive(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise AssertionError("the server closed the connection before answering")
    return data


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket timeout fails the test)."""
    received = b""
    while data := sock.recv(65536):
        received += data
    return received


def server_let_go(sock: socket.socket) -> bool:
    """Whether the server's end of this connection is closed: no process holds its socket any more (inode 0 in
    /proc/net/tcp, an orphan the kernel keeps while it still has data to send), or it is gone altogether."""
    client_port = sock.getsockname()[1]
    server_port = sock.getpeername()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, remote_port = (int(address.split(":")[1], 16) for address in fields[1:3])
        if (local_port, remote_port) == (server_port, client_port):
            return fields[9] == "0"
    return True


def healthz_works(sock: socket.socket) -> bool:
    sock.sendall(request_head("GET", "/healthz"))
    status, _, body, _ = read_answer(sock)
    return status == 200 and body["result"] is True


def assert_envelope(body: dict[str, Any], code: int, *contains: str) -> None:
    assert (body["result"], body["code"], body["data"]) == (False, code, None), body
    assert body["message"].endswith(f"（{code}）"), body
    for part in contains:
        assert part in body["message"], body


def assert_no_unhandled_error(records: list[logging.LogRecord]) -> None:
    for record in records:
        assert record.levelno < logging.ERROR, record.getMessage()
        assert record.exc_info is None, record.getMessage()
        assert getattr(record, "action", "") != "unhandled_error", record.getMessage()


# --- the header timeout -----------------------------------------------------------------------------------------


def test_partial_headers_are_answered_408_and_closed_after_the_header_timeout(connect, server_logs):
    server_logs.handler.addFilter(RedactingFilter())  # as the service's own handler: it stamps the request id
    sock = connect()
    started = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Never-Ends: ")
    status, headers, body, rest = read_answer(sock)
    elapsed = time.monotonic() - started
    assert status == 408 and headers["connection"] == "close" and rest == b""
    assert headers["x-content-type-options"] == "nosniff"
    assert_envelope(body, 3800408, "headers did not all arrive within 0.5 s (NODEOPS_HEADER_TIMEOUT_S)")
    assert 0.5 <= elapsed < WAIT_S
    # a fresh request id (the headers never arrived), in the answer and on its log line
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"]) and body["request_id"] == headers["x-request-id"]
    timeouts = [r for r in server_logs.records if getattr(r, "action", "") == "request_timeout"]
    assert [getattr(r, "request_id", None) for r in timeouts] == [body["request_id"]]


def test_partial_headers_after_an_answered_log_request_on_the_same_connection_are_timed_out(connect):
    # on SQLite the log lane answers the first request (below ASGI); the second must still be held to the timeout
    sock = connect()
    sock.sendall(request_head("GET", ESB_PATH + "?job_id=1&instance_id=1"))
    status, _, body, _ = read_answer(sock)
    assert status == 200 and body["code"] == 1306406  # no credentials: answered, by the lane on SQLite
    sock.sendall(b"GET " + ESB_PATH.encode() + b"?job_id=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    status, _, body, _ = read_answer(sock)
    assert status == 408
    assert_envelope(body, 3800408, "headers")


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(connect):
    sock = connect()
    started = time.monotonic()
    assert read_until_closed(sock) == b""  # nothing was asked, so nothing is answered (as nginx does)
    assert 0.5 <= time.monotonic() - started < WAIT_S


# --- the body timeout -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [ESB_PATH, HEARTBEAT_PATH, JOB_LIST_PATH])
def test_body_shorter_than_its_content_length_is_answered_408_after_the_body_timeout(connect, server_logs, path):
    sock = connect()
    started = time.monotonic()
    sock.sendall(request_head("POST", path, content_length=100, request_id="slow-body-1") + b'{"job_id": 1,')
    status, headers, body, rest = read_answer(sock)
    assert time.monotonic() - started >= 0.5
    assert status == 408 and headers["connection"] == "close" and rest == b""
    assert_envelope(body, 3800408, "body did not all arrive within 0.5 s of its headers (NODEOPS_BODY_TIMEOUT_S)")
    assert body["request_id"] == headers["x-request-id"] == "slow-body-1"  # its headers had arrived
    assert_no_unhandled_error(server_logs.records)


def test_a_slow_body_that_arrives_in_time_is_answered(connect):
    sock = connect()
    content = json.dumps({"job_id": 1, "instance_id": 1}).encode()
    sock.sendall(request_head("POST", ESB_PATH, content_length=len(content)) + content[:5])
    time.sleep(0.2)
    sock.sendall(content[5:])
    status, _, body, _ = read_answer(sock)
    assert status == 200 and body["code"] == 1306406  # read, then refused for its lack of credentials


# --- Content-Length over the limit ------------------------------------------------------------------------------


@pytest.mark.parametrize("limits", [{}])  # the default timeouts: only the Content-Length check can answer at once
@pytest.mark.parametrize("path", [ESB_PATH, HEARTBEAT_PATH, JOB_LIST_PATH])
def test_a_content_length_over_the_limit_is_refused_before_the_body_is_read(connect, path):
    sock = connect()
    started = time.monotonic()
    sock.sendall(request_head("POST", path, content_length=MAX_BODY_BYTES + 1))  # and not one byte of body
    status, _, body, _ = read_answer(sock)
    assert status == 200
    assert_envelope(body, 3800413, f"request body exceeds {MAX_BODY_BYTES} bytes")
    assert time.monotonic() - started < WAIT_S


# --- the connection cap -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("limits", [{"max_connections": 4}])
def test_connections_past_the_cap_are_refused_with_503_while_the_others_work(connect, server_logs):
    admitted = [connect() for _ in range(4)]
    for sock in admitted:
        assert healthz_works(sock)
    refused = connect()
    refused.sendall(request_head("GET", "/healthz"))
    status, headers, body, rest = read_answer(refused)
    assert status == 503 and headers["connection"] == "close" and headers["retry-after"] == "1" and rest == b""
    assert headers["x-content-type-options"] == "nosniff"
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"]) and body["request_id"] == headers["x-request-id"]
    assert_envelope(body, 3800503, "already has 4 connections open", "NODEOPS_MAX_CONNECTIONS")
    for sock in admitted:  # the connections below the cap are served as before
        assert healthz_works(sock)
    warnings = [r for r in server_logs.records if getattr(r, "action", "") == "connection_cap_reached"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING

    admitted.pop().close()  # one closes: a new connection is served again
    deadline = time.monotonic() + WAIT_S
    while True:
        sock = connect()
        sock.sendall(request_head("GET", "/healthz"))
        status, _, _, _ = read_answer(sock)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # the server has not yet seen the close
    assert status == 200


# --- a client leaving mid-body ----------------------------------------------------------------------------------


@pytest.mark.parametrize("limits", [{}])  # the default timeouts: the client leaves long before any of them
def test_a_client_leaving_mid_body_is_one_log_line_not_an_unhandled_error(connect, server_logs):
    for path in (JOB_LIST_PATH, ESB_PATH, HEARTBEAT_PATH):
        sock = connect()
        sock.sendall(request_head("POST", path, content_length=100) + b'{"job_id": 1,')
        time.sleep(0.1)  # the server reads the headers and starts waiting for the body
        sock.close()
        deadline = time.monotonic() + WAIT_S
        while not [
            r
            for r in server_logs.records
            if getattr(r, "action", "") == "client_disconnected" and path in r.getMessage()
        ]:
            assert time.monotonic() < deadline, f"the server did not notice the client leaving {path}"
            time.sleep(0.05)
    assert_no_unhandled_error(server_logs.records)


# --- a client that does not read its answer ---------------------------------------------------------------------


# an answer of 8 MiB: more than the kernel takes into its buffers on loopback (a few MiB), so the rest waits
UNREAD = {**SHORT, "send_timeout_s": 0.5, "log_step_max_bytes": 16 << 20}


@pytest.mark.parametrize("limits", [UNREAD])
def test_a_client_that_leaves_a_big_answer_unread_is_cut_off_after_the_send_timeout(
    connect, server_logs, services, auth
):
    job = running_job(services)
    line = "x" * 120
    for chunk in range(32):
        append(services, job.record_id, 1, [f"{chunk:02d}.{n:04d} {line}" for n in range(2000)])
    finish(services, job.record_id)
    query = urlencode({**auth, "job_id": job.job_id, "instance_id": job.instance_id})
    body = json.dumps({**auth, "job_id": job.job_id, "instance_id": job.instance_id}).encode()
    asks = {
        "GET (the log lane on SQLite)": request_head("GET", f"{ESB_PATH}?{query}"),
        "POST (FastAPI)": request_head("POST", ESB_PATH, content_length=len(body)) + body,
    }
    for how, request in asks.items():
        sock = connect()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # reads nothing: the server's buffer fills
        sent = time.monotonic()
        sock.sendall(request)
        deadline = sent + WAIT_S
        while not [r for r in server_logs.records if getattr(r, "action", "") == "send_timeout"]:
            assert time.monotonic() < deadline, f"{how}: the server still holds the connection of a client not reading"
            time.sleep(0.05)
        assert time.monotonic() - sent >= 0.5
        record = next(r for r in server_logs.records if getattr(r, "action", "") == "send_timeout")
        assert record.unsent_bytes > 0 and "unread for 0.5 s" in record.getMessage()
        assert server_let_go(sock)  # the server's socket is closed, though the kernel still holds what it took
        sock.close()  # unread data: a reset, which frees the rest
        server_logs.clear()
    assert_no_unhandled_error(server_logs.records)
    assert healthz_works(connect())  # the server goes on serving


@pytest.mark.parametrize("limits", [{**SHORT, "send_timeout_s": 0.5}])
def test_a_client_reading_its_big_answer_slowly_but_steadily_gets_all_of_it(connect, services, auth):
    job = running_job(services)
    for chunk in range(4):
        append(
            services, job.record_id, 1, [f"[2021-09-16 15:06:04 INFO] {chunk}.{n:04d} {'y' * 64}" for n in range(1000)]
        )
    finish(services, job.record_id)
    query = urlencode({**auth, "job_id": job.job_id, "instance_id": job.instance_id})
    sock = connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(request_head("GET", f"{ESB_PATH}?{query}"))
    time.sleep(0.1)  # a moment without reading (less than the send timeout), then a steady pace
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        buffer += receive(sock)
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[1]
    )
    while len(buffer) < length:
        buffer += receive(sock)
        time.sleep(0.001)
    steps = json.loads(buffer[:length])["data"]
    assert sum(step["log"].count("y" * 64) for step in steps) == 4000
