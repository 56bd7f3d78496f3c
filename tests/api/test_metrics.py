"""``GET /metrics`` over real HTTP: off by default, read only with the bearer token, and after a real job (embedded
engine, local hosts, agents that heartbeat) it counts the job and its instances by type and status, each step's
duration once per host and step, the heartbeats received and refused, and the HTTP requests by route template and
code, those the fast path answers (the log lane, the heartbeat path) included.

The process's counters are shared by every test of this process, so each test compares two scrapes."""

from __future__ import annotations

import json
import logging
import socket
import uuid
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from nodeops.service.container import Services
from nodeops.store.models import InstanceRecord, RecordStep
from tests.support.factories import make_agents
from tests.support.jobs import ESB_JOB, local_host, serving
from tests.support.live_server import LiveServer
from tests.support.metrics import TOKEN, names, scrape, total, value

HEARTBEAT = "/api/agent/heartbeat/"


@pytest.fixture
def settings(settings):
    """The test settings (``tests.support.services.settings``) with a metrics token."""
    return settings.model_copy(update={"metrics_token": SecretStr(TOKEN)})


@pytest.fixture
def client(live_server):
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


def _ran_steps(services, job_id: int) -> Counter[str]:
    """step code -> how many times it ran (not PENDING) in the job's records."""
    with services.db.session() as session:
        codes = session.scalars(
            sa.select(RecordStep.code)
            .join(InstanceRecord, InstanceRecord.id == RecordStep.record_id)
            .where(InstanceRecord.job_id == job_id, RecordStep.status != "PENDING")
        )
        return Counter(codes)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_real_job_is_counted_with_its_steps_heartbeats_and_requests(services, listen_socket, tmp_path):
    with serving(services, listen_socket, tmp_path) as api:
        before = scrape(api.client)
        started = api.ok(
            f"{ESB_JOB}/install/",
            {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1), local_host(tmp_path, 2)]},
        )
        job_id = started["job_id"]
        done = api.wait(job_id)
        assert done["status"] == "SUCCESS", done
        steps = api.log(job_id, done["list"][0]["instance_id"])  # a GET of the log API: the lane answers it
        assert steps and all(step["status"] == "SUCCESS" for step in steps)
        unknown = api.client.get(f"/no/such/{uuid.uuid4().hex}")
        assert unknown.json()["code"] == 3800404
        after = scrape(api.client)
    ran = _ran_steps(services, job_id)
    assert ran and sum(ran.values()) == 2 * len(steps), ran  # every step of both hosts ran

    assert value(after, "nodeops_jobs", job_type="INSTALL_AGENT", status="SUCCESS") == 1
    assert value(after, "nodeops_instances", job_type="INSTALL_AGENT", status="SUCCESS") == 2
    assert value(after, "nodeops_agents", status="running") == 2
    assert value(after, "nodeops_store_scrape_ok") == 1
    for code, times in ran.items():
        labels = {"job_type": "INSTALL_AGENT", "step": code}
        counted = value(after, "nodeops_step_duration_seconds_count", **labels) - value(
            before, "nodeops_step_duration_seconds_count", **labels
        )
        assert counted == times, (code, counted, times)
        infinite = value(after, "nodeops_step_duration_seconds_bucket", le="+Inf", **labels)
        assert infinite == value(after, "nodeops_step_duration_seconds_count", **labels)
    assert value(after, "nodeops_hosts_running") == 0
    assert value(after, "nodeops_job_limit_hosts") == services.settings.job_limit

    # the installed agents reported (查询Agent状态 waited for it): at least one accepted heartbeat each
    received = value(after, "nodeops_heartbeats_received_total") - value(before, "nodeops_heartbeats_received_total")
    assert received >= 2
    heartbeats = total(after, "nodeops_http_requests_total", route=HEARTBEAT, code="0") - total(
        before, "nodeops_http_requests_total", route=HEARTBEAT, code="0"
    )
    assert heartbeats == received

    def requests(route: str, **labels: str) -> float:
        return total(after, "nodeops_http_requests_total", route=route, **labels) - total(
            before, "nodeops_http_requests_total", route=route, **labels
        )

    assert requests(f"{ESB_JOB}/install/", method="POST", status="200", code="0") == 1
    assert requests("/api/job/{job_id}/details/", method="POST", status="200", code="0") >= 1
    assert requests("/api/job/{job_id}/log/", method="GET", status="200", code="0") == 1  # the lane's
    assert requests("unmatched", method="GET", code="3800404") == 1
    assert requests("/metrics", method="GET", status="200") == 1  # the first scrape, counted by the second
    # the raw paths are never labels: no series names a job id or the unknown path
    routes = {dict(labels).get("route") for name, labels in after if name == "nodeops_http_requests_total"}
    assert not any(str(job_id) in (route or "") or "no/such" in (route or "") for route in routes), routes
    duration = total(after, "nodeops_http_request_duration_seconds_count", route=f"{ESB_JOB}/install/") - total(
        before, "nodeops_http_request_duration_seconds_count", route=f"{ESB_JOB}/install/"
    )
    assert duration == 1

    lines = value(after, "nodeops_log_lines_written_total") - value(before, "nodeops_log_lines_written_total")
    written = sum(step["log"].count("\n") + 1 for step in steps if step["log"])
    assert lines >= 2 * written - 2, (lines, written)  # both hosts' lines (each roughly as long)
    assert value(after, "nodeops_log_written_bytes_total") > value(before, "nodeops_log_written_bytes_total")
    flushes = value(after, "nodeops_log_flush_duration_seconds_count")
    assert flushes > value(before, "nodeops_log_flush_duration_seconds_count")


def test_heartbeats_received_and_refused_are_counted_by_reason(services, client):
    agents = make_agents(services, 2)
    before = scrape(client)
    assert client.post(HEARTBEAT, json=agents[0].heartbeat("1.0")).json()["code"] == 0
    assert client.post(HEARTBEAT, json=agents[1].heartbeat("1.0")).json()["code"] == 0
    wrong = agents[1].heartbeat("1.0") | {"token": "not-the-token"}
    assert client.post(HEARTBEAT, json=wrong).json()["code"] == 3800403
    malformed = agents[0].heartbeat("1.0") | {"bk_host_id": "one"}
    assert client.post(HEARTBEAT, json=malformed).json()["code"] == 3800001
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("nodeops_heartbeats_received_total") == 2
    assert delta("nodeops_heartbeats_refused_total", reason="token") == 1
    assert delta("nodeops_heartbeats_refused_total", reason="invalid") == 1
    assert delta("nodeops_heartbeats_refused_total", reason="store") == 0
    for code, times in (("0", 2), ("3800403", 1), ("3800001", 1)):
        labels = {"route": HEARTBEAT, "method": "POST", "status": "200", "code": code}
        assert delta("nodeops_http_requests_total", **labels) == times, code


def test_metrics_are_off_without_a_token(settings, listen_socket):
    services = Services.build(settings.model_copy(update={"metrics_token": SecretStr("")}))
    server = LiveServer(services, listen_socket)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "Bearer x"}):
                answer = client.get("/metrics", headers=headers)
                unknown = client.get("/metricz", headers=headers)
                assert answer.status_code == unknown.status_code == 200
                assert answer.json()["code"] == unknown.json()["code"] == 3800404, answer.text
                assert answer.json()["result"] is False
    finally:
        server.stop()
        services.close()


@pytest.mark.parametrize(
    "header",
    [
        None,
        b"Bearer",
        b"bearer " + TOKEN.encode(),
        b"Basic " + TOKEN.encode(),
        b"Bearer " + TOKEN[:-1].encode(),
        b"Bearer " + TOKEN.encode() + b"x",
        b"Bearer  " + TOKEN.encode(),
        b"Bearer " + b"x" * 8000,
        b"Bearer " + "令牌".encode(),
        b"Bearer " + TOKEN.encode()[:-2] + "é".encode(),
        b"Bearer \xff\xfe",
    ],
    ids=[
        "missing",
        "no-token",
        "lowercase-scheme",
        "basic",
        "short",
        "long",
        "two-spaces",
        "huge",
        "non-ascii",
        "non-ascii-tail",
        "not-utf8",
    ],
)
def test_a_wrong_or_missing_token_is_refused_without_leaking_it(client, header, caplog):
    caplog.set_level(logging.DEBUG)
    headers = {} if header is None else {"Authorization": header}
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"].startswith("Bearer")
    body = answer.json()
    assert body["result"] is False and body["code"] == 3800401 and body["data"] is None
    assert "Authorization: Bearer" in body["message"]
    assert "nodeops_" not in answer.text
    assert TOKEN not in answer.text and TOKEN[:-1] not in answer.text
    assert TOKEN not in caplog.text


def test_the_right_token_reads_the_text_format(client):
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert TOKEN not in answer.text
    for name in (
        "nodeops_jobs",
        "nodeops_instances",
        "nodeops_agents",
        "nodeops_store_scrape_ok",
        "nodeops_hosts_running",
        "nodeops_http_requests_total",
        "process_cpu_seconds_total",
    ):
        assert f"\n# TYPE {name} " in answer.text, name
    assert "nodeops_queue_depth_messages" not in answer.text  # embedded mode: no broker
    assert "nodeops_workers_alive" not in answer.text
    assert "_created" not in answer.text  # no creation time beside each counter
    # POST, HEAD and a query string answer alike: /metrics is GET only
    assert client.post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).json()["code"] == 3800405


def test_unknown_paths_share_one_label_however_many(client):
    before = scrape(client)
    for n in range(40):
        assert client.get(f"/x{n}/{uuid.uuid4().hex}", params={"q": "é" * n}).json()["code"] == 3800404
    assert client.request("BREW", "/coffee").status_code in {200, 400, 405}
    after = scrape(client)
    series = {labels for name, labels in after if name == "nodeops_http_requests_total"}
    added = series - {labels for name, labels in before if name == "nodeops_http_requests_total"}
    assert all(dict(labels)["route"] in {"unmatched", "/metrics"} for labels in added), added
    assert (
        total(after, "nodeops_http_requests_total", route="unmatched", code="3800404")
        - total(before, "nodeops_http_requests_total", route="unmatched", code="3800404")
        == 40
    )
    methods = {dict(labels)["method"] for labels in series}
    assert "BREW" not in methods


def test_a_client_that_stalls_or_leaves_does_not_hold_the_scrape(live_server, client):
    # a client sends half its headers and goes away; another stalls mid-request; /metrics still answers at once
    host, port = live_server.url.removeprefix("http://").split(":")
    gone = socket.create_connection((host, int(port)))
    gone.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
    gone.close()
    stalled = socket.create_connection((host, int(port)))
    stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    try:
        assert "nodeops_http_requests_total" in names(scrape(client))
    finally:
        stalled.close()


def test_a_store_that_fails_leaves_its_gauges_out_and_says_so(services, client):
    with services.db.session() as session:  # the store's tables are gone: every grouped count fails
        session.execute(sa.text("DROP TABLE instance_records" + (" CASCADE" if not services.db.is_sqlite else "")))
    samples = scrape(client)
    assert value(samples, "nodeops_store_scrape_ok") == 0
    assert not any(name == "nodeops_jobs" for name, _labels in samples)
    assert "nodeops_http_requests_total" in names(samples)  # the process's own figures are still answered
    assert json.dumps(list(map(str, samples)))  # a scrape that parsed
