"""Who may read a job's log (spec §10): superusers, and users granted EVERY business of the job's bk_biz_scope;
with the identity checks in front of it, and access changes seen by the very next request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from nodeops.domain.status import Status
from nodeops.service import admin as admin_service
from nodeops.service.auth import CommonArgs
from nodeops.store import access
from tests.support.api import ADDRESSES, assert_error, credentials, log_data, request_log
from tests.support.factories import StepRun, make_app, make_job, make_user

SCOPE = (2, 3)


@pytest.fixture
def world(services, esb_app):
    """A job on businesses 2 and 3, an app that may pass bk_username, one that may not, and four users."""
    job = make_job(
        services,
        runs=[StepRun(status=Status.SUCCESS, start="2024-05-01 10:00:00", finish="2024-05-01 10:00:01", log="ok")],
        bk_biz_scope=SCOPE,
    )
    strict = make_app(services, "strict_app", allow_username=False)
    make_user(services, "root", superuser=True)
    make_user(services, "both", biz=[2, 3])
    make_user(services, "half", biz=[2])
    make_user(services, "other", biz=[1, 4])
    return {"job": job, "esb": esb_app, "strict": strict}


def _auth(world, token_for, case: str) -> dict[str, str]:
    esb, strict = world["esb"], world["strict"]
    past = datetime.now(UTC) - timedelta(days=2)
    return {
        "superuser": credentials(esb, bk_username="root"),
        "granted on every business": credentials(esb, bk_username="both"),
        "granted on only one business": credentials(esb, bk_username="half"),
        "granted on other businesses": credentials(esb, bk_username="other"),
        "stranger (unknown user)": credentials(esb, bk_username="stranger"),
        "bad app secret": {**credentials(esb, bk_username="root"), "bk_app_secret": "definitely-not-it"},
        "expired token": credentials(esb, bk_token=token_for("root", ttl_s=3600, now=past)),
        "valid token, granted": credentials(esb, bk_token=token_for("both")),
        "valid token, superuser": credentials(esb, bk_token=token_for("root")),
        "valid token, half granted": credentials(esb, bk_token=token_for("half")),
        "valid token via a strict app": credentials(strict, bk_token=token_for("both")),
        "bk_username from an app without allow_username": credentials(strict, bk_username="root"),
    }[case]


MATRIX = [
    ("superuser", 0),
    ("granted on every business", 0),
    ("granted on only one business", 9900403),
    ("granted on other businesses", 9900403),
    ("stranger (unknown user)", 9900403),
    ("bad app secret", 1306403),
    ("expired token", 1306000),
    ("valid token, granted", 0),
    ("valid token, superuser", 0),
    ("valid token, half granted", 9900403),
    ("valid token via a strict app", 0),  # apps without allow_username may still pass a verified bk_token
    ("bk_username from an app without allow_username", 1306000),
]


@pytest.mark.parametrize(("case", "expected"), MATRIX, ids=[case for case, _ in MATRIX])
def test_access_matrix(client, world, token_for, subtests, case, expected):
    auth = _auth(world, token_for, case)
    job = world["job"]
    for address in ADDRESSES:
        for via_header in (False, True):
            with subtests.test(address=address, via_header=via_header):
                response = request_log(
                    client, address, job_id=job.job_id, instance_id=job.instance_id, auth=auth, via_header=via_header
                )
                if expected == 0:
                    assert log_data(response)[0]["log"] == "ok"
                else:
                    assert_error(
                        response,
                        expected,
                        data=(
                            {
                                "permission": {"action": "task_history_view", "bk_biz_ids": _missing(case)},
                                "apply_url": "",
                            }
                            if expected == 9900403
                            else None
                        ),
                    )


def _missing(case: str) -> list[int]:
    return [3] if "half" in case or "only one" in case else [2, 3]


def test_denial_names_only_the_businesses_missing(client, world):
    auth = credentials(world["esb"], bk_username="half")
    assert_error(
        request_log(client, "nodeman", job_id=world["job"].job_id, instance_id=1, auth=auth),
        9900403,
        f"user 'half' has no [task_history_view] permission on business 3 of job {world['job'].job_id}; ask an "
        "administrator for `nodeops user grant half --biz <id>`",
        data={"permission": {"action": "task_history_view", "bk_biz_ids": [3]}, "apply_url": ""},
    )


def test_a_grant_made_after_a_denial_takes_effect_on_the_very_next_request(client, services, world):
    job_id = world["job"].job_id
    auth = credentials(world["esb"], bk_username="half")
    assert_error(request_log(client, "esb_get", job_id=job_id, instance_id=1, auth=auth), 9900403)
    assert_error(request_log(client, "esb_get", job_id=job_id, instance_id=1, auth=auth), 9900403)  # now cached
    admin_service.grant(services.db, username="half", bk_biz_ids=[3])
    assert log_data(request_log(client, "esb_get", job_id=job_id, instance_id=1, auth=auth))


def test_a_stranger_registered_and_granted_later_passes_on_the_next_request(client, services, world):
    job_id = world["job"].job_id
    auth = credentials(world["esb"], bk_username="newcomer")
    assert_error(request_log(client, "nodeman", job_id=job_id, instance_id=1, auth=auth), 9900403)
    make_user(services, "newcomer", biz=list(SCOPE))
    assert log_data(request_log(client, "nodeman", job_id=job_id, instance_id=1, auth=auth))


def test_a_user_made_superuser_later_passes_on_the_next_request(client, services, world, token_for):
    job_id = world["job"].job_id
    by_name = credentials(world["esb"], bk_username="other")
    by_token = credentials(world["esb"], bk_token=token_for("other"))
    for auth in (by_name, by_token):
        assert_error(request_log(client, "apigw", job_id=job_id, instance_id=1, auth=auth), 9900403)
    admin_service.add_user(services.db, username="other", is_superuser=True)
    for auth in (by_name, by_token):
        assert log_data(request_log(client, "apigw", job_id=job_id, instance_id=1, auth=auth))


def test_a_revoked_grant_takes_effect_on_the_very_next_request(client, services, world):
    job_id = world["job"].job_id
    auth = credentials(world["esb"], bk_username="both")
    assert log_data(request_log(client, "esb_post", job_id=job_id, instance_id=1, auth=auth))
    assert log_data(request_log(client, "esb_post", job_id=job_id, instance_id=1, auth=auth))  # now cached
    with services.db.session() as session:
        access.revoke_biz(session, username="both", bk_biz_ids=[3])
    assert_error(request_log(client, "esb_post", job_id=job_id, instance_id=1, auth=auth), 9900403)


def test_a_superuser_demoted_later_is_denied_on_the_next_request(client, services, world):
    job_id = world["job"].job_id
    auth = credentials(world["esb"], bk_username="root")
    assert log_data(request_log(client, "esb_get", job_id=job_id, instance_id=1, auth=auth))
    admin_service.add_user(services.db, username="root", is_superuser=False)
    assert_error(request_log(client, "esb_get", job_id=job_id, instance_id=1, auth=auth), 9900403)


def test_an_app_registered_after_a_refusal_is_accepted_on_the_next_request(client, services, world):
    job_id = world["job"].job_id
    auth = {"bk_app_code": "late_app", "bk_app_secret": "s" * 32, "bk_username": "root"}
    assert_error(request_log(client, "esb_get", job_id=job_id, instance_id=1, auth=auth), 1306403)
    admin_service.add_app(services.db, code="late_app", secret="s" * 32, allow_username=True)
    assert log_data(request_log(client, "esb_get", job_id=job_id, instance_id=1, auth=auth))


def test_a_cached_token_stops_working_once_it_expires(client, world, token_for):
    # issued 8 s ago for 10 s: it expires within the next 2 s, after the first request has cached the caller
    now = datetime.now(UTC)
    token = token_for("root", ttl_s=10, now=now - timedelta(seconds=8))
    expires_at = int((now - timedelta(seconds=8)).timestamp()) + 10
    auth = credentials(world["esb"], bk_token=token)
    job_id = world["job"].job_id
    assert log_data(request_log(client, "esb_get", job_id=job_id, instance_id=1, auth=auth))
    time.sleep(max(0.0, expires_at - time.time()) + 0.05)
    assert_error(
        request_log(client, "esb_get", job_id=job_id, instance_id=1, auth=auth),
        1306000,
        contains=("bk_token expired at",),
    )


@pytest.fixture
def parking() -> Iterator[threading.Event]:
    """An event set at teardown. Listed before ``services``, it is torn down after it: a helper thread parked
    on it keeps its per-thread connection referenced until ``Database.dispose`` has closed it (a connection
    dropped with its thread would be closed by the garbage collector, and warn)."""
    event = threading.Event()
    yield event
    event.set()


def test_a_revocation_is_not_undone_by_a_slower_concurrent_authentication(
    parking, services, esb_app, monkeypatch, request
):
    """Service level (the interleaving cannot be forced over HTTP): request A reads the user's grants, a
    revocation commits (new access epoch), request B sees the new epoch and the revoked grants, then A finishes
    and caches what it read. The next request must not be answered from A's pre-revocation read."""
    make_user(services, "racer", biz=[2])
    auth = services.auth
    args = CommonArgs(bk_app_code=esb_app.code, bk_app_secret=esb_app.secret, bk_username="racer")
    real_fetch_user = auth.reads.fetch_user
    fetched, release = threading.Event(), threading.Event()

    def slow_fetch_user(cur, username):
        row = real_fetch_user(cur, username)
        if threading.current_thread().name == "slow-request":
            fetched.set()
            release.wait(10)
        return row

    monkeypatch.setattr(auth.reads, "fetch_user", slow_fetch_user)
    answers: dict[str, object] = {}

    done = threading.Event()

    def slow_request() -> None:
        try:
            with services.db.cursor() as cur:
                answers["slow"] = auth.authenticate(cur, args)
        finally:
            done.set()
            parking.wait(30)

    threading.Thread(target=slow_request, name="slow-request", daemon=True).start()
    try:
        assert fetched.wait(10)
        with services.db.session() as session:
            access.revoke_biz(session, username="racer", bk_biz_ids=[2])
        with services.db.cursor() as cur:
            assert auth.authenticate(cur, args).biz_ids == frozenset()
    finally:
        release.set()
        assert done.wait(10)
    assert answers["slow"].biz_ids == frozenset({2})  # A's own answer predates the revocation: fine
    with services.db.cursor() as cur:
        assert auth.authenticate(cur, args).biz_ids == frozenset(), "a revoked grant came back from the cache"
