"""Cursors: the tail answer at the log API's three addresses and at /log/tail/, exact across steps and while
a writer appends, paging with max_bytes, and its validation."""

from __future__ import annotations

import threading

import pytest

from nodeops.domain.status import Status
from tests.support.factories import make_seed_job
from tests.support.logs import STEPS, append, error, finish, ok, running_job, set_step

ESB = "/api/c/compapi/v2/nodeman/api/job/log/"


def tail(client, auth, job, cursor="", address="rest", **extra):
    params = {**auth, "instance_id": job.instance_id, "cursor": cursor, **extra}
    if address == "rest":
        return client.get(f"/api/job/{job.job_id}/log/tail/", params=params)
    if address == "esb":
        return client.get(ESB, params={**params, "job_id": job.job_id})
    if address == "esb_post":
        return client.post(ESB, json={**params, "job_id": job.job_id})
    if address == "apigw":
        return client.get(f"/api/bk-nodeman/prod/api/job/{job.job_id}/log/", params=params)
    return client.get(f"/api/job/{job.job_id}/log/", params=params)


def follow(client, auth, job, cursor="", **extra):
    """Tail until nothing new comes: every (step_index, line) read, the last answer."""
    lines: list[tuple[int, str]] = []
    while True:
        data = ok(tail(client, auth, job, cursor, **extra))
        for index, step in enumerate(data["steps"]):
            if step["log"]:
                lines.extend((index, line) for line in step["log"].split("\n"))
        if data["cursor"] == cursor:
            return lines, data
        cursor = data["cursor"]


@pytest.mark.parametrize("address", ["rest", "esb", "esb_post", "nodeman", "apigw"])
def test_an_empty_cursor_answers_the_whole_log_as_a_tail_answer(client, services, auth, address):
    job = make_seed_job(services)
    data = ok(tail(client, auth, job, address=address))
    assert set(data) == {"instance_id", "attempt", "status", "finished", "cursor", "steps"}
    assert data["instance_id"] == job.instance_id and data["attempt"] == 1
    assert data["status"] == "SUCCESS" and data["finished"] is True
    assert [s["step"] for s in data["steps"]] == STEPS
    assert (
        data["steps"][2]["log"] == "[2021-09-16 15:06:39 INFO] 开始执行升级脚本\n[2021-09-16 15:06:39 INFO]..........."
    )
    assert data["steps"][2]["start_time"] == "2021-09-16 15:06:39"
    again = ok(tail(client, auth, job, data["cursor"], address=address))
    assert [s["log"] for s in again["steps"]] == [""] * 5 and again["cursor"] == data["cursor"]


def test_following_a_log_written_across_steps_has_no_gap_and_no_duplicate(client, services, auth):
    job = running_job(services)
    written: list[tuple[int, str]] = []
    cursor = ""
    seen: list[tuple[int, str]] = []
    for step in range(5):
        if step:
            set_step(services, job.record_id, step - 1, Status.SUCCESS)
        set_step(services, job.record_id, step, Status.RUNNING)
        for chunk in range(3):
            lines = [f"[2021-09-16 15:06:04 INFO] s{step} c{chunk} l{n}" for n in range(4)]
            append(services, job.record_id, step, lines)
            written.extend((step, line) for line in lines)
            got, data = follow(client, auth, job, cursor)
            seen.extend(got)
            cursor = data["cursor"]
            assert data["finished"] is False and data["status"] == "RUNNING"
    assert seen == written
    set_step(services, job.record_id, 4, Status.SUCCESS)
    finish(services, job.record_id)
    got, data = follow(client, auth, job, cursor)
    assert got == [] and data["finished"] is True and data["status"] == "SUCCESS"


def test_tailing_while_a_writer_appends_reads_every_line_once(client, services, auth):
    job = running_job(services)
    written = []
    done = threading.Event()

    def write() -> None:
        for n in range(150):
            step = n // 30
            lines = [f"line {n}.{k}" for k in range(n % 5 + 1)]
            append(services, job.record_id, step, lines)
            written.extend((step, line) for line in lines)
        set_step(services, job.record_id, 4, Status.SUCCESS)
        finish(services, job.record_id)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen, cursor = [], ""
    while True:
        data = ok(tail(client, auth, job, cursor, max_bytes=64))
        for index, step in enumerate(data["steps"]):
            if step["log"]:
                seen.extend((index, line) for line in step["log"].split("\n"))
        cursor = data["cursor"]
        if data["finished"]:
            break
    writer.join()
    assert done.is_set()
    assert seen == written


def test_max_bytes_pages_a_large_step_and_keeps_lines_whole(client, services, auth):
    job = running_job(services)
    lines = [f"[2021-09-16 15:06:04 INFO] {n:06d} " + "文" * 30 for n in range(3000)]
    for start in range(0, 3000, 1000):
        append(services, job.record_id, 0, lines[start : start + 1000])
    finish(services, job.record_id)
    pages, seen, cursor = 0, [], ""
    while True:
        data = ok(tail(client, auth, job, cursor, max_bytes=20_000))
        text = data["steps"][0]["log"]
        assert len(text.encode()) <= 20_000
        seen.extend(text.split("\n") if text else [])
        pages += 1
        cursor = data["cursor"]
        if data["finished"]:
            break
    assert seen == lines
    assert pages > 10


def test_cursor_validation_names_the_field(client, services, auth):
    job = make_seed_job(services)
    other = running_job(services, bk_host_id=2, ip="127.0.0.2")
    foreign = ok(tail(client, auth, other))["cursor"]
    error(tail(client, auth, job, foreign), 3800001, "cursor", "another instance")
    error(tail(client, auth, job, "not-a-cursor"), 3800001, "cursor")
    error(tail(client, auth, job, "", max_bytes=9 * 1024 * 1024), 3800001, "max_bytes", "8 MiB")
    error(tail(client, auth, job, "", max_bytes="x"), 3800001, "max_bytes")
    body = error(
        client.get(f"/api/job/{job.job_id}/log/tail/", params={**auth, "cursor": "1-2"}),
        3800001,
        "instance_id",
        "cursor",
    )
    assert body["data"] is None
    unauthenticated = client.get(f"/api/job/{job.job_id}/log/tail/", params={"instance_id": 1, "cursor": "zz"})
    error(unauthenticated, 1306406)


def test_without_cursor_the_log_api_answers_the_seed_list(client, services, auth):
    job = make_seed_job(services)
    data = ok(client.get(f"/api/job/{job.job_id}/log/", params={**auth, "instance_id": 1, "max_bytes": 10}))
    assert isinstance(data, list) and [s["step"] for s in data] == STEPS
