"""Notifications when a job ends, over real HTTP in the embedded mode (SQLite and PostgreSQL): a job's
webhook_url, or the default of the settings, gets a signed POST when the job ends, retried with backoff until a
2xx; every attempt shows in details_job; a receiver that fails, stalls or refuses never holds the job; hostile
URLs are refused; a user without rights on the job sees nothing of it."""

from __future__ import annotations

import itertools
import json
from datetime import datetime

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from nodeops.store.models import AccessPoint, Job, WebhookDelivery
from tests.support.jobs import ACTIVE, ESB_JOB, dead_port, local_host
from tests.support.subscriptions import BACKEND
from tests.support.webhook_receiver import DRIP, STALL, Receiver, verify

SECRET = "whsec-test-9f8e7d6c5b4a"
HOST1 = "host|instance|host|127.0.20.1-0-0"


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


@pytest.fixture
def settings(settings):
    """Short timeouts and backoff, so a retry is seconds away."""
    return settings.model_copy(
        update={
            "webhook_secret": SecretStr(SECRET),
            "webhook_timeout_s": 0.5,
            "webhook_backoff_s": 0.3,
            "webhook_poll_s": 0.1,
        }
    )


def _notified(status: str, count: int = 1):
    """details_job's condition: the job ended and its first ``count`` notifications are ``status``."""

    def check(data) -> bool:
        found = data["notifications"]
        return (
            data["status"] not in ACTIVE and len(found) >= count and all(n["status"] == status for n in found[:count])
        )

    return check


def test_a_receiver_answering_500_then_200_gets_the_signed_notification_twice(
    api, services, tmp_path, receiver, caplog
):
    receiver.answers = [500]
    started = api.ok(
        f"{ESB_JOB}/install/",
        {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1)], "webhook_url": receiver.url},
    )
    job_id = started["job_id"]
    data = api.wait(job_id, until=_notified("DELIVERED"))
    assert data["status"] == "SUCCESS", data

    first, second = receiver.wait(2)
    payloads = [verify(first, SECRET.encode()), verify(second, SECRET.encode())]
    assert payloads[0] == payloads[1]
    payload = payloads[0]
    assert payload["event"] == "job.ended" and payload["job_id"] == job_id
    assert payload["job_type"] == "INSTALL_AGENT" and payload["status"] == "SUCCESS"
    assert payload["statistics"] == data["statistics"]
    assert payload["job_url"] == f"{services.settings.agent_server_url}/#/task-list/{job_id}"
    assert payload["subscription_id"] == started["subscription_id"]
    assert payload["task_id"] == started["task_id_list"][0]
    assert datetime.fromisoformat(payload["ended_at"]).tzinfo is not None
    assert first.path == "/hooks/nodeops?team=ops"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-nodeops-event"] == "job.ended"
    assert first.headers["x-nodeops-delivery"] == second.headers["x-nodeops-delivery"] == str(payload["delivery_id"])
    assert second.at - first.at >= 0.3  # the backoff

    (notification,) = data["notifications"]
    assert notification["url"] == receiver.url and notification["status"] == "DELIVERED"
    assert notification["attempt_count"] == 2 and notification["delivered_time"]
    assert [a.get("http_status") for a in notification["attempts"]] == [500, 200]
    for attempt in notification["attempts"]:
        assert datetime.fromisoformat(attempt["at"]) and isinstance(attempt["duration_ms"], int)
        assert "error" not in attempt

    # nothing more is sent once delivered
    assert len(receiver.requests) == 2
    # the secret is nowhere but in the signature
    assert SECRET not in json.dumps(data) and SECRET not in caplog.text
    assert all(SECRET.encode() not in r.body for r in receiver.requests)
    with services.db.session() as session:
        (row,) = session.scalars(select(WebhookDelivery)).all()
        stored = json.dumps([row.url, row.payload, row.attempt_log, row.last_error, row.claim_token])
    assert SECRET not in stored and row.status == "DELIVERED" and row.last_http_status == 200

    # a user granted on the business sees the notifications; a stranger sees nothing of the job
    assert api.as_user("viewer").details(job_id)["notifications"] == data["notifications"]
    refused = api.as_user("outsider").error(f"/api/job/{job_id}/details/", {}, 9900403)
    assert receiver.url not in json.dumps(refused) and "notifications" not in json.dumps(refused)


def test_a_stalling_or_refusing_receiver_never_holds_the_job_and_is_retried_later(api, services, tmp_path, receiver):
    receiver.answers = [STALL] * 20
    refusing = f"http://127.0.0.1:{dead_port()}/hook"
    stalled = api.ok(
        f"{ESB_JOB}/install/",
        {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1)], "webhook_url": receiver.url},
    )["job_id"]
    refused = api.ok(
        f"{ESB_JOB}/install/",
        {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 2)], "webhook_url": refusing},
    )["job_id"]
    assert api.wait(stalled)["status"] == "SUCCESS"
    assert api.wait(refused)["status"] == "SUCCESS"

    # the stalled one: each attempt ends at the timeout, recorded, and another is due later
    data = api.wait(stalled, until=lambda d: d["notifications"] and d["notifications"][0]["attempt_count"] >= 2)
    (notification,) = data["notifications"]
    assert notification["status"] == "PENDING" and notification["next_attempt_time"]
    for attempt in notification["attempts"]:
        assert "http_status" not in attempt and attempt["error"] == "no answer within 1 s"
        assert attempt["duration_ms"] < 3000
    assert len(receiver.requests) >= 2

    # the refused one went on meanwhile (a stalled receiver holds one slot, not the others)
    data = api.wait(refused, until=lambda d: d["notifications"] and d["notifications"][0]["attempt_count"] >= 3)
    (notification,) = data["notifications"]
    assert notification["url"] == refusing
    assert all(a["error"] == "connection refused or host unreachable" for a in notification["attempts"])
    attempts = [datetime.fromisoformat(a["at"]) for a in notification["attempts"]]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6  # exponential backoff


class TestLastAttempt:
    @pytest.fixture
    def settings(self, settings):
        return settings.model_copy(update={"webhook_max_attempts": 2})

    def test_the_last_attempt_leaves_the_notification_failed(self, api, services, tmp_path, receiver):
        receiver.answers = [503, 503, 503]
        job_id = api.ok(
            f"{ESB_JOB}/install/",
            {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1)], "webhook_url": receiver.url},
        )["job_id"]
        data = api.wait(job_id, until=_notified("FAILED"))
        (notification,) = data["notifications"]
        assert [a["http_status"] for a in notification["attempts"]] == [503, 503]
        assert notification["next_attempt_time"] is None and len(receiver.requests) == 2


class TestDefaultUrl:
    @pytest.fixture
    def settings(self, settings, receiver):
        return settings.model_copy(update={"webhook_url": receiver.url})

    def test_a_job_without_webhook_url_notifies_the_default_of_the_settings(self, api, services, tmp_path, receiver):
        job_id = api.ok(f"{ESB_JOB}/install/", {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1)]})[
            "job_id"
        ]
        data = api.wait(job_id, until=_notified("DELIVERED"))
        assert data["notifications"][0]["url"] == receiver.url
        (received,) = receiver.wait(1)
        assert verify(received, SECRET.encode())["job_id"] == job_id

        # a job's own URL wins over the default
        other = Receiver()
        try:
            upgraded = api.ok(
                "/api/job/operate/",
                {"job_type": "RESTART_AGENT", "bk_host_id": [data["list"][0]["bk_host_id"]], "webhook_url": other.url},
            )["job_id"]
            api.wait(upgraded, until=_notified("DELIVERED"))
            (received,) = other.wait(1)
            assert verify(received, SECRET.encode())["job_type"] == "RESTART_AGENT"
            assert len(receiver.requests) == 1
        finally:
            other.close()


def test_a_failed_job_retried_notifies_each_end_and_a_revoke_says_terminated(
    api, services, tmp_path, receiver, silent_ap_url
):
    broken = local_host(tmp_path, 2, setup_path="/proc/nodeops-x/agent")  # nothing can be created there
    started = api.ok("/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": [broken], "webhook_url": receiver.url})
    job_id = started["job_id"]
    api.wait(job_id, until=_notified("DELIVERED"))
    retried = api.ok(f"/api/job/{job_id}/retry/", {})
    data = api.wait(job_id, until=_notified("DELIVERED", 2))
    assert [n["task_id"] for n in data["notifications"]] == retried["task_id_list"]
    payloads = [verify(r, SECRET.encode()) for r in receiver.wait(2)]
    assert [(p["status"], p["task_id"]) for p in payloads] == [("FAILED", t) for t in retried["task_id_list"]]
    assert payloads[0]["delivery_id"] != payloads[1]["delivery_id"]

    # revoked while its host waits for a heartbeat: one notification, TERMINATED
    with services.db.session() as session:
        session.add(AccessPoint(id=2, name="silent", server_url=silent_ap_url))
    waiting = api.ok(
        "/api/job/install/",
        {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1, ap_id=2)], "webhook_url": receiver.url},
    )["job_id"]
    api.wait_step(waiting, HOST1, "查询Agent状态", "RUNNING")
    api.ok(f"/api/job/{waiting}/revoke/", {})
    data = api.wait(waiting, until=_notified("DELIVERED"))
    assert data["status"] == "TERMINATED" and len(data["notifications"]) == 1
    received = receiver.wait(3)[2]
    payload = verify(received, SECRET.encode())
    assert payload["job_id"] == waiting and payload["status"] == "TERMINATED"
    assert payload["statistics"]["failed_count"] == 1 and payload["statistics"]["running_count"] == 0


HOSTILE = [
    ("file:///etc/passwd", "scheme is file"),
    ("javascript:alert(1)", "scheme is javascript"),
    ("ftp://127.0.0.1/hook", "scheme is ftp"),
    ("http://" + "a" * 3000 + ".example/", "got 3016 characters"),
    ("http://例え.テスト/hook", "non-ASCII"),
    ("http://127.0.0.1/hook?q=ü", "non-ASCII"),
    ("http://alice:s3cr3tpw@127.0.0.1:9/hook", "user:password"),
    ("http://:s3cr3tpw@127.0.0.1/hook", "user:password"),
    ("http:///no-host", "no host"),
    ("http://127.0.0.1:99999/hook", "host or port"),
    ("http://127.0.0.1/a b", "spaces"),
    ("http://127.0.0.1/\r\nX-Injected: 1", "control"),
    (12345, "got a int"),
    (["http://127.0.0.1/"], "got a list"),
]


@pytest.mark.parametrize(("url", "why"), HOSTILE)
def test_hostile_webhook_urls_are_refused_naming_the_field(api, services, tmp_path, url, why):
    requests = [
        (f"{ESB_JOB}/install/", {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1)]}),
        ("/api/job/operate/", {"job_type": "RESTART_AGENT", "bk_host_id": [1]}),
        (
            "/backend/api/subscription/create/",
            {
                "scope": {"object_type": "HOST", "node_type": "INSTANCE", "nodes": [{"bk_host_id": 1}]},
                "steps": [{"id": "agent", "type": "AGENT", "config": {"job_type": "INSTALL_AGENT"}}],
            },
        ),
    ]
    for path, body in requests:
        answer = api.error(path, {**body, "webhook_url": url}, 3800001)
        assert answer["message"].startswith("webhook_url: must be an http:// or https:// URL"), answer
        assert why in answer["message"], answer
        assert "s3cr3tpw" not in json.dumps(answer) and "a" * 100 not in answer["message"]
    with services.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_a_subscription_s_webhook_notifies_each_run_and_update_replaces_or_stops_it(api, services, tmp_path, receiver):
    installed = api.ok(f"{ESB_JOB}/install/", {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1)]})
    host_id = api.wait(installed["job_id"])["list"][0]["bk_host_id"]
    created = api.ok(
        f"{BACKEND}/create/",
        {
            "scope": {"object_type": "HOST", "node_type": "INSTANCE", "nodes": [{"bk_host_id": host_id}]},
            "steps": [{"id": "agent", "type": "AGENT", "config": {"job_type": "RESTART_AGENT"}}],
            "webhook_url": receiver.url,
            "run_immediately": True,
        },
    )
    subscription_id, job_id = created["subscription_id"], created["job_id"]
    api.wait(job_id, until=_notified("DELIVERED"))
    (received,) = receiver.wait(1)
    payload = verify(received, SECRET.encode())
    assert (payload["subscription_id"], payload["job_id"], payload["task_id"]) == (
        subscription_id,
        job_id,
        created["task_id"],
    )
    (info,) = api.ok(f"{BACKEND}/info/", {"subscription_id_list": [subscription_id]})
    assert info["webhook_url"] == receiver.url

    # another run of the subscription is another end of its job: notified again
    again = api.ok(f"{BACKEND}/run/", {"subscription_id": subscription_id})
    api.wait(job_id, until=_notified("DELIVERED", 2))
    assert verify(receiver.wait(2)[1], SECRET.encode())["task_id"] == again["task_id"]

    # a bad URL in an update changes nothing; '' stops the notifications
    api.error(
        f"{BACKEND}/update/", {"subscription_id": subscription_id, "scope": info["scope"], "webhook_url": "x"}, 3800001
    )
    api.ok(f"{BACKEND}/update/", {"subscription_id": subscription_id, "scope": info["scope"], "webhook_url": ""})
    (info,) = api.ok(f"{BACKEND}/info/", {"subscription_id_list": [subscription_id]})
    assert info["webhook_url"] is None
    third = api.ok(f"{BACKEND}/run/", {"subscription_id": subscription_id})
    data = api.wait(job_id, until=lambda d: d["status"] not in ACTIVE and third["task_id"] in d["task_id_list"])
    assert len(data["notifications"]) == 2 and len(receiver.requests) == 2

    # a stranger cannot read the subscription, so not its webhook either
    refused = api.as_user("outsider").error(f"{BACKEND}/info/", {"subscription_id_list": [subscription_id]}, 9900403)
    assert receiver.url not in json.dumps(refused)


def test_a_receiver_dripping_its_answer_is_delivered_by_its_status_within_the_bound(api, services, tmp_path, receiver):
    receiver.answers = [DRIP]
    job_id = api.ok(
        f"{ESB_JOB}/install/",
        {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1)], "webhook_url": receiver.url},
    )["job_id"]
    data = api.wait(job_id, until=_notified("DELIVERED"))
    (attempt,) = data["notifications"][0]["attempts"]
    assert attempt["http_status"] == 200 and 900 <= attempt["duration_ms"] < 3000  # cut at twice the timeout
    assert len(receiver.requests) == 1
