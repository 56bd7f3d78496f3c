"""Every error of the log API over HTTP: its code, its exact message (or the part naming what was wrong), the
envelope (HTTP 200, ``data`` null, ``errors`` null), and which error wins when a request has several faults.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from nodeops.settings import MAX_BODY_BYTES
from tests.support.api import (
    ADDRESSES,
    AUTH_HEADER,
    ESB_PATH,
    apigw_path,
    assert_error,
    credentials,
    log_data,
    nodeman_path,
    request_log,
)
from tests.support.factories import make_app, make_user

MISSING_BOTH = (
    "Parameters error, bk_app_code, bk_app_secret required: pass them as parameters or in the X-Bkapi-Authorization "
    "header"
)
NO_USER = "User authentication failed, please provide a valid user identity, such as bk_token, bk_username."
NOT_A_TOKEN = "User authentication failed: bk_token is not a token issued by this service"
BAD_SIGNATURE = "User authentication failed: bk_token signature is invalid"


def app_refused(code: str) -> str:
    return f"App authentication failed: bk_app_code {code!r} with this bk_app_secret is not a registered app"


@pytest.fixture
def admin_auth(esb_app, admin) -> dict[str, str]:
    return credentials(esb_app, bk_username="admin")


# --- authentication (ESB layer, 1306xxx, no code suffix) ---------------------------------------------------------


def test_missing_app_code_and_secret_is_1306406_naming_both(client, seed_job, subtests):
    for address in ADDRESSES:
        with subtests.test(address=address):
            response = request_log(client, address, job_id=1, instance_id=1, auth={"bk_username": "admin"})
            assert_error(response, 1306406, MISSING_BOTH)


def test_missing_app_secret_alone_is_1306406_naming_only_the_secret(client, esb_app, seed_job):
    response = request_log(client, "esb_get", job_id=1, instance_id=1, auth={"bk_app_code": "esb_test"})
    assert_error(
        response,
        1306406,
        "Parameters error, bk_app_secret required: pass them as parameters or in the X-Bkapi-Authorization header",
    )


def test_blank_app_code_counts_as_missing(client, esb_app, seed_job):
    auth = {"bk_app_code": "   ", "bk_app_secret": esb_app.secret, "bk_username": "admin"}
    response = request_log(client, "esb_get", job_id=1, instance_id=1, auth=auth)
    assert_error(response, 1306406, contains=("bk_app_code required",))


def test_unknown_app_is_1306403(client, esb_app, admin, seed_job, subtests):
    auth = {"bk_app_code": "nobody", "bk_app_secret": esb_app.secret, "bk_username": "admin"}
    for address in ADDRESSES:
        for via_header in (False, True):
            with subtests.test(address=address, via_header=via_header):
                response = request_log(client, address, job_id=1, instance_id=1, auth=auth, via_header=via_header)
                assert_error(response, 1306403, app_refused("nobody"))


def test_wrong_app_secret_is_1306403(client, esb_app, admin, seed_job, subtests):
    auth = {"bk_app_code": "esb_test", "bk_app_secret": esb_app.secret + "x", "bk_username": "admin"}
    for address in ADDRESSES:
        for via_header in (False, True):
            with subtests.test(address=address, via_header=via_header):
                response = request_log(client, address, job_id=1, instance_id=1, auth=auth, via_header=via_header)
                assert_error(response, 1306403, app_refused("esb_test"))


def test_secret_of_another_app_is_1306403(client, services, esb_app, admin, seed_job):
    other = make_app(services, "other_app")
    auth = {"bk_app_code": "esb_test", "bk_app_secret": other.secret, "bk_username": "admin"}
    assert_error(request_log(client, "esb_get", job_id=1, instance_id=1, auth=auth), 1306403, app_refused("esb_test"))


def test_no_user_at_all_is_1306000(client, esb_app, seed_job, subtests):
    for address in ADDRESSES:
        with subtests.test(address=address):
            response = request_log(client, address, job_id=1, instance_id=1, auth=credentials(esb_app))
            assert_error(response, 1306000, NO_USER)


def test_bk_username_from_an_app_without_allow_username_is_1306000(client, services, admin, seed_job):
    strict = make_app(services, "strict_app", allow_username=False)
    response = request_log(client, "esb_get", job_id=1, instance_id=1, auth=credentials(strict, bk_username="admin"))
    assert_error(
        response,
        1306000,
        "User authentication failed: app 'strict_app' may not pass bk_username; send a bk_token, or register the "
        "app with `nodeops app add strict_app --allow-username`",
    )


def test_malformed_or_forged_bk_token_is_1306000(client, esb_app, admin, seed_job, subtests):
    cases = [
        ("xxx", NOT_A_TOKEN),
        ("v2.e30.abc", NOT_A_TOKEN),
        ("v1.e30", NOT_A_TOKEN),
        ("v1.e30.AAAA", BAD_SIGNATURE),
        ("v1.e30.\u00e9\u00e9", BAD_SIGNATURE),  # non-ASCII signature: refused, not an internal error (3800500)
    ]
    for token, message in cases:
        for address in ("esb_get", "esb_post"):
            with subtests.test(token=token, address=address):
                # a bad token never falls back to bk_username, as ESB
                auth = credentials(esb_app, bk_token=token, bk_username="admin")
                assert_error(request_log(client, address, job_id=1, instance_id=1, auth=auth), 1306000, message)


def test_token_signed_with_another_key_is_1306000(client, esb_app, admin, seed_job):
    from nodeops.service.security import issue_token

    token = issue_token(b"some other service's key", username="admin", ttl_s=3600)
    auth = credentials(esb_app, bk_token=token)
    assert_error(request_log(client, "esb_get", job_id=1, instance_id=1, auth=auth), 1306000, BAD_SIGNATURE)


def test_expired_bk_token_is_1306000_saying_when_it_expired(client, esb_app, admin, seed_job, token_for):
    token = token_for("admin", ttl_s=60, now=datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC))
    auth = credentials(esb_app, bk_token=token)
    assert_error(
        request_log(client, "nodeman", job_id=1, instance_id=1, auth=auth),
        1306000,
        "User authentication failed: bk_token expired at 2020-01-02 03:05:05 UTC; issue a new one",
    )


def test_authorization_header_that_is_not_json_is_1306406(client, esb_app, admin, seed_job, subtests):
    for header in ["{bad", '{"bk_app_code": "esb_test",', "\u00e9"]:
        with subtests.test(header=header):
            # valid parameters do not rescue a broken header
            response = client.get(
                ESB_PATH,
                params={**credentials(esb_app, bk_username="admin"), "job_id": 1, "instance_id": 1},
                headers={AUTH_HEADER: header.encode("utf-8")},
            )
            assert_error(
                response,
                1306406,
                "Parameters error, a JSON X-Bkapi-Authorization header required: pass them as parameters or in "
                "the X-Bkapi-Authorization header",
            )


def test_authorization_header_fields_fill_in_for_missing_parameters_one_by_one(client, esb_app, admin, seed_job):
    response = client.get(
        apigw_path(1),
        params={"bk_app_code": "esb_test", "instance_id": 1},
        headers={AUTH_HEADER: json.dumps({"bk_app_secret": esb_app.secret, "bk_username": "admin"})},
    )
    assert len(log_data(response)) == 5


# --- validation (3800001, naming each bad field) ---------------------------------------------------------------


def test_missing_job_id_and_instance_id_is_3800001_naming_both(client, admin_auth):
    response = client.get(ESB_PATH, params=admin_auth)
    assert_error(
        response,
        3800001,
        "job_id: this field is required (a positive integer); "
        "instance_id: this field is required (object_type|node_type|type|id, or a bk_host_id)",
    )


def test_missing_or_empty_instance_id_is_3800001(client, admin_auth, seed_job, subtests):
    required = "instance_id: this field is required (object_type|node_type|type|id, or a bk_host_id)"
    for address in ADDRESSES:
        with subtests.test(address=address, instance_id="(absent)"):
            if address == "esb_post":
                response = client.post(ESB_PATH, json={**admin_auth, "job_id": 1})
            elif address == "esb_get":
                response = client.get(ESB_PATH, params={**admin_auth, "job_id": 1})
            else:
                path = nodeman_path(1) if address == "nodeman" else apigw_path(1)
                response = client.get(path, params=admin_auth)
            assert_error(response, 3800001, required)
        with subtests.test(address=address, instance_id=""):
            assert_error(request_log(client, address, job_id=1, instance_id="", auth=admin_auth), 3800001, required)


def test_non_numeric_or_non_positive_job_id_is_3800001_naming_job_id(client, admin_auth, seed_job, subtests):
    huge = "99999999999999999999"
    cases = [(job_id, f"{job_id!r} is not a positive integer") for job_id in ["abc", "0", "-1", "1.5", "\uff11", "²"]]
    cases.append((huge, f"{huge!r} is too large: at most {2**63 - 1}"))
    for job_id, problem in cases:
        for address in ADDRESSES:
            with subtests.test(job_id=job_id, address=address):
                response = request_log(client, address, job_id=job_id, instance_id=1, auth=admin_auth)
                assert_error(response, 3800001, f"job_id: {problem}")


def test_job_id_of_a_non_integer_json_type_is_3800001(client, admin_auth, seed_job, subtests):
    for job_id in [1.0, True, [1], {"id": 1}, None]:
        with subtests.test(job_id=job_id):
            response = client.post(ESB_PATH, json={**admin_auth, "job_id": job_id, "instance_id": 1})
            expected = (
                "job_id: this field is required (a positive integer)"
                if job_id is None
                else "job_id: must be a positive integer"
            )
            assert_error(response, 3800001, expected)


MALFORMED_INSTANCE_IDS = [
    ("host|x", "'host|x' must be object_type|node_type|type|id (4 parts joined by '|'), got 2"),
    ("1|2|3|4|5", "'1|2|3|4|5' must be object_type|node_type|type|id (4 parts joined by '|'), got 5"),
    ("foo|instance|host|1", "object_type 'foo' must be one of host, service"),
    ("host|bogus|host|1", "node_type 'bogus' must be one of topo, instance, service_template, set_template"),
    ("host|instance|service|1", "type 'service' must be 'host' for a host instance"),
    ("host|instance|ho st|1", "type 'ho st' must be host, service or a topology bk_obj_id"),
    ("host|instance|host|", "id must not be empty"),
    ("host|instance|host|127.300.1.1-0-0", "id '127.300.1.1-0-0': '127.300.1.1' is not an IPv4 or IPv6 address"),
    (
        "host|instance|host|127.10.0.1-x-0",
        "id '127.10.0.1-x-0': bk_cloud_id and bk_supplier_id must be non-negative integers",
    ),
    ("host|instance|host|127.10.0.1", "id '127.10.0.1' must be a bk_host_id or ip-bk_cloud_id-bk_supplier_id"),
    (
        "host|instance|host|::1%lo-0-0",
        "id '::1%lo-0-0': an IPv6 scope id (%zone) is not accepted",
    ),
    ("service|instance|service|abc", "id 'abc' must be an integer (service instance ids are numeric)"),
    ("0", "bk_host_id '0' must be a positive integer of at most 18 digits"),
    ("-5", "bk_host_id '-5' must be a positive integer of at most 18 digits"),
    ("9" * 19, f"bk_host_id '{'9' * 19}' must be a positive integer of at most 18 digits"),
    ("   ", "must not be blank; expected object_type|node_type|type|id"),
]


def test_malformed_instance_id_is_3800001_naming_the_wrong_part(client, admin_auth, seed_job, subtests):
    for instance_id, problem in MALFORMED_INSTANCE_IDS:
        for address in ADDRESSES:
            with subtests.test(instance_id=instance_id, address=address):
                response = request_log(client, address, job_id=1, instance_id=instance_id, auth=admin_auth)
                assert_error(response, 3800001, f"instance_id: {problem}")


def test_instance_id_of_a_non_string_non_integer_json_type_is_3800001(client, admin_auth, seed_job, subtests):
    for instance_id in [1.5, True, [1], {"id": 1}]:
        with subtests.test(instance_id=instance_id):
            response = client.post(ESB_PATH, json={**admin_auth, "job_id": 1, "instance_id": instance_id})
            assert_error(
                response,
                3800001,
                "instance_id: must be a string object_type|node_type|type|id or an integer bk_host_id",
            )


def test_bad_attempt_is_3800001_naming_attempt(client, admin_auth, seed_job, subtests):
    for attempt in ["0", "x", "-2"]:
        for address in ADDRESSES:
            with subtests.test(attempt=attempt, address=address):
                response = request_log(client, address, job_id=1, instance_id=1, auth=admin_auth, attempt=attempt)
                assert_error(response, 3800001, f"attempt: {attempt!r} is not a positive integer")


def test_every_bad_field_is_named_in_one_answer(client, admin_auth, seed_job):
    response = client.get(ESB_PATH, params={**admin_auth, "job_id": "abc", "instance_id": "host|x", "attempt": "0"})
    assert_error(
        response,
        3800001,
        contains=(
            "job_id: 'abc' is not a positive integer",
            "attempt: '0' is not a positive integer",
            "instance_id: 'host|x' must be object_type|node_type|type|id",
        ),
    )


def test_invalid_json_body_is_3800001_naming_the_body(client, admin_auth):
    response = client.post(ESB_PATH, params=admin_auth, content=b'{"job_id": 1, "instance_id": ', headers={})
    body = assert_error(response, 3800001, contains=("body: is not valid JSON (",))
    assert " at position " in body["message"]


def test_json_body_that_is_not_an_object_is_3800001(client, admin_auth, subtests):
    for content in [b"[1, 2]", b"[]", b'"job"', b"42", b"null", b"true"]:
        with subtests.test(content=content):
            response = client.post(
                ESB_PATH, params=admin_auth, content=content, headers={"content-type": "application/json"}
            )
            assert_error(response, 3800001, 'body: must be a JSON object such as {"job_id": 1, "instance_id": "..."}')


def test_body_over_one_mebibyte_is_3800413(client, admin_auth):
    content = b"{" + b" " * MAX_BODY_BYTES + b"}"
    assert len(content) == MAX_BODY_BYTES + 2
    response = client.post(ESB_PATH, params=admin_auth, content=content[: MAX_BODY_BYTES + 1])
    assert_error(response, 3800413, f"request body exceeds {MAX_BODY_BYTES} bytes")


def test_body_of_exactly_one_mebibyte_is_read(client, admin_auth, seed_job):
    head = json.dumps({**admin_auth, "job_id": 1, "instance_id": 1}).encode()
    content = head[:-1] + b" " * (MAX_BODY_BYTES - len(head)) + b"}"
    assert len(content) == MAX_BODY_BYTES
    assert len(log_data(client.post(ESB_PATH, content=content))) == 5


def test_body_over_one_mebibyte_to_any_other_route_is_3800413(client):
    response = client.post("/healthz", content=b"x" * (MAX_BODY_BYTES + 1))
    assert_error(response, 3800413, f"request body exceeds {MAX_BODY_BYTES} bytes")


def test_empty_post_body_reads_the_query_parameters(client, admin_auth, seed_job):
    response = client.post(ESB_PATH, params={**admin_auth, "job_id": 1, "instance_id": 1}, content=b"")
    assert len(log_data(response)) == 5


def test_nul_byte_in_app_code_or_username_is_an_authentication_answer_not_an_internal_error(
    client, services, esb_app, admin, seed_job, request
):
    cases = [
        ({**credentials(esb_app, bk_username="admin"), "bk_app_code": "esb\x00test"}, 1306403),
        (credentials(esb_app, bk_username="ad\x00min"), 9900403),  # an unknown name: authenticated, no rights
    ]
    answers = [
        (address, request_log(client, address, job_id=1, instance_id=1, auth=auth).json()["code"], code)
        for auth, code in cases
        for address in ("esb_get", "esb_post")
    ]
    assert [(address, got) for address, got, _ in answers] == [(address, want) for address, _, want in answers]


# --- lookups: job, permission, instance --------------------------------------------------------------------------


def test_unknown_job_is_3801012(client, admin_auth, seed_job, subtests):
    for address in ADDRESSES:
        with subtests.test(address=address):
            response = request_log(client, address, job_id=99, instance_id=1, auth=admin_auth)
            assert_error(response, 3801012, "job 99 does not exist")


def test_unknown_instance_in_an_existing_job_is_3800007(client, admin_auth, seed_job, subtests):
    for address in ADDRESSES:
        with subtests.test(address=address):
            response = request_log(client, address, job_id=1, instance_id="host|instance|host|5", auth=admin_auth)
            assert_error(response, 3800007, "job 1 has no instance 'host|instance|host|5'")


def test_instance_not_in_the_job_is_3800007_showing_the_normalised_id(client, admin_auth, seed_job, subtests):
    cases = [
        (5, "host|instance|host|5"),
        ("007", "host|instance|host|7"),
        ("host|instance|host|127.0.0.2-0-0", "host|instance|host|127.0.0.2-0-0"),
        ("host|instance|host|127.0.0.1-1-0", "host|instance|host|127.0.0.1-1-0"),
        ("host|instance|host|127.0.0.1-0-5", "host|instance|host|127.0.0.1-0-5"),
        ("HOST|INSTANCE|host|0:0:0:0:0:0:0:1-0-0", "host|instance|host|::1-0-0"),
        ("host|topo|module|33", "host|topo|module|33"),
        ("service|instance|service|1", "service|instance|service|1"),
    ]
    for instance_id, shown in cases:
        with subtests.test(instance_id=instance_id):
            response = request_log(client, "esb_get", job_id=1, instance_id=instance_id, auth=admin_auth)
            assert_error(response, 3800007, f"job 1 has no instance {shown!r}")


def test_attempt_that_does_not_exist_is_3800007_naming_the_attempts(client, admin_auth, seed_job):
    response = request_log(client, "apigw", job_id=1, instance_id=1, auth=admin_auth, attempt=2)
    assert_error(
        response,
        3800007,
        "job 1 has no instance 'host|instance|host|1': attempt 2 does not exist; attempts are 1 to 1",
    )


def test_user_without_a_grant_on_the_job_business_is_9900403_with_permission_data(
    client, services, esb_app, seed_job, subtests
):
    make_user(services, "alice", biz=[3])
    for address in ADDRESSES:
        with subtests.test(address=address):
            auth = credentials(esb_app, bk_username="alice")
            assert_error(
                request_log(client, address, job_id=1, instance_id=1, auth=auth),
                9900403,
                "user 'alice' has no [task_history_view] permission on business 2 of job 1; ask an administrator "
                "for `nodeops user grant alice --biz <id>`",
                data={"permission": {"action": "task_history_view", "bk_biz_ids": [2]}, "apply_url": ""},
            )


# --- routing ----------------------------------------------------------------------------------------------------


def test_unknown_path_is_3800404(client, admin_auth, subtests):
    paths = [
        "/nope",
        "/api/job/1/log/extra/",
        "/api/job/1/logs/",
        "/api/job//log/",
        "/api/bk-nodeman/test/api/job/1/log/",
        "/api/c/compapi/v2/nodeman/api/job/logs/",
    ]
    for path in paths:
        for method in ("GET", "POST"):
            with subtests.test(path=path, method=method):
                response = client.request(method, path, params={**admin_auth, "job_id": 1, "instance_id": 1})
                assert_error(response, 3800404, f"no API at {path!r}; see /docs for the list")


def test_verbs_other_than_get_on_the_job_paths_are_3800405(client, admin_auth, seed_job, subtests):
    for path in (nodeman_path(1), apigw_path(1)):
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            with subtests.test(path=path, method=method):
                response = client.request(
                    method, path, params={**admin_auth, "instance_id": 1}, json={"instance_id": 1}
                )
                assert_error(response, 3800405, f"method {method} is not allowed here; use GET")


def test_verbs_other_than_get_and_post_on_the_esb_path_are_3800405(client, admin_auth, seed_job, subtests):
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        with subtests.test(method=method):
            response = client.request(method, ESB_PATH, params={**admin_auth, "job_id": 1, "instance_id": 1})
            assert_error(response, 3800405, f"method {method} is not allowed here; use GET or POST")


def test_wrong_verb_on_a_framework_route_is_3800405(client):
    assert_error(client.delete("/healthz"), 3800405, "method DELETE is not allowed here; use GET")


# --- which error wins (spec §10: authentication, validation, job, permission, record) ----------------------------


def test_bad_credentials_win_over_a_bad_job_id(client, esb_app, admin, subtests):
    auth = {"bk_app_code": "esb_test", "bk_app_secret": "wrong-secret", "bk_username": "admin"}
    for address in ADDRESSES:
        with subtests.test(address=address):
            response = request_log(client, address, job_id="abc", instance_id="host|x", auth=auth)
            assert_error(response, 1306403, app_refused("esb_test"))


def test_missing_credentials_win_over_every_other_fault(client):
    response = client.get(ESB_PATH, params={"job_id": "abc", "instance_id": "host|x"})
    assert_error(response, 1306406, MISSING_BOTH)


def test_missing_user_wins_over_a_bad_job_id(client, esb_app):
    response = client.get(ESB_PATH, params={**credentials(esb_app), "job_id": "abc"})
    assert_error(response, 1306000, NO_USER)


def test_validation_wins_over_an_unknown_job(client, admin_auth):
    response = request_log(client, "nodeman", job_id=99, instance_id="host|x", auth=admin_auth)
    assert_error(response, 3800001, contains=("instance_id: 'host|x'",))


def test_stranger_asking_for_an_unknown_instance_of_an_unknown_job_gets_3801012(client, esb_app, seed_job):
    auth = credentials(esb_app, bk_username="stranger")
    response = request_log(client, "esb_get", job_id=99, instance_id=12345, auth=auth)
    assert_error(response, 3801012, "job 99 does not exist")


def test_stranger_asking_for_an_unknown_instance_of_an_existing_job_gets_9900403(client, esb_app, seed_job):
    auth = credentials(esb_app, bk_username="stranger")
    response = request_log(client, "esb_get", job_id=1, instance_id=12345, auth=auth)
    assert_error(
        response,
        9900403,
        contains=("user 'stranger' has no [task_history_view] permission on business 2 of job 1",),
        data={"permission": {"action": "task_history_view", "bk_biz_ids": [2]}, "apply_url": ""},
    )


def test_body_errors_come_before_authentication_since_the_body_may_carry_the_credentials(client):
    response = client.post(ESB_PATH, content=b"[]")
    assert_error(response, 3800001, contains=("body: must be a JSON object",))
