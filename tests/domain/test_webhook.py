"""The pure rules of notifications: which webhook URLs are accepted, masking, the signature, the backoff."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pydantic import ValidationError

from nodeops.domain.webhook import (
    MAX_URL_CHARS,
    backoff_s,
    mask_url,
    read_webhook_url,
    signature,
    webhook_url_problem,
)
from nodeops.settings import Settings


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hooks/nodeops",
        "https://127.0.0.1/hook?token=abc&team=ops",
        "HTTP://127.0.0.1/UPPER",
        "http://[::1]:8080/hook",
        "http://xn--r8jz45g.xn--zckzah/hook",  # a punycode host
        "http://127.0.0.1/%E4%BD%A0",  # percent-encoded path
        "http://127.0.0.1/" + "a" * (MAX_URL_CHARS - len("http://127.0.0.1/")),
    ],
)
def test_accepted_urls(url):
    assert webhook_url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "scheme is file"),
        ("gopher://127.0.0.1/", "scheme is gopher"),
        ("127.0.0.1:9000/hook", "scheme is missing"),
        ("x" * 40 + "://127.0.0.1/", "scheme is not one"),
        ("//127.0.0.1/hook", "scheme is missing"),
        ("http://127.0.0.1/" + "a" * MAX_URL_CHARS, "characters"),
        ("http://例え.テスト/", "non-ASCII"),
        ("http://127.0.0.1/\x00", "control"),
        ("http://127.0.0.1/\t", "control"),
        ("http://u:p@127.0.0.1/", "user:password"),
        ("http://u@127.0.0.1/", "user:password"),
        ("http://@127.0.0.1/", "user:password"),
        ("http://", "no host"),
        ("http://:80/", "no host"),
        ("http://127.0.0.1:0/", "port 0"),
        ("http://127.0.0.1:65536/", "host or port"),
        ("http://[::1/", "host or port"),
        ("", "characters a URL may not"),
        (None, "got a NoneType"),
        (b"http://127.0.0.1/", "got a bytes"),
        ({"url": "http://127.0.0.1/"}, "got a dict"),
    ],
)
def test_refused_urls_say_why_without_repeating_them(url, why):
    problem = webhook_url_problem(url)
    assert problem is not None and why in problem
    assert problem.startswith("must be an http:// or https:// URL")
    if isinstance(url, str) and len(url) > 20:
        assert url not in problem


def test_a_request_without_url_has_none_and_a_bad_one_is_a_problem_of_its_field():
    problems: dict[str, str] = {}
    assert read_webhook_url(None, "webhook_url", problems) is None
    assert read_webhook_url("", "webhook_url", problems) is None
    assert problems == {}
    assert read_webhook_url("ftp://127.0.0.1/", "hooks[0]", problems) is None
    assert list(problems) == ["hooks[0]"]
    assert read_webhook_url("http://127.0.0.1/ok", "webhook_url", problems) == "http://127.0.0.1/ok"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("http://127.0.0.1/hook", "http://127.0.0.1/hook"),
        ("http://alice:pw@127.0.0.1:9/hook?q=1", "http://***@127.0.0.1:9/hook?q=1"),
        ("http://a:b@c@127.0.0.1/", "http://***@127.0.0.1/"),
    ],
)
def test_mask_url_hides_credentials(url, masked):
    assert mask_url(url) == masked


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = '{"job_id":1,"status":"SUCCESS","名":"值"}'.encode()
    header = signature(b"secret", 1_700_000_000, body)
    t, v1 = (part.split("=", 1)[1] for part in header.split(","))
    assert t == "1700000000"
    assert v1 == hmac.new(b"secret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature(b"other", 1_700_000_000, body) != header
    assert signature(b"secret", 1_700_000_001, body) != header


@pytest.mark.parametrize(
    ("attempts", "wait_s"), [(1, 10.0), (2, 20.0), (3, 40.0), (6, 320.0), (12, 3600.0), (99, 3600.0)]
)
def test_backoff_doubles_up_to_the_cap(attempts, wait_s):
    assert backoff_s(attempts, base_s=10.0) == wait_s


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "http://alice:s3cr3tpw@127.0.0.1/",
        "http://127.0.0.1:99999/",
        "http://例え.テスト/",
        "http:///x",
        "http://127.0.0.1/a b",
        "http://127.0.0.1/" + "a" * 2048,
    ],
)
def test_a_default_url_the_requests_would_refuse_is_refused_at_start(monkeypatch, url):
    monkeypatch.setenv("NODEOPS_WEBHOOK_URL", url)
    with pytest.raises(ValidationError, match="NODEOPS_WEBHOOK_URL must be an http") as refused:
        Settings()
    # the message the CLI prints (pydantic's own str() of the error shows a cut of the input)
    (message,) = [str(error["ctx"]["error"]) for error in refused.value.errors()]
    assert "s3cr3tpw" not in message
    assert webhook_url_problem(url) is not None  # the same rule as a request's


def test_the_default_url_is_read_stripped():
    assert Settings(webhook_url=" http://127.0.0.1:9000/hook ").webhook_url == "http://127.0.0.1:9000/hook"
    assert Settings(webhook_url="  ").webhook_url == ""
