"""A worker's ``MetricsListener`` over real HTTP on 127.0.0.1: the token as on the API, a store that fails still
answers the process's own figures, other paths are 404 in the envelope, and a client that stalls or sends a huge
header holds nobody else."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from nodeops import metrics
from tests.support.metrics import TOKEN, parse, value

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _failing_read() -> metrics.StoreCounts:
    raise RuntimeError("the store is gone")


@pytest.fixture
def listener() -> Iterator[metrics.MetricsListener]:
    reads = iter([metrics.StoreCounts(workers_alive=3, queue_depth=5)])
    served = metrics.MetricsListener("127.0.0.1", 0, TOKEN, lambda: next(reads, None) or _failing_read())
    served.start()
    yield served
    served.stop()


def test_the_listener_answers_the_token_only(listener):
    url = f"http://127.0.0.1:{listener.port}"
    with httpx.Client(base_url=url, timeout=10) as client:
        first = client.get("/metrics", headers=AUTH)
        assert first.status_code == 200 and first.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = parse(first.text)
        assert value(samples, "nodeops_workers_alive") == 3
        assert value(samples, "nodeops_queue_depth_messages") == 5
        assert value(samples, "nodeops_store_scrape_ok") == 1
        second = parse(client.get("/metrics?x=1", headers=AUTH).text)  # the read fails now
        assert value(second, "nodeops_store_scrape_ok") == 0
        assert "nodeops_hosts_running" in {name for name, _labels in second}  # the process's own, still
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": b"Bearer \xe4\xbb\xa4"}):
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.json()["code"] == 3800401 and TOKEN not in refused.text
            assert refused.headers["www-authenticate"].startswith("Bearer")
        other = client.get("/api/job/1/log/", headers=AUTH)
        assert other.status_code == 404 and other.json()["code"] == 3800404


def test_a_stalled_client_or_a_huge_header_holds_nobody(listener):
    stalled = socket.create_connection(("127.0.0.1", listener.port))
    stalled.sendall(b"GET /metrics HTTP/1.1\r\nAuthorization: Bear")
    huge = socket.create_connection(("127.0.0.1", listener.port))
    huge.sendall(b"GET /metrics HTTP/1.1\r\nAuthorization: Bearer " + b"x" * 70000 + b"\r\n\r\n")
    try:
        started = time.monotonic()
        answer = httpx.get(f"http://127.0.0.1:{listener.port}/metrics", headers=AUTH, timeout=10)
        assert answer.status_code == 200 and time.monotonic() - started < 5
        huge.settimeout(10)
        assert huge.recv(64).startswith(b"HTTP/1.0 431")  # the header line is refused, not read on and on
    finally:
        stalled.close()
        huge.close()
