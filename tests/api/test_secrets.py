"""The app secret and the bk_token never leak: not into any log record (DEBUG and up), not into any response
body, not into the text or repr of the errors the service raises — whichever way the caller sent them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from nodeops.errors import NodeopsError
from nodeops.process_logging import RedactingFilter
from nodeops.service.auth import CommonArgs
from nodeops.service.security import verify_token
from nodeops.settings import MAX_BODY_BYTES
from tests.support.api import AUTH_HEADER, ESB_PATH, apigw_path, nodeman_path
from tests.support.factories import make_app, make_user

CLIENT_LOGGERS = ("httpx", "httpcore")  # the test's own HTTP client logs the URLs it sends, query string included
# uvicorn's request lines hold the query string. The service runs uvicorn with access_log=False, which makes this
# logger non-propagating and handler-less; pytest's caplog attaches its handler to such loggers anyway. Had it
# been on, every handler of nodeops.process_logging.configure_logging passes records through RedactingFilter first, so
# these records are checked as that filter leaves them.
ACCESS_LOGGER = "uvicorn.access"


@pytest.fixture
def secrets_world(services, esb_app, admin, seed_job, token_for):
    strict = make_app(services, "strict_app", allow_username=False)
    make_user(services, "half", biz=[3])
    past = datetime.now(UTC) - timedelta(days=1)
    return {
        "app": esb_app,
        "strict": strict,
        "token": token_for("admin"),
        "half_token": token_for("half"),
        "expired_token": token_for("admin", ttl_s=60, now=past),
        "wrong_secret": "wrong-secret-" + esb_app.secret[::-1],
    }


def secret_values(world) -> list[str]:
    values = [
        world["app"].secret,
        world["strict"].secret,
        world["token"],
        world["half_token"],
        world["expired_token"],
        world["wrong_secret"],
    ]
    # the signature alone is the secret part of a token; its payload (base64 JSON of the name) is not
    return values + [token.rsplit(".", 1)[1] for token in values[2:5]]


def requests_to_send(world) -> Iterator[tuple[str, str, dict]]:
    app, strict = world["app"], world["strict"]
    token, half_token, expired = world["token"], world["half_token"], world["expired_token"]
    good = {"bk_app_code": app.code, "bk_app_secret": app.secret}
    wrong = {"bk_app_code": app.code, "bk_app_secret": world["wrong_secret"]}
    target = {"job_id": 1, "instance_id": 1}
    yield "GET", ESB_PATH, {"params": {**good, "bk_token": token, **target}}
    yield "GET", ESB_PATH, {"params": {**good, "bk_username": "admin", **target}}
    yield "POST", ESB_PATH, {"json": {**good, "bk_token": token, **target}}
    yield "POST", ESB_PATH, {"content": json.dumps({**good, "bk_token": token, **target})[:-1].encode() + b",}"}
    yield (
        "GET",
        apigw_path(1),
        {"params": {"instance_id": 1}, "headers": {AUTH_HEADER: json.dumps({**good, "bk_token": token})}},
    )
    yield "GET", nodeman_path(1), {"params": {**good, "bk_token": half_token, "instance_id": 1}}  # 9900403
    yield "GET", nodeman_path(1), {"params": {**good, "bk_token": token, "instance_id": "host|x"}}  # 3800001
    yield "GET", nodeman_path(99), {"params": {**good, "bk_token": token, "instance_id": 1}}  # 3801012
    yield "GET", nodeman_path(1), {"params": {**good, "bk_token": token, "instance_id": 9}}  # 3800007
    yield "GET", ESB_PATH, {"params": {**wrong, "bk_token": token, **target}}  # 1306403
    yield "POST", ESB_PATH, {"json": {**wrong, "bk_username": "admin", **target}}  # 1306403
    yield "GET", apigw_path(1), {"params": {"instance_id": 1}, "headers": {AUTH_HEADER: json.dumps(wrong)}}
    yield "GET", ESB_PATH, {"params": {**good, "bk_token": expired, **target}}  # 1306000 expired
    yield "GET", ESB_PATH, {"params": {**good, "bk_token": token[:-2] + "AA", **target}}  # 1306000 signature
    yield (
        "GET",
        ESB_PATH,
        {"params": {"bk_app_code": strict.code, "bk_app_secret": strict.secret, "bk_username": "admin"}},
    )
    yield "GET", ESB_PATH, {"params": {"bk_app_secret": app.secret, "bk_token": token}}  # 1306406
    yield (
        "POST",
        ESB_PATH,
        {"content": b'{"bk_app_secret": "' + app.secret.encode() + b'", "bk_token": "' + token.encode()},
    )
    yield "POST", ESB_PATH, {"content": json.dumps([app.secret, token]).encode()}  # body not an object
    big = json.dumps({**good, "bk_token": token, "pad": " " * MAX_BODY_BYTES}).encode()
    yield "POST", ESB_PATH, {"content": big}  # 3800413
    yield "POST", nodeman_path(1), {"json": {**good, "bk_token": token, "instance_id": 1}}  # 3800405
    yield "GET", "/nope", {"params": {**good, "bk_token": token}}  # 3800404
    yield "GET", ESB_PATH, {"params": {**target}, "headers": {AUTH_HEADER: "{" + json.dumps(good)}}  # bad header
    # a NUL byte in a name next to the real secret (on PostgreSQL this reaches the driver and fails there)
    yield "GET", ESB_PATH, {"params": {**good, "bk_username": "ad\x00min", **target}}


def test_secrets_appear_in_no_log_record_and_no_response_body(client, caplog, secrets_world):
    secrets = secret_values(secrets_world)
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    codes: list[int] = []
    for method, path, kwargs in requests_to_send(secrets_world):
        response = client.request(method, path, **kwargs)
        assert response.status_code == 200
        bodies.append(response.text)
        codes.append(response.json()["code"])
    assert 0 in codes and {1306403, 1306000, 1306406, 3800001, 9900403, 3801012, 3800007, 3800413} <= set(codes)
    for body in bodies:
        for secret in secrets:
            assert secret not in body
    records = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    for record in records:
        if record.name == ACCESS_LOGGER:
            record = logging.makeLogRecord(record.__dict__)
            RedactingFilter().filter(record)
        text = record.getMessage()
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        text += repr(record.__dict__.get("args"))
        for secret in secrets:
            assert secret not in text, f"{record.name}: {text}"


def _raise(services, args: CommonArgs, params: dict) -> NodeopsError:
    try:
        asyncio.run(services.logs.instance_log(args, params))
    except NodeopsError as exc:
        return exc
    raise AssertionError("expected an error")


def _texts_of(exc: BaseException) -> Iterator[str]:
    """Every way an error may be printed: str, repr, args, message, data, and the same for its causes."""
    seen: BaseException | None = exc
    while seen is not None:
        yield str(seen)
        yield repr(seen)
        yield repr(seen.args)
        yield "".join(traceback.format_exception_only(type(seen), seen))
        if isinstance(seen, NodeopsError):
            yield seen.message
            yield orjson.dumps(seen.data).decode()
        seen = seen.__cause__ or seen.__context__


def test_secrets_appear_in_no_raised_error(services, secrets_world):
    app, strict = secrets_world["app"], secrets_world["strict"]
    token = secrets_world["token"]
    secrets = secret_values(secrets_world)
    cases = [
        CommonArgs(bk_app_code=app.code, bk_app_secret=secrets_world["wrong_secret"], bk_token=token),
        CommonArgs(bk_app_code="nobody", bk_app_secret=app.secret, bk_token=token),
        CommonArgs(bk_app_code=app.code, bk_app_secret=app.secret, bk_token=secrets_world["expired_token"]),
        CommonArgs(bk_app_code=app.code, bk_app_secret=app.secret, bk_token=token[:-3] + "AAA"),
        CommonArgs(bk_app_code=app.code, bk_app_secret=app.secret, bk_token="v1.\u00e9." + token),
        CommonArgs(bk_app_code=strict.code, bk_app_secret=strict.secret, bk_username="admin"),
        CommonArgs(bk_app_code="", bk_app_secret=app.secret, bk_token=token),
        CommonArgs(bk_app_code=app.code, bk_app_secret=app.secret),
        CommonArgs(bk_app_code=app.code, bk_app_secret=app.secret, bk_token=secrets_world["half_token"]),
    ]
    raised = [_raise(services, args, {"job_id": 1, "instance_id": 1}) for args in cases]
    good = CommonArgs(bk_app_code=app.code, bk_app_secret=app.secret, bk_token=token)
    raised += [
        _raise(services, good, {"job_id": "x", "instance_id": 1}),
        _raise(services, good, {"job_id": 99, "instance_id": 1}),
        _raise(services, good, {"job_id": 1, "instance_id": 9}),
        _raise(services, good, {"job_id": 1, "instance_id": 1, "attempt": 5}),
    ]
    for header in ("{" + app.secret, json.dumps([app.secret, token])):
        try:
            CommonArgs.gather({"bk_app_secret": app.secret, "bk_token": token}, header)
        except NodeopsError as exc:
            raised.append(exc)
    try:
        verify_token(b"another key", token)
    except NodeopsError as exc:
        raised.append(exc)
    assert len(raised) >= 15
    for exc in raised:
        for text in _texts_of(exc):
            for secret in secrets:
                assert secret not in text, f"{type(exc).__name__}: {text}"


def test_common_args_repr_hides_the_secret_and_the_token(secrets_world):
    app, token = secrets_world["app"], secrets_world["token"]
    args = CommonArgs(bk_app_code=app.code, bk_app_secret=app.secret, bk_token=token, bk_username="admin")
    for text in (repr(args), str(args), f"{args!r}", repr([args]), repr({"args": args})):
        assert app.secret not in text and token not in text
    assert "esb_test" in repr(args)
