"""The published OpenAPI schema lists the log API, and schemathesis fuzzing of every operation in it never gets a
server error nor a body outside the envelope.

Each generated case is sent twice: as generated (so mostly refused by authentication), and with valid common
args in the ``X-Bkapi-Authorization`` header, which wins over whatever the case carries, so that the generated
job ids, instance ids and attempts reach validation, the lookups and the permission check.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from nodeops.service.security import issue_token
from tests.support.api import AUTH_HEADER, ESB_PATH
from tests.support.factories import make_app, make_seed_job, make_user

LOG_PATHS = {
    ESB_PATH: {"get", "post"},
    "/api/job/{job_id}/log/": {"get"},
    "/api/bk-nodeman/prod/api/job/{job_id}/log/": {"get"},
}
INTERNAL_ERROR = 3800500
# operations that, authorized, send requests to the addresses they are given (ap/test GETs its URLs): a generated
# host name would be looked up and reached outside the test's loopback, so they are fuzzed unauthorized only
# (tests/api/test_access_points_api.py covers their validation)
REACHES_OUT = {("/api/ap/test/", "post")}


@pytest.fixture
def fuzz_target(services, live_server):
    """The live server with the seed's job and a caller able to read it; returns the auth header value."""
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    make_seed_job(services)
    # a bk_token, so that it overrides any generated bk_token too (header fields win one by one)
    token = issue_token(services.settings.resolved_secret_key(), username="admin", ttl_s=3600)
    return json.dumps({"bk_app_code": app.code, "bk_app_secret": app.secret, "bk_token": token})


SETTINGS = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# streams and downloads answer their own media type on success, and the envelope on any error
STREAMED = ("text/event-stream", "text/plain", "application/gzip")


def check_envelope(response) -> dict:
    assert response.status_code < 500, response.text
    content_type = response.headers.get("content-type") or response.headers.get("Content-Type") or [""]
    if content_type[0].startswith(STREAMED):
        return {"result": True, "code": 0, "message": "success"}
    assert content_type[0].startswith("application/json"), response.headers  # schemathesis: header -> list
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("result"), bool), body
    assert type(body.get("code")) is int, body
    assert isinstance(body.get("message"), str), body
    if body["result"]:
        assert body["code"] == 0, body
    else:
        assert body["code"] != 0, body
    return body


def test_no_generated_request_gets_a_server_error_or_a_body_outside_the_envelope(live_server, fuzz_target, subtests):
    # schemathesis' own pytest integration (schemathesis.pytest.from_fixture) fails on pytest 9 (it sets
    # request.node._nodeid), so each operation's strategy is driven by Hypothesis directly, one subtest apiece
    api = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json", timeout=10)
    operations = [result.ok() for result in api.get_all_operations()]
    assert {(op.path, op.method.lower()) for op in operations} >= {
        (path, method) for path, methods in LOG_PATHS.items() for method in methods
    }
    for operation in operations:
        has_input = any(True for _ in operation.iter_parameters()) or bool(operation.body)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (GenerationMode.POSITIVE,):
            with subtests.test(operation=operation.label, mode=mode.value):

                @SETTINGS
                @given(case=operation.as_strategy(generation_mode=mode))
                def fuzz(case: schemathesis.Case) -> None:
                    check_envelope(case.call(base_url=live_server.url, timeout=10))
                    if (case.path, case.method.lower()) in REACHES_OUT:
                        return
                    authorized = case.call(base_url=live_server.url, headers={AUTH_HEADER: fuzz_target}, timeout=10)
                    # with valid credentials nothing generated may reach an unhandled exception either
                    assert check_envelope(authorized)["code"] != INTERNAL_ERROR, authorized.text

                fuzz()


def test_openapi_lists_the_three_log_addresses_with_their_verbs(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path, methods in LOG_PATHS.items():
        assert path in paths, sorted(paths)
        assert set(paths[path]) == methods, (path, paths[path])
    job_get = paths["/api/job/{job_id}/log/"]["get"]
    assert {p["name"] for p in job_get["parameters"]} >= {"job_id", "instance_id", "attempt", "bk_app_code"}


def test_docs_page_answers_200(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "openapi.json" in response.text
