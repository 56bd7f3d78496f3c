"""The seed's request example (shared/seed/log_job.md) answers the seed's response example, at every address.

The seed's request carries the placeholder ``"xxx"`` for ``bk_app_secret`` and ``bk_token``; the body is sent
exactly as the seed writes it (indentation, field order, trailing comma) with only those two values replaced by
a real secret and a real token for ``admin``.
"""

from __future__ import annotations

import json

import pytest

from tests.support.api import (
    ADDRESSES,
    AUTH_HEADER,
    ESB_PATH,
    STEP_KEYS,
    SUCCESS_KEYS,
    apigw_path,
    assert_error,
    nodeman_path,
)
from tests.support.factories import SEED_STEPS

# verbatim from the seed, trailing comma included
SEED_REQUEST = """{
    "bk_app_code": "esb_test",
    "bk_app_secret": "xxx",
    "bk_username": "admin",
    "bk_token": "xxx",
    "job_id": 1,
    "instance_id": 1,
}"""

SEED_REQUEST_FIELDS = {"bk_app_code": "esb_test", "bk_username": "admin", "job_id": 1, "instance_id": 1}


def seed_body(secret: str, token: str) -> bytes:
    body = SEED_REQUEST.replace('"bk_app_secret": "xxx"', f'"bk_app_secret": "{secret}"')
    body = body.replace('"bk_token": "xxx"', f'"bk_token": "{token}"')
    assert body.count("xxx") == 0 and body.rstrip("}").rstrip().endswith(",")
    return body.encode()


def assert_seed_response(response) -> None:
    """The answer matches the seed's response example field by field (times as §11.4 says they really are)."""
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == SUCCESS_KEYS
    assert body["result"] is True
    assert body["code"] == 0 and type(body["code"]) is int
    assert body["message"] == "success"
    data = body["data"]
    assert isinstance(data, list)
    assert len(data) == 5
    for item, (step, status, log, start_time, finish_time) in zip(data, SEED_STEPS, strict=True):
        assert list(item) == STEP_KEYS
        assert item["step"] == step
        assert item["status"] == status
        assert item["log"] == log
        assert item["start_time"] == start_time
        assert item["finish_time"] == finish_time


def test_seed_body_posted_with_its_trailing_comma_answers_the_seed_response(
    client, esb_app, admin, seed_job, token_for
):
    response = client.post(
        ESB_PATH,
        content=seed_body(esb_app.secret, token_for("admin")),
        headers={"content-type": "application/json"},
    )
    assert_seed_response(response)


def test_seed_body_posted_without_a_content_type_is_still_read_as_json(client, esb_app, admin, seed_job, token_for):
    response = client.post(ESB_PATH, content=seed_body(esb_app.secret, token_for("admin")))
    assert_seed_response(response)


def test_seed_body_with_its_placeholder_secret_is_parsed_then_refused_by_app_authentication(client, admin, esb_app):
    response = client.post(ESB_PATH, content=SEED_REQUEST.encode(), headers={"content-type": "application/json"})
    assert_error(
        response,
        1306403,
        "App authentication failed: bk_app_code 'esb_test' with this bk_app_secret is not a registered app",
    )


def test_seed_fields_as_esb_query_parameters_answer_the_seed_response(client, esb_app, admin, seed_job, token_for):
    params = {**SEED_REQUEST_FIELDS, "bk_app_secret": esb_app.secret, "bk_token": token_for("admin")}
    assert_seed_response(client.get(ESB_PATH, params=params))


@pytest.mark.parametrize("address", ADDRESSES)
@pytest.mark.parametrize("user", ["bk_username", "bk_token"])
def test_seed_request_answers_the_seed_response_at_every_address(
    client, esb_app, admin, seed_job, token_for, address, user
):
    common = {"bk_app_code": "esb_test", "bk_app_secret": esb_app.secret}
    common[user] = "admin" if user == "bk_username" else token_for("admin")
    if address == "esb_get":
        response = client.get(ESB_PATH, params={**common, "job_id": 1, "instance_id": 1})
    elif address == "esb_post":
        response = client.post(ESB_PATH, json={**common, "job_id": 1, "instance_id": 1})
    elif address == "nodeman":
        response = client.get(nodeman_path(1), params={**common, "instance_id": 1})
    else:
        response = client.get(apigw_path(1), params={**common, "instance_id": 1})
    assert_seed_response(response)


@pytest.mark.parametrize("path", [apigw_path(1), nodeman_path(1), ESB_PATH])
def test_seed_request_with_common_args_in_the_authorization_header_answers_the_seed_response(
    client, esb_app, admin, seed_job, token_for, path
):
    header = json.dumps({"bk_app_code": "esb_test", "bk_app_secret": esb_app.secret, "bk_token": token_for("admin")})
    params: dict[str, object] = {"instance_id": 1}
    if path == ESB_PATH:
        params["job_id"] = 1
    assert_seed_response(client.get(path, params=params, headers={AUTH_HEADER: header}))


def test_apigw_header_with_bk_username_answers_the_seed_response(client, esb_app, admin, seed_job):
    header = json.dumps({"bk_app_code": "esb_test", "bk_app_secret": esb_app.secret, "bk_username": "admin"})
    assert_seed_response(client.get(apigw_path(1), params={"instance_id": 1}, headers={AUTH_HEADER: header}))


def test_authorization_header_wins_over_parameters(client, esb_app, admin, seed_job):
    header = json.dumps({"bk_app_code": "esb_test", "bk_app_secret": esb_app.secret, "bk_username": "admin"})
    wrong = {"bk_app_code": "esb_test", "bk_app_secret": "not-the-secret", "bk_username": "nobody"}
    response = client.get(apigw_path(1), params={**wrong, "instance_id": 1}, headers={AUTH_HEADER: header})
    assert_seed_response(response)


def test_seed_post_body_wins_over_query_parameters_and_may_split_common_args(client, esb_app, admin, seed_job):
    response = client.post(
        ESB_PATH,
        params={"bk_app_code": "esb_test", "bk_app_secret": esb_app.secret, "job_id": 99, "instance_id": 99},
        json={"bk_username": "admin", "job_id": 1, "instance_id": 1},
    )
    assert_seed_response(response)


def test_seed_job_is_found_by_every_form_of_its_instance_id(client, esb_app, admin, seed_job):
    params = {"bk_app_code": "esb_test", "bk_app_secret": esb_app.secret, "bk_username": "admin"}
    forms = [1, "1", "host|instance|host|1", "host|instance|host|127.0.0.1-0-0", " host|instance|host|127.0.0.1-0-0 "]
    for instance_id in forms:
        assert_seed_response(client.get(nodeman_path(1), params={**params, "instance_id": instance_id}))
        assert_seed_response(client.post(ESB_PATH, json={**params, "job_id": 1, "instance_id": instance_id}))


def test_nodeman_path_without_its_trailing_slash_answers_the_seed_response(client, esb_app, admin, seed_job):
    params = {"bk_app_code": "esb_test", "bk_app_secret": esb_app.secret, "bk_username": "admin", "instance_id": 1}
    assert_seed_response(client.get("/api/job/1/log", params=params))
