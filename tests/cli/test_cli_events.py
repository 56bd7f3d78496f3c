"""How the CLI reads an event stream (``Remote.events``): the Server-Sent Events format, and a stream that drops
or ends being opened again from the last event id, against a real HTTP server on 127.0.0.1; and ``--follow``
against a service without the stream (Node Manager itself), which it polls instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nodeops.cli.remote import Identity, NotServed, Remote, Unreachable, parse_events

IDENTITY = Identity(app_code="app", app_secret="secret", username="admin")


def test_parse_events_reads_blocks_and_skips_comments():
    lines = [
        ": keep-alive",
        "",
        "id: 17",
        "event: instance",
        'data: {"status": "RUNNING"}',
        "",
        "event: end",
        "data:{",
        'data: "status": "SUCCESS"}',
        "",
        "event: ignored-without-data",
        "",
    ]
    assert list(parse_events(lines)) == [
        ("instance", {"status": "RUNNING"}, "17"),
        ("end", {"status": "SUCCESS"}, None),
    ]


class StreamServer:
    """A stream that sends one event per connection, then drops it (no final chunk), and notes the
    ``Last-Event-ID`` of each connection; ``/missing`` answers the service's 3800404 envelope."""

    def __init__(self) -> None:
        self.last_ids: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path == "/missing":
                    body = json.dumps({"result": False, "code": 3800404, "message": "no API here", "data": None})
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body.encode())
                    return
                outer.last_ids.append(self.headers.get("Last-Event-ID"))
                n = len(outer.last_ids)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                block = f'id: {n}\nevent: tick\ndata: {{"n": {n}}}\n\n'.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                self.wfile.flush()
                self.close_connection = True  # dropped: the chunked body never ends

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StreamServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stream() -> Iterator[StreamServer]:
    with StreamServer() as server:
        yield server


def test_a_dropped_stream_resumes_after_the_last_event_id(stream):
    with Remote(stream.url, IDENTITY) as remote:
        events = remote.events("/events/")
        got = [next(events) for _ in range(3)]
        events.close()
    assert got == [("tick", {"n": 1}), ("tick", {"n": 2}), ("tick", {"n": 3})]
    assert stream.last_ids == [None, "1", "2"]


def test_an_envelope_instead_of_a_stream_raises_as_a_call_does(stream):
    with Remote(stream.url, IDENTITY) as remote, pytest.raises(NotServed, match="no API here"):
        next(remote.events("/missing"))


def test_a_service_that_stays_away_is_unreachable_after_some_tries(stream):
    url = stream.url
    stream.server.shutdown()
    stream.server.server_close()
    with Remote(url, IDENTITY) as remote, pytest.raises(Unreachable, match="cannot reach the nodeops service"):
        next(remote.events("/events/"))


class NodeManager:
    """Node Manager's job APIs as far as ``nodeops job show --follow`` reads them, and no event stream: job 1's
    one host is RUNNING for the first two details calls, then SUCCESS."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self, data: object, code: int = 0) -> None:
                body = json.dumps({"result": code == 0, "code": code, "message": "", "data": data}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                outer.calls.append("GET " + self.path)
                self.answer(None, 3800404)  # no /events/ here

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.calls.append("POST " + self.path)
                done = sum(call.startswith("POST") for call in outer.calls) > 2
                status = "SUCCESS" if done else "RUNNING"
                row = {"instance_id": "host|instance|host|7", "ip": "127.0.0.7", "status": status, "step": "安装"}
                row["status_display"] = "执行成功" if done else "正在 安装"
                stats = {"total_count": 1, "success_count": int(done), "running_count": int(not done)}
                self.answer({"job_id": 1, "status": status, "statistics": stats, "list": [row], "total": 1})

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


def test_follow_polls_a_service_without_the_event_stream(tmp_path):
    manager = NodeManager()
    manager.thread.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEOPS_")}
    env.update(NODEOPS_DATA_DIR=str(tmp_path), NODEOPS_APP_CODE="app", NODEOPS_APP_SECRET="s", NODEOPS_USERNAME="a")
    try:
        nodeops = str(Path(sys.executable).with_name("nodeops"))
        done = subprocess.run(
            [nodeops, "job", "show", "1", "--follow", "--url", manager.url],
            env={**env, "COLUMNS": "160"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        manager.server.shutdown()
        manager.server.server_close()
    assert done.returncode == 0, done.stdout + done.stderr
    # the stream refused, then three details to follow the job and one to show it
    assert manager.calls == ["GET /api/job/1/events/"] + ["POST /api/job/1/details/"] * 4
    assert "RUNNING  127.0.0.7  host|instance|host|7  正在 安装" in done.stdout, done.stdout
    assert "SUCCESS  127.0.0.7  host|instance|host|7  执行成功" in done.stdout, done.stdout
