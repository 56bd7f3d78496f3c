"""Inputs that once reached the store, a recursion or ``int()`` unchecked and answered 3800500: over real HTTP, on
SQLite and PostgreSQL, each is now refused with 3800001 and a message naming the field and what is accepted,
and nothing is logged as an error (a client's fault is no server error)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from nodeops.api.bodies import MAX_BODY_DEPTH
from nodeops.domain.params import MAX_BIGINT
from nodeops.engine import packages
from nodeops.store import packages as package_rows
from nodeops.store.models import Job
from tests.support.factories import make_app, make_seed_job, make_user
from tests.support.jobs import JobApi
from tests.support.subscriptions import BACKEND, INVENTORY, topology

HEARTBEAT = "/api/agent/heartbeat/"
TOO_LARGE = f"is too large: at most {MAX_BIGINT}"


@pytest.fixture
def api(services, live_server, caplog):
    """A JobApi of the superuser ``admin`` on the live server, with job 1 of the seed; at the end, asserts that
    the server logged no error."""
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    make_seed_job(services)
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield JobApi(client, app)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture
def registered(services, live_server):
    """The agent package registered and an access point, so an install job can be created."""
    with services.db.session() as session:
        package_rows.ensure_default_access_point(session, server_url=live_server.url)
    packages.register(services.db, services.settings.packages_dir)


def invalid(api: JobApi, path: str, body: dict, *says: str) -> str:
    """POST ``body`` and assert 3800001 whose message holds each of ``says``; returns the message."""
    message: str = api.error(path, body, 3800001)["message"]
    for part in says:
        assert part in message, message
    return message


def ssh_host(**extra: object) -> dict[str, object]:
    host = {"bk_biz_id": 2, "bk_cloud_id": 0, "inner_ip": "127.0.20.1", "os_type": "LINUX", "account": "root"}
    return {**host, "auth_type": "PASSWORD", "password": "not-a-real-password", "port": 22, **extra}


def install(hosts: list[dict[str, object]]) -> dict[str, object]:
    return {"job_type": "INSTALL_AGENT", "hosts": hosts}


# --- task_result_detail ----------------------------------------------------------------------------------------


def test_task_result_detail_of_an_empty_instance_id_list_is_3800001(api, services):
    with services.db.session() as session:
        job = session.get(Job, 1)
        assert job is not None
        subscription_id = job.subscription_id
    body = {"subscription_id": subscription_id, "instance_id": []}
    invalid(api, f"{BACKEND}/task_result_detail/", body, "instance_id: must be one instance_id")
    found = api.ok(f"{BACKEND}/task_result_detail/", {**body, "instance_id": ["host|instance|host|1"]})
    assert found["instance_id"] == "host|instance|host|1"


# --- heartbeat (unauthenticated) -------------------------------------------------------------------------------


@pytest.mark.parametrize("host_id", [MAX_BIGINT + 1, 2**64 - 1])
def test_a_heartbeat_of_a_bk_host_id_past_bigint_is_3800001(api, host_id):
    answer = api.client.post(HEARTBEAT, json={"bk_host_id": host_id, "token": "t", "version": "1.0"}).json()
    assert answer["code"] == 3800001, answer
    assert answer["message"] == f"bk_host_id: {host_id} {TOO_LARGE}（3800001）"


def test_a_heartbeat_of_the_largest_bk_host_id_reaches_the_token_check(api):
    answer = api.client.post(HEARTBEAT, json={"bk_host_id": MAX_BIGINT, "token": "t", "version": "1.0"}).json()
    assert answer["code"] == 3800403, answer


# --- job_list inner_ip_list ------------------------------------------------------------------------------------


def test_job_list_refuses_an_inner_ip_list_entry_longer_than_an_address(api):
    body = {"inner_ip_list": ["127.0.0.1", "1" * 100_000]}
    message = invalid(api, "/api/job/job_list/", body, "inner_ip_list[1]: must be an IP address")
    assert len(message) < 300
    invalid(api, "/api/job/job_list/", {"inner_ip_list": [{"ip": "127.0.0.1"}]}, "inner_ip_list[0]:")
    assert api.ok("/api/job/job_list/", {"inner_ip_list": ["127.0.0.1"]})["total"] == 1


@pytest.mark.parametrize("pattern", ["%", "_", "127.0.0.%", "127_0_0_1"])
def test_job_list_inner_ip_list_matches_addresses_not_like_patterns(api, pattern):
    assert api.ok("/api/job/job_list/", {"inner_ip_list": [pattern]})["total"] == 0


# --- nesting ---------------------------------------------------------------------------------------------------


def post_routes(client: httpx.Client) -> list[str]:
    """Every POST path of the published schema (``{job_id}`` as 1), and the heartbeat's."""
    schema = client.get("/openapi.json").json()
    paths = [path.replace("{job_id}", "1") for path, item in schema["paths"].items() if "post" in item]
    assert "{" not in "".join(paths), paths
    return [*paths, HEARTBEAT]


def nested(depth: int) -> bytes:
    """JSON arrays ``depth`` levels deep (too deep for the json module to write)."""
    return b"[" * depth + b"]" * depth


def with_x(common: dict[str, str], x: bytes) -> bytes:
    return json.dumps(common).encode()[:-1] + b', "x": ' + x + b"}"


def test_a_body_nested_1000_deep_is_3800001_on_every_post_route(api, subtests):
    common = api_common(api)
    routes = post_routes(api.client)
    assert len(routes) > 20
    too_deep = f"body: is nested too deep: at most {MAX_BODY_DEPTH} levels of objects and arrays（3800001）"
    for path in routes:
        for depth in (MAX_BODY_DEPTH, 1000, 1100):  # the body itself is a level: one more than allowed
            with subtests.test(path=path, depth=depth):
                raw = with_x(common, nested(depth))
                answer = api.client.post(path, content=raw, headers={"content-type": "application/json"}).json()
                assert answer["code"] == 3800001 and answer["message"] == too_deep, answer


def test_a_body_at_the_depth_limit_is_read(api):
    raw = with_x(api_common(api), nested(MAX_BODY_DEPTH - 1))
    answer = api.client.post("/api/job/job_list/", content=raw, headers={"content-type": "application/json"}).json()
    assert answer["result"] is True, answer


# --- non-ASCII digits and ids past BIGINT ----------------------------------------------------------------------


@pytest.mark.parametrize("digit", ["²", "٣", "\uff11"])
def test_non_ascii_digits_are_3800001_where_an_integer_is_expected(api, registered, digit, subtests):
    cases = [
        ("/api/job/install/", install([ssh_host(bk_biz_id=digit)]), f"hosts[0].bk_biz_id: {digit!r} is not"),
        ("/api/job/install/", install([ssh_host(port=digit)]), f"hosts[0].port: {digit!r} is not"),
        ("/api/job/job_list/", {"page": digit}, f"page: {digit!r} is not a positive integer"),
        ("/api/job/job_list/", {"job_id": [digit]}, f"job_id[0]: {digit!r} is not a positive integer"),
        ("/api/job/1/details/", {"page": digit}, f"page: {digit!r} is not a positive integer"),
        (f"/api/job/{digit}/details/", {}, f"job_id: {digit!r} is not a positive integer"),
        (f"{BACKEND}/task_result/", {"subscription_id": digit}, f"subscription_id: {digit!r} is not"),
        (f"{INVENTORY}/import/", {"csv": f"bk_biz_id,inner_ip\n{digit},127.10.0.1\n"}, "line 2.bk_biz_id: "),
    ]
    for path, body, says in cases:
        with subtests.test(path=path, body=body):
            invalid(api, path, body, says)
    answer = api.client.get("/api/job/1/log/", params={**api_common(api), "instance_id": 1, "attempt": digit})
    assert answer.json()["message"] == f"attempt: {digit!r} is not a positive integer（3800001）"


def api_common(api: JobApi) -> dict[str, str]:
    return {"bk_app_code": api.app.code, "bk_app_secret": api.app.secret, "bk_username": "admin"}


def test_ids_past_bigint_are_3800001_naming_the_field(api, subtests):
    huge = MAX_BIGINT + 1
    cases = [
        (f"/api/job/{huge}/details/", {}, f"job_id: '{huge}' {TOO_LARGE}"),
        ("/api/c/compapi/v2/nodeman/api/job/details/", {"job_id": huge}, f"job_id: {huge} {TOO_LARGE}"),
        ("/api/job/job_list/", {"job_id": [huge]}, f"job_id[0]: {huge} {TOO_LARGE}"),
        ("/api/job/job_list/", {"bk_biz_id": [2**31]}, f"bk_biz_id[0]: {2**31} is too large: at most {2**31 - 1}"),
        (f"{BACKEND}/task_result/", {"subscription_id": huge}, f"subscription_id: {huge} {TOO_LARGE}"),
        (f"{BACKEND}/task_result_detail/", {"subscription_id": 1, "task_id": huge, "instance_id": 1}, "task_id: "),
        (f"{BACKEND}/info/", {"subscription_id_list": [str(huge)]}, f"subscription_id_list[0]: '{huge}' {TOO_LARGE}"),
    ]
    for path, body, says in cases:
        with subtests.test(path=path, body=body):
            invalid(api, path, body, says)


# --- account -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "account, says",
    [
        ("ro\x07ot", "must not contain control or non-printing characters (it holds '\\x07')"),
        ("ro\x1bot", "must not contain control or non-printing characters (it holds '\\x1b')"),
        ("root\u200b", "must not contain control or non-printing characters (it holds '\\u200b')"),
        ("r\u0627", "is not a valid SSH login name (Both RandALCat and LCat characters present)"),
        ("a" * 65, "must be at most 64 characters"),
    ],
)
def test_an_account_ssh_would_refuse_is_3800001_at_job_creation_naming_the_host(api, registered, account, says):
    message = invalid(api, "/api/job/install/", install([ssh_host(), ssh_host(inner_ip="127.0.20.2", account=account)]))
    assert f"hosts[1].account: the account of host 127.0.20.2 {says}" in message, message
    assert "hosts[0]" not in message
    assert api.ok("/api/job/job_list/", {})["total"] == 1  # only the seed's job: none was created


def test_the_inventory_import_refuses_such_an_account_too(api):
    api.ok(f"{INVENTORY}/import/", {"inventory": {"topology": topology(2)}})
    host = {"bk_biz_id": 2, "inner_ip": "127.10.0.1", "account": "ad\tmin"}
    invalid(
        api,
        f"{INVENTORY}/import/",
        {"inventory": {"hosts": [host]}},
        "hosts[0].account: the account of host 127.10.0.1",
    )


@pytest.mark.parametrize("event_id", ["9" * 20, "1e3", "-1"])
def test_a_last_event_id_no_stream_sent_is_3800001(api, event_id):
    response = api.client.get("/api/job/1/events/", params=api_common(api), headers={"Last-Event-ID": event_id})
    answer = response.json()
    assert answer["code"] == 3800001, answer
    assert answer["message"].startswith(f"Last-Event-ID: {event_id!r} is not an id this stream sent"), answer
