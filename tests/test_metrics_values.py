"""The pieces of ``nodeops.metrics`` without I/O: the HTTP statistics kept by hand (buckets, sums, labels), the
envelope code read from a body's first bytes, and the bearer check."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from nodeops import metrics
from nodeops.errors import InstanceNotFound
from tests.support.metrics import parse, value


def _scrape(stats: metrics.HttpStats):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(stats)
    return parse(generate_latest(registry).decode())


def test_http_stats_count_and_bucket_like_a_prometheus_histogram():
    stats = metrics.HttpStats(buckets_s=(0.01, 0.1, 1.0))
    for seconds in (0.005, 0.01, 0.05, 0.5, 3.0):
        stats.observe("/r/{id}/", "GET", 200, "0", seconds)
    stats.observe("/r/{id}/", "GET", 200, "3800001", 0.02)
    stats.observe("/r/{id}/", "BREW", 400, "", 0.001)
    samples = _scrape(stats)
    assert value(samples, "nodeops_http_requests_total", route="/r/{id}/", method="GET", status="200", code="0") == 5
    assert (
        value(samples, "nodeops_http_requests_total", route="/r/{id}/", method="GET", status="200", code="3800001") == 1
    )
    assert value(samples, "nodeops_http_requests_total", route="/r/{id}/", method="OTHER", status="400", code="") == 1
    buckets = {
        le: value(samples, "nodeops_http_request_duration_seconds_bucket", route="/r/{id}/", method="GET", le=le)
        for le in ("0.01", "0.1", "1.0", "+Inf")
    }
    assert buckets == {"0.01": 2, "0.1": 4, "1.0": 5, "+Inf": 6}  # a value equal to a bound is in its bucket
    count = value(samples, "nodeops_http_request_duration_seconds_count", route="/r/{id}/", method="GET")
    assert count == 6
    total = value(samples, "nodeops_http_request_duration_seconds_sum", route="/r/{id}/", method="GET")
    assert total == pytest.approx(0.005 + 0.01 + 0.05 + 0.5 + 3.0 + 0.02)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"result":true,"code":0,"message":"success","data":[]}', "0"),
        (b'{"result":false,"code":3800404,"message":"x","data":null}', "3800404"),
        (b"<!doctype html><html>", ""),
        (b'{"code":0}', ""),
        (b'{"result":true,"code":12345678901,"message":""}', ""),
        (b"", ""),
    ],
)
def test_the_envelope_code_is_read_from_the_first_bytes_only(body, code):
    assert metrics.envelope_code(body) == code


def test_outcome_codes_of_the_fast_path():
    assert metrics.outcome_code(b"{}") == "0"
    assert metrics.outcome_code(InstanceNotFound(job_id=1, instance_id="x")) == "3800007"
    assert metrics.outcome_code(RuntimeError("boom")) == "3800500"


@pytest.mark.parametrize(
    ("header", "token", "ok"),
    [
        (b"Bearer s3cret", "s3cret", True),
        (b"Bearer s3cret", "", False),  # no token configured: nothing reads it
        (None, "s3cret", False),
        (b"Bearer s3cre", "s3cret", False),
        (b"bearer s3cret", "s3cret", False),
        (b"Bearer s3cret ", "s3cret", False),
        (b"Bearer " + "令牌".encode(), "令牌", True),  # a non-ASCII token, sent as its UTF-8 bytes
        (b"Bearer \xe4\xbb", "令牌", False),
        (b"Bearer " + b"s" * 100_000, "s3cret", False),
    ],
)
def test_the_bearer_check(header, token, ok):
    assert metrics.is_authorized(header, token) is ok
