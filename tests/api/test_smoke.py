"""A first end-to-end check of the seed's request against a real server; the full matrix lives beside it."""

from __future__ import annotations

import httpx

from tests.support.factories import SEED_STEPS, make_app, make_seed_job, make_user


def test_seed_request_answers_the_seed_response(services, live_server):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    job = make_seed_job(services)
    response = httpx.get(
        f"{live_server.url}/api/c/compapi/v2/nodeman/api/job/log/",
        params={
            "bk_app_code": app.code,
            "bk_app_secret": app.secret,
            "bk_username": "admin",
            "job_id": job.job_id,
            "instance_id": 1,
        },
    )
    body = response.json()
    assert response.status_code == 200
    assert (body["result"], body["code"], body["message"]) == (True, 0, "success")
    assert [tuple(step.values()) for step in body["data"]] == list(SEED_STEPS)
