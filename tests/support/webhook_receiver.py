"""A webhook receiver for the notification tests: a real HTTP server on 127.0.0.1 that answers each POST as
scripted (a status, or ``STALL``: it never answers until closed), keeps every request, and verifies signatures
the way docs/notifications.md tells a receiver to."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

STALL = "stall"
DRIP = "drip"  # answers 200 at once, then its body a byte every 0.2 s, never ending it


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived

    def json(self) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(self.body)
        return payload


def verify(received: Received, secret: bytes, *, tolerance_s: float = 300) -> dict[str, Any]:
    """The body of a signed notification, after checking its signature as a receiver should (raises
    AssertionError otherwise): HMAC-SHA256 of "<t>.<body>" with the secret, t recent."""
    header = received.headers.get("x-nodeops-signature", "")
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, given = parts.get("t", ""), parts.get("v1", "")
    assert timestamp.isdigit() and abs(time.time() - int(timestamp)) < tolerance_s, header
    expected = hmac.new(secret, timestamp.encode() + b"." + received.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, given), header
    return received.json()


class Receiver:
    """Answers the n-th POST with ``answers[n]`` (an HTTP status, or STALL), then 200."""

    def __init__(self, answers: list[int | str] | None = None) -> None:
        self.answers = list(answers or [])
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append(
                        Received(
                            path=self.path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                            at=time.monotonic(),
                        )
                    )
                    answer = receiver.answers.pop(0) if receiver.answers else 200
                if answer == STALL:
                    receiver._closing.wait(60)
                    self.close_connection = True
                    return
                if answer == DRIP:
                    self.send_response(200)
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                    try:
                        while not receiver._closing.wait(0.2):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                    except OSError:
                        pass
                    return
                reply = b"x" * 100_000  # a long answer: the sender reads a little and drops the rest
                self.send_response(int(answer))
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                try:
                    self.wfile.write(reply)
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/nodeops?team=ops"

    def wait(self, count: int, timeout_s: float = 30) -> list[Received]:
        """Until ``count`` requests arrived; returns them all."""
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.requests)} requests after {timeout_s} s, expected {count}")
            time.sleep(0.05)
        return list(self.requests)

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
