"""Taking access back on a running server: each change, made by the ``nodeops`` command in another process on the
same database, is refused from the next request on, through the log lane (SQLite) and through ASGI, without a
restart; signing out ends a session for good; failed authentications are throttled and audited.

Every test runs on SQLite and PostgreSQL (``live_server``). Each request first warms the server's memo of
successful authentications, so a refusal proves the memo was dropped, not merely missed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from nodeops.api.fastpath.lane import LaneProtocol
from nodeops.service.audit import AUDIT_LOGGER
from tests.support.api import ADDRESSES, assert_error, credentials, log_data, request_log
from tests.support.factories import make_app, make_seed_job, make_user
from tests.support.live_server import LiveServer
from tests.support.services import TEST_SECRET_KEY

BLOCK_S = 3.0  # short, so a test sees a block end; the default is 60 s


@pytest.fixture
def settings(settings):
    """The suite's settings, with a block short enough to wait out (the threshold keeps its default, 10)."""
    return settings.model_copy(update={"auth_block_s": BLOCK_S})


class Nodeops:
    """The ``nodeops`` command in a subprocess, on the live server's database and secret key."""

    def __init__(self, settings) -> None:
        found = shutil.which("nodeops") or str(Path(sys.executable).parent / "nodeops")
        self.executable = found
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NODEOPS_")}
        self.env.update(
            NODEOPS_DATA_DIR=str(settings.data_dir),
            NODEOPS_DATABASE_URL=settings.database_url,
            NODEOPS_SECRET_KEY=TEST_SECRET_KEY,
        )

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.executable, *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"nodeops {' '.join(args)}: {done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        return done


@pytest.fixture
def nodeops(settings) -> Nodeops:
    return Nodeops(settings)


def audit_lines(text: str) -> list[dict[str, Any]]:
    """The audit lines in a process's stderr (``... nodeops.audit: {json}``)."""
    marker = f"{AUDIT_LOGGER}: "
    return [json.loads(line.split(marker, 1)[1]) for line in text.splitlines() if marker in line]


def lane_requests(live_server) -> int:
    protocol = live_server.app.http_protocol
    lane = protocol.lane if isinstance(protocol, type) and issubclass(protocol, LaneProtocol) else None
    return -1 if lane is None else lane.requests


def each_address(client, auth, *, job_id=1) -> list[httpx.Response]:
    return [request_log(client, address, job_id=job_id, instance_id=1, auth=auth) for address in ADDRESSES]


def test_app_disable_rotate_and_enable_hold_from_the_next_request(client, live_server, services, nodeops):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    make_seed_job(services)
    auth = credentials(app, bk_username="admin")
    lane_before = lane_requests(live_server)
    for response in each_address(client, auth):
        assert len(log_data(response)) == 5

    done = nodeops("app", "disable", app.code)
    assert "is now disabled" in " ".join(done.stdout.split())
    [line] = audit_lines(done.stderr)
    assert line["event"] == "app_disabled" and line["app"] == app.code and line["actor"].startswith("os:")
    for response in each_address(client, auth):
        assert_error(response, 1306403, contains=("disabled", "nodeops app enable"))
    job_details = client.post("/api/job/1/details/", json=auth)
    assert_error(job_details, 1306403, contains=("disabled",))

    nodeops("app", "enable", app.code)
    for response in each_address(client, auth):
        assert len(log_data(response)) == 5

    rotated = nodeops("app", "rotate", app.code)
    new_secret = rotated.stdout.strip().splitlines()[-1]
    assert new_secret != app.secret and new_secret not in rotated.stderr and app.secret not in rotated.stderr
    assert [line["event"] for line in audit_lines(rotated.stderr)] == ["app_secret_rotated"]
    for response in each_address(client, auth):
        assert_error(response, 1306403, contains=(app.code,))
    for response in each_address(client, {**auth, "bk_app_secret": new_secret}):
        assert len(log_data(response)) == 5
    if services.db.reads_inline:  # SQLite: the GETs went through the lane, refusals included
        assert lane_requests(live_server) - lane_before >= 3 * 4


def test_user_revoke_and_disable_hold_from_the_next_request(client, services, nodeops, token_for):
    app = make_app(services)
    make_user(services, "alice", biz=[2, 3])
    make_seed_job(services)  # business 2
    by_name = credentials(app, bk_username="alice")
    by_token = credentials(app, bk_token=token_for("alice"))
    for auth in (by_name, by_token):
        assert len(log_data(request_log(client, "esb_get", job_id=1, instance_id=1, auth=auth))) == 5

    done = nodeops("user", "revoke", "alice", "--biz", "2", "--biz", "7")
    assert "(had no grant on 7)" in " ".join(done.stdout.split())
    [line] = audit_lines(done.stderr)
    assert (line["event"], line["user"], line["bk_biz_ids"]) == ("grant_revoked", "alice", [2])
    for auth in (by_name, by_token):
        for response in each_address(client, auth):
            assert_error(response, 9900403)

    nodeops("user", "grant", "alice", "--biz", "2")
    assert len(log_data(request_log(client, "nodeman", job_id=1, instance_id=1, auth=by_token))) == 5
    nodeops("user", "disable", "alice")
    for auth in (by_name, by_token):
        for response in each_address(client, auth):
            assert_error(response, 1306000, contains=("'alice' is disabled",))
    assert_error(client.post("/web/session/", json={"bk_token": by_token["bk_token"]}), 1306000, contains=("disabled",))
    nodeops("user", "enable", "alice")
    assert len(log_data(request_log(client, "apigw", job_id=1, instance_id=1, auth=by_name))) == 5


def signed_in(live_server, token: str) -> httpx.Client:
    """A client that signed in with ``token`` and holds only the session cookie it was given."""
    with httpx.Client(base_url=live_server.url, timeout=10) as plain:
        response = plain.post("/web/session/", json={"bk_token": token})
    assert response.json()["result"] is True, response.text
    web = httpx.Client(base_url=live_server.url, timeout=10, headers={"X-Nodeops-Web": "1"})
    web.cookies.set("nodeops_session", response.cookies["nodeops_session"])
    return web


def test_token_revoke_refuses_the_token_and_the_sessions_opened_with_it(
    client, live_server, services, nodeops, token_for
):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    make_seed_job(services)
    token = token_for("admin")
    auth = credentials(app, bk_token=token)
    assert len(log_data(request_log(client, "esb_get", job_id=1, instance_id=1, auth=auth))) == 5
    with signed_in(live_server, token) as web:
        assert len(log_data(web.get("/api/job/1/log/", params={"instance_id": 1}))) == 5

        done = nodeops("token", "revoke", "-", stdin=token + "\n")
        assert token not in done.stdout + done.stderr
        [line] = audit_lines(done.stderr)
        assert line["event"] == "token_revoked" and line["user"] == "admin" and len(line["token"]) == 12

        for response in each_address(client, auth):
            assert_error(response, 1306000, contains=("revoked",))
        assert_error(web.get("/api/job/1/log/", params={"instance_id": 1}), 1306000, contains=("session has ended",))
        assert_error(web.post("/api/job/1/details/", json={}), 1306000, contains=("session has ended",))
    assert_error(client.post("/web/session/", json={"bk_token": token}), 1306000, contains=("revoked",))
    # another token of the same user is untouched
    fresh = credentials(app, bk_token=token_for("admin", ttl_s=7200))
    assert len(log_data(request_log(client, "nodeman", job_id=1, instance_id=1, auth=fresh))) == 5


def test_signing_out_ends_the_session_for_good_on_every_process(live_server, services, token_for, caplog):
    """Two servers on one database: the session ends on both, though both had it in their memo."""
    make_user(services, "admin", superuser=True)
    make_seed_job(services)
    token = token_for("admin")
    other = LiveServer(type(services).build(services.settings))
    other.start()
    try:
        with signed_in(live_server, token) as web:
            cookie = web.cookies["nodeops_session"]
            with httpx.Client(base_url=other.url, timeout=10) as elsewhere:
                elsewhere.cookies.set("nodeops_session", cookie)
                for server in (web, elsewhere):
                    assert len(log_data(server.get("/api/job/1/log/", params={"instance_id": 1}))) == 5
                signed_out = web.delete("/web/session/")
                assert signed_out.json()["result"] is True
                assert "Max-Age=0" in signed_out.headers["set-cookie"]  # the cookie is cleared, and a copy of it
                for server in (web, elsewhere):  # is refused everywhere
                    for path in ("/api/job/1/log/", "/api/job/1/log/tail/"):
                        refused = server.get(path, params={"instance_id": 1})
                        assert_error(refused, 1306000, contains=("session has ended", "sign in again"))
                assert_error(elsewhere.post("/api/job/job_list/", json={}, headers={"X-Nodeops-Web": "1"}), 1306000)
        # the bk_token it was opened with still signs in, as a new session
        with signed_in(live_server, token) as again:
            assert len(log_data(again.get("/api/job/1/log/", params={"instance_id": 1}))) == 5
    finally:
        other.stop()
        other.services.close()
    events = [json.loads(r.getMessage())["event"] for r in caplog.records if r.name == AUDIT_LOGGER]
    assert events.count("session_opened") == 2 and events.count("session_closed") == 1


def test_sign_in_takes_only_a_json_body(client, services, token_for):
    make_user(services, "admin", superuser=True)
    token = token_for("admin")
    as_form = client.post("/web/session/", data={"bk_token": token})
    assert_error(as_form, 3800001, contains=("Content-Type", "application/json", "application/x-www-form-urlencoded"))
    # what a cross-site form can send as text/plain: a body that happens to be JSON
    as_text = client.post(
        "/web/session/", content=json.dumps({"bk_token": token}), headers={"Content-Type": "text/plain"}
    )
    assert_error(as_text, 3800001, contains=("Content-Type",))
    in_query = client.post("/web/session/", params={"bk_token": token})
    assert_error(in_query, 3800001, contains=("Content-Type", "none"))
    for refused in (as_form, as_text, in_query):
        assert "set-cookie" not in refused.headers and token not in refused.text
    signed = client.post(
        "/web/session/", json={"bk_token": token}, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert signed.json()["result"] is True and "nodeops_session" in signed.cookies


def test_failures_past_the_threshold_are_refused_for_a_while_and_audited(client, services, caplog):
    app = make_app(services)
    other = make_app(services, "esb_other")
    make_user(services, "admin", superuser=True)
    make_seed_job(services)
    good = credentials(app, bk_username="admin")
    wrong = {**good, "bk_app_secret": "wrong-secret-0123456789-guess"}
    assert len(log_data(request_log(client, "esb_get", job_id=1, instance_id=1, auth=good))) == 5
    caplog.clear()

    threshold = services.settings.auth_max_failures
    for _ in range(threshold):
        assert_error(request_log(client, "esb_get", job_id=1, instance_id=1, auth=wrong), 1306403)
    for address in ADDRESSES:  # now even the right secret is refused, through the lane and ASGI alike
        body = assert_error(request_log(client, address, job_id=1, instance_id=1, auth=good), 1306429)
        assert "esb_test" in body["message"] and "127.0.0.1" in body["message"]
        assert "refused until" in body["message"] and "retry in" in body["message"]
    assert_error(client.post("/api/job/1/details/", json=good), 1306429, contains=("retry in",))
    # another app from the same address is not blocked
    assert (
        len(
            log_data(
                request_log(client, "nodeman", job_id=1, instance_id=1, auth=credentials(other, bk_username="admin"))
            )
        )
        == 5
    )

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == AUDIT_LOGGER]
    failed = [line for line in lines if line["event"] == "auth_failed"]
    assert [line["failures"] for line in failed] == list(range(1, threshold + 1))
    assert "blocked_until" in failed[-1] and "blocked_until" not in failed[-2]
    for line in failed:
        assert (line["actor"], line["source"], line["app"], line["code"]) == (
            "app:esb_test",
            "127.0.0.1",
            "esb_test",
            1306403,
        )
        assert line["user"] == "admin" and line["at"].endswith("+00:00")
    throttled = [line for line in lines if line["event"] == "auth_throttled"]
    assert len(throttled) == len(ADDRESSES) + 1 and all(line["code"] == 1306429 for line in throttled)
    text = caplog.text
    assert wrong["bk_app_secret"] not in text and app.secret not in text and other.secret not in text

    deadline = time.monotonic() + BLOCK_S + 30
    while True:  # the block ends by itself
        response = request_log(client, "esb_get", job_id=1, instance_id=1, auth=good)
        if response.json()["code"] != 1306429 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(log_data(response)) == 5
