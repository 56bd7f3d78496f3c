"""The web session cookie on every API (GET; POST only with X-Nodeops-Web: 1), and job_list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from nodeops.domain.status import Status
from nodeops.service.security import verify_token
from nodeops.store import jobs
from tests.support.factories import StepRun, make_job, make_seed_job, make_user
from tests.support.logs import error, ok

ESB_JOB_LIST = "/api/c/compapi/v2/nodeman/api/job/job_list/"


def signed_in(live_server, client, token: str) -> httpx.Client:
    """A client holding the session cookie the sign-in set (and nothing else)."""
    response = client.post("/web/session/", json={"bk_token": token})
    ok(response)
    web = httpx.Client(base_url=live_server.url, timeout=30)
    web.cookies.set("nodeops_session", response.cookies["nodeops_session"])
    return web


def test_sign_in_sets_an_httponly_samesite_strict_cookie_and_sign_out_clears_it(client, services, admin, token_for):
    token = token_for(admin)
    response = client.post("/web/session/", json={"bk_token": token})
    data = ok(response)
    assert data["username"] == "admin" and data["expires_at"] > 0
    cookie = response.headers["set-cookie"]
    # a session token of its own: the same user and expiry, never the bk_token itself (signing out ends it alone)
    session_token = response.cookies["nodeops_session"]
    assert session_token != token and cookie.startswith(f"nodeops_session={session_token};")
    claims = verify_token(services.settings.resolved_secret_key(), session_token)
    assert claims.username == "admin" and claims.expires_at == data["expires_at"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    cleared = client.delete("/web/session/")
    ok(cleared)
    assert 'nodeops_session=""' in cleared.headers["set-cookie"] or "Max-Age=0" in cleared.headers["set-cookie"]


def test_the_cookie_acts_as_its_user_on_get_everywhere(live_server, client, services, admin, token_for):
    job = make_seed_job(services)
    with signed_in(live_server, client, token_for(admin)) as web:
        assert len(ok(web.get(f"/api/job/{job.job_id}/log/", params={"instance_id": 1}))) == 5
        esb = web.get("/api/c/compapi/v2/nodeman/api/job/log/", params={"job_id": 1, "instance_id": 1})
        assert len(ok(esb)) == 5
        assert ok(web.get(f"/api/job/{job.job_id}/log/tail/", params={"instance_id": 1}))["finished"] is True
        assert ok(web.get(f"/api/job/{job.job_id}/log/search/", params={"q": "升级"}))["total"] == 2


def test_a_post_with_the_cookie_needs_the_web_header(live_server, client, services, admin, token_for):
    job = make_seed_job(services)
    with signed_in(live_server, client, token_for(admin)) as web:
        refused = web.post(f"/api/job/{job.job_id}/details/", json={})
        error(refused, 1306000, "X-Nodeops-Web: 1")
        error(web.post("/api/job/job_list/", json={}), 1306000, "X-Nodeops-Web")
        error(web.post("/api/c/compapi/v2/nodeman/api/job/log/", json={"job_id": 1, "instance_id": 1}), 1306000)
        allowed = web.post(f"/api/job/{job.job_id}/details/", json={}, headers={"X-Nodeops-Web": "1"})
        assert ok(allowed)["job_id"] == job.job_id
        listed = ok(web.post("/api/job/job_list/", json={}, headers={"X-Nodeops-Web": "1"}))
        assert listed["total"] == 1


def test_an_expired_or_forged_session_is_refused(live_server, client, services, admin, token_for):
    make_seed_job(services)
    expired = token_for(admin, ttl_s=60, now=datetime.now(UTC) - timedelta(hours=1))
    error(client.post("/web/session/", json={"bk_token": expired}), 1306000, "expired")
    error(client.post("/web/session/", json={}), 3800001, "bk_token")
    with httpx.Client(base_url=live_server.url, timeout=30) as web:
        web.cookies.set("nodeops_session", expired)
        error(web.get("/api/job/1/log/", params={"instance_id": 1}), 1306000, "expired")
        web.cookies.set("nodeops_session", "v1.forged.token")
        error(web.get("/api/job/1/log/tail/", params={"instance_id": 1}), 1306000)


def test_common_args_win_over_the_cookie(live_server, client, services, esb_app, admin, token_for):
    make_seed_job(services)
    make_user(services, "nobody")
    with signed_in(live_server, client, token_for("nobody")) as web:
        error(web.get("/api/job/1/log/", params={"instance_id": 1}), 9900403)
        common = {"bk_app_code": esb_app.code, "bk_app_secret": esb_app.secret, "bk_username": admin}
        assert len(ok(web.get("/api/job/1/log/", params={"instance_id": 1, **common}))) == 5


def test_job_list_filters_sorts_pages_and_hides_other_businesses(client, services, auth, esb_app, token_for):
    first = make_seed_job(services)
    running = make_job(
        services,
        runs=[StepRun(status=Status.RUNNING, start="2021-09-16 15:06:04")],
        record_status=Status.RUNNING,
        bk_host_id=2,
        ip="127.0.0.2",
        bk_biz_scope=(3,),
    )
    with services.db.session() as session:
        jobs.set_job_status(session, job_id=first.job_id, status=Status.SUCCESS)
        jobs.set_job_status(session, job_id=running.job_id, status=Status.RUNNING)
    everything = ok(client.post("/api/job/job_list/", json=auth))
    assert everything["total"] == 2
    assert [row["id"] for row in everything["list"]] == [running.job_id, first.job_id]
    row = everything["list"][1]
    assert set(row) == {
        "id",
        "job_type",
        "job_type_display",
        "status",
        "statistics",
        "created_by",
        "bk_biz_scope",
        "start_time",
        "end_time",
        "cost_time",
    }
    assert row["job_type"] == "UPGRADE_AGENT" and row["job_type_display"] == "升级 Agent"
    assert row["bk_biz_scope"] == [2] and isinstance(row["cost_time"], str)
    ascending = ok(client.post(ESB_JOB_LIST, json={**auth, "sort": {"head": "id", "sort_type": "ASC"}}))
    assert [r["id"] for r in ascending["list"]] == [first.job_id, running.job_id]
    paged = ok(client.post("/api/job/job_list/", json={**auth, "page": 2, "pagesize": 1}))
    assert paged["total"] == 2 and [r["id"] for r in paged["list"]] == [first.job_id]
    assert ok(client.post("/api/job/job_list/", json={**auth, "status": ["RUNNING"]}))["total"] == 1
    assert ok(client.post("/api/job/job_list/", json={**auth, "bk_biz_id": [3]}))["list"][0]["id"] == running.job_id
    assert ok(client.post("/api/job/job_list/", json={**auth, "inner_ip_list": ["127.0.0.2"]}))["total"] == 1
    assert ok(client.post("/api/job/job_list/", json={**auth, "job_id": [first.job_id]}))["total"] == 1
    make_user(services, "biz2", biz=[2])
    mine = {"bk_app_code": esb_app.code, "bk_app_secret": esb_app.secret, "bk_username": "biz2"}
    visible = ok(client.post("/api/job/job_list/", json=mine))
    assert [r["id"] for r in visible["list"]] == [first.job_id]


def test_job_list_validation_names_each_bad_field(client, services, auth):
    body = error(
        client.post(
            "/api/job/job_list/",
            json={
                **auth,
                "page": 0,
                "pagesize": 5000,
                "status": ["DONE"],
                "job_type": ["X"],
                "start_time": "today",
                "sort": {"head": "ip", "sort_type": "UP"},
            },
        ),
        3800001,
        "page",
        "pagesize",
        "status",
        "job_type",
        "start_time",
        "sort.head",
        "sort.sort_type",
    )
    assert body["data"] is None
    error(client.post("/api/job/job_list/", json={}), 1306406)
