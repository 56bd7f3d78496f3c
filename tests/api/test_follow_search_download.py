"""Server-Sent Events (resume with Last-Event-ID), search, download and archive, batch, the step cap and ANSI."""

from __future__ import annotations

import io
import re
import tarfile
import threading
import time

import httpx
import orjson

from nodeops.domain.status import Status
from tests.support.factories import make_seed_job
from tests.support.logs import append, error, finish, ok, running_job, set_step


def events(response: httpx.Response, limit: int | None = None) -> list[dict]:
    """Parse SSE events (comments skipped) until the stream ends or ``limit`` events were read."""
    found: list[dict] = []
    current: dict = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if current:
                current["data"] = orjson.loads(current["data"])
                found.append(current)
                current = {}
                if limit is not None and len(found) >= limit:
                    break
            continue
        name, _, value = line.partition(": ")
        current[name] = value
    return found


def test_stream_resumes_after_the_last_event_id_without_gap_or_duplicate(live_server, services, auth):
    job = running_job(services)
    for n in range(3):
        append(services, job.record_id, 0, [f"first {n}.{k}" for k in range(2)])
    url = f"{live_server.url}/api/job/{job.job_id}/log/stream/"
    params = {**auth, "instance_id": job.instance_id}
    with httpx.Client(timeout=30) as http:
        with http.stream("GET", url, params=params) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            first = events(response, limit=5 + 4)  # 5 step events, then 4 of the 6 lines
        steps = [e for e in first if e["event"] == "step"]
        assert [e["data"]["step_index"] for e in steps] == [0, 1, 2, 3, 4]
        assert steps[0]["data"]["status"] == "RUNNING" and "log" not in steps[0]["data"]
        lines = [e for e in first if e["event"] == "line"]
        assert [e["data"]["text"] for e in lines] == ["first 0.0", "first 0.1", "first 1.0", "first 1.1"]
        assert lines[0]["data"]["step"] == "更新任务状态"

        def write_more() -> None:
            time.sleep(0.3)
            set_step(services, job.record_id, 0, Status.SUCCESS)
            set_step(services, job.record_id, 1, Status.RUNNING)
            append(services, job.record_id, 1, ["second 0", "second 1"])
            set_step(services, job.record_id, 1, Status.SUCCESS)
            finish(services, job.record_id)

        writer = threading.Thread(target=write_more)
        writer.start()
        headers = {"Last-Event-ID": lines[-1]["id"]}
        with http.stream("GET", url, params=params, headers=headers) as response:
            rest = events(response)
        writer.join()
    texts = [e["data"]["text"] for e in rest if e["event"] == "line"]
    assert texts == ["first 2.0", "first 2.1", "second 0", "second 1"]
    assert [e["data"]["step_index"] for e in rest if e["event"] == "line"] == [0, 0, 1, 1]
    assert rest[-1] == {"event": "end", "data": {"status": "SUCCESS"}}
    assert all("id" in e for e in rest if e["event"] == "line")


def test_job_events_report_instances_and_the_job_then_end(live_server, services, auth):
    job = running_job(services)
    url = f"{live_server.url}/api/job/{job.job_id}/events/"

    def later() -> None:
        time.sleep(3)  # well after the stream's first poll, even on a loaded machine
        set_step(services, job.record_id, 0, Status.FAILED)
        finish(services, job.record_id, Status.FAILED)
        from nodeops.store import pipelines

        with services.db.session() as session:
            pipelines.refresh_job(session, job_id=job.job_id)

    writer = threading.Thread(target=later)
    writer.start()
    with httpx.Client(timeout=30) as http, http.stream("GET", url, params=auth) as response:
        found = events(response)
    writer.join()
    instances = [e for e in found if e["event"] == "instance"]
    assert instances[0]["data"] == {
        "instance_id": job.instance_id,
        "bk_host_id": 1,
        "ip": "127.0.0.1",
        "status": "RUNNING",
        "step": "更新任务状态",
        "attempt": 1,
    }
    assert instances[-1]["data"]["status"] == "FAILED"
    assert found[-1]["event"] == "end" and found[-1]["data"]["status"] == "FAILED"
    assert any(e["event"] == "job" for e in found)
    resumed_id = instances[-1]["id"]
    with httpx.Client(timeout=30) as http:
        again = events(http.get(url, params=auth, headers={"Last-Event-ID": resumed_id}))
    assert [e["event"] for e in again] == ["job", "end"]


def test_streams_answer_errors_in_the_envelope_before_the_first_byte(client, services, auth):
    job = make_seed_job(services)
    error(client.get(f"/api/job/{job.job_id}/log/stream/", params=auth), 3800001, "instance_id")
    error(client.get("/api/job/99/events/", params=auth), 3801012)
    bad = client.get(
        f"/api/job/{job.job_id}/log/stream/", params={**auth, "instance_id": 1}, headers={"Last-Event-ID": "x"}
    )
    error(bad, 3800001, "cursor")


def test_search_across_a_job_finds_lines_with_spans_levels_and_pages(client, services, auth):
    job = running_job(services)
    other = running_job(services, bk_host_id=2, ip="127.0.0.2")
    assert other.job_id != job.job_id
    append(services, job.record_id, 0, ["[2021-09-16 15:06:04 INFO] Start", "[2021-09-16 15:06:05 ERROR] disk FULL"])
    append(services, job.record_id, 2, ["[2021-09-16 15:06:06 INFO] \x1b[31mdisk\x1b[0m ok", "plain disk line"])
    url = f"/api/job/{job.job_id}/log/search/"
    found = ok(client.get(url, params={**auth, "q": "DISK"}))
    assert found["total"] == 3 and found["complete"] is True and found["instances_searched"] == 1
    first = found["list"][0]
    assert first == {
        "instance_id": job.instance_id,
        "bk_host_id": 1,
        "ip": "127.0.0.1",
        "attempt": 1,
        "step_index": 0,
        "step": "更新任务状态",
        "line_no": 2,
        "text": "[2021-09-16 15:06:05 ERROR] disk FULL",
        "level": "ERROR",
        "spans": [[28, 32]],
    }
    assert found["list"][1]["text"] == "[2021-09-16 15:06:06 INFO] disk ok"
    assert found["list"][2]["level"] is None
    assert ok(client.get(url, params={**auth, "q": "DISK", "case": "true"}))["total"] == 0
    assert ok(client.get(url, params={**auth, "q": "disk", "level": "error"}))["total"] == 1
    assert ok(client.get(url, params={**auth, "q": "disk", "step": 2}))["total"] == 2
    assert ok(client.get(url, params={**auth, "q": "disk", "step": "更新任务状态"}))["total"] == 1
    regex = ok(client.get(url, params={**auth, "q": r"d\w+k (F|o)", "regex": "true"}))
    assert [item["spans"] for item in regex["list"]] == [[[28, 34]], [[27, 33]]]
    assert ok(client.get(url, params={**auth, "q": r"d\w+k (F|o)", "regex": " Yes "})) == regex
    assert ok(client.get(url, params={**auth, "q": "DISK", "case": "no", "regex": ""}))["total"] == 3
    error(client.get(url, params={**auth, "q": "disk", "regex": "maybe", "case": "\uff12"}), 3800001, "regex", "case")
    page = ok(client.get(url, params={**auth, "q": "disk", "page": 2, "pagesize": 2}))
    assert page["total"] == 3 and len(page["list"]) == 1 and page["list"][0]["text"] == "plain disk line"
    one = ok(client.get(url, params={**auth, "q": "disk", "instance_id": job.instance_id}))
    assert one["total"] == 3
    services.reading.search_budget_s = 0  # out of time before the first chunk: what was found, marked so
    stopped = ok(client.get(url, params={**auth, "q": "disk"}))
    assert stopped == {"total": 0, "list": [], "complete": False, "instances_searched": 0}
    services.reading.search_budget_s = 10
    error(client.get(url, params={**auth, "q": "(", "regex": "true"}), 3800001, "q", "regular expression")
    error(client.get(url, params={**auth, "q": "(?<=disk) ok", "regex": "true"}), 3800001, "q", "lookbehind")
    error(client.get(url, params={**auth, "q": "x" * 257}), 3800001, "256")
    error(
        client.get(url, params={**auth, "q": "", "level": "LOUD", "pagesize": 501}), 3800001, "q", "level", "pagesize"
    )


def test_download_keeps_ansi_and_archive_holds_one_file_per_instance(client, services, auth):
    job = running_job(services)
    append(services, job.record_id, 0, ["\x1b[32mgreen\x1b[0m", "文字"])
    append(services, job.record_id, 0, ["more"])
    response = client.get(f"/api/job/{job.job_id}/log/download/", params={**auth, "instance_id": job.instance_id})
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert "attachment" in response.headers["content-disposition"]
    text = response.text
    assert text.startswith("==> 更新任务状态 [RUNNING] 2021-09-16 15:06:04 - -\n\x1b[32mgreen\x1b[0m\n文字\nmore\n==> ")
    assert text.count("==> ") == 5
    archive = client.get(f"/api/job/{job.job_id}/log/archive/", params=auth)
    assert archive.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        names = tar.getnames()
        member = tar.extractfile(f"job-{job.job_id}/127.0.0.1-1.log")
        assert member is not None
        assert member.read().decode() == text
    assert names == [f"job-{job.job_id}/127.0.0.1-1.log"]
    error(client.get(f"/api/job/{job.job_id}/log/download/", params={**auth, "instance_id": 9}), 3800007)


def test_download_and_archive_keep_colours_and_drop_every_other_terminal_control(client, services, auth):
    job = running_job(services)
    append(
        services,
        job.record_id,
        0,
        [
            "\x1b]0;owned title\x07\x1b[31mred\x1b[0m",  # a window title (OSC ended by BEL), then a colour
            "\x1b]8;;http://127.0.0.1/x\x1b\\link\x1b]8;;\x1b\\ \x1b[2J\x1b[1;1Hcleared\x1bc",  # link, erase, reset
            "bell\x07 back\x08space hidden\rshown \x9b2J",  # lone controls and an 8-bit CSI
        ],
    )
    append(services, job.record_id, 1, ["\x1b[1mbold\x1b[0m\x1b[5A up"])
    response = client.get(f"/api/job/{job.job_id}/log/download/", params={**auth, "instance_id": job.instance_id})
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    text = response.text
    lines = text.split("\n")
    assert lines[1:4] == [
        "\x1b[31mred\x1b[0m",
        "link cleared",
        "bell backspace hiddenshown ",
    ]
    assert lines[5] == "\x1b[1mbold\x1b[0m up"
    without_colours = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", without_colours), without_colours

    archive = client.get(f"/api/job/{job.job_id}/log/archive/", params=auth)
    assert archive.headers["cache-control"] == "no-store"
    assert archive.headers["x-content-type-options"] == "nosniff"
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        member = tar.getmember(f"job-{job.job_id}/127.0.0.1-1.log")
        extracted = tar.extractfile(member)
        assert extracted is not None
        # the same text, its size announced exactly: nothing padded where controls were dropped
        assert extracted.read().decode() == text and member.size == len(text.encode())


def test_batch_answers_steps_or_last_lines_in_the_order_asked(client, services, auth):
    job = running_job(services)
    append(services, job.record_id, 0, [f"line {n}" for n in range(5)])
    append(services, job.record_id, 1, ["\x1b[1mlast\x1b[0m"])
    url = f"/api/job/{job.job_id}/log/batch/"
    data = ok(client.post(url, json={**auth, "instance_id_list": [job.instance_id, 1]}))
    assert [item["instance_id"] for item in data] == [job.instance_id, job.instance_id]
    assert data[0]["status"] == "RUNNING" and len(data[0]["steps"]) == 5
    assert data[0]["steps"][1]["log"] == "last"
    tail = ok(client.post(url, json={**auth, "instance_id_list": [job.instance_id], "tail": 3}))
    assert tail[0]["lines"] == [
        {"step_index": 0, "step": "更新任务状态", "text": "line 3"},
        {"step_index": 0, "step": "更新任务状态", "text": "line 4"},
        {"step_index": 1, "step": "批量下发升级包", "text": "last"},
    ]
    error(
        client.post(url, json={**auth, "instance_id_list": [1, 7, 8]}),
        3800007,
        "host|instance|host|7",
        "host|instance|host|8",
    )
    error(client.post(url, json={**auth, "instance_id_list": list(range(1, 502))}), 3800001, "500")
    budget = len(orjson.dumps(data[0]["steps"])) * 5 // 2
    services.reading.batch_max_bytes = budget  # two instances' steps fit, not three
    assert len(ok(client.post(url, json={**auth, "instance_id_list": [1, 1]}))) == 2
    error(
        client.post(url, json={**auth, "instance_id_list": [1, 1, 1]}),
        3800001,
        "instance_id_list",
        f"the steps of these 3 instances come to more than {budget:,} bytes (the first 2 fit)",
        "add `tail`",
    )
    assert len(ok(client.post(url, json={**auth, "instance_id_list": [1, 1, 1], "tail": 3}))) == 3
    error(client.post(url, json={**auth, "instance_id_list": [], "tail": 0}), 3800001, "instance_id_list", "tail")


def test_a_long_step_is_capped_at_a_line_boundary_with_a_marker_and_ansi_stripped(live_server, services, auth):
    services.logs.renderer.step_max_bytes = 10_000  # as NODEOPS_LOG_STEP_MAX_BYTES=10000
    job = running_job(services)
    lines = [f"\x1b[33m[2021-09-16 15:06:04 INFO]\x1b[0m line {n:05d}" for n in range(2000)]
    for start in range(0, 2000, 100):
        append(services, job.record_id, 0, lines[start : start + 100])
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        steps = ok(client.get(f"/api/job/{job.job_id}/log/", params={**auth, "instance_id": 1}))
    shown = steps[0]["log"].split("\n")
    marker = shown.pop()
    assert "\x1b" not in steps[0]["log"]
    assert shown == [line.replace("\x1b[33m", "").replace("\x1b[0m", "") for line in lines[: len(shown)]]
    kept = "\n".join(lines[: len(shown)])
    assert len(kept.encode()) <= 10_000 < len((kept + "\n" + lines[len(shown)]).encode())
    left = len("\n".join(lines).encode()) - len(kept.encode()) - 1
    assert marker == (
        f"[nodeops] … {left} more bytes of this step not shown; read them with "
        f"GET /api/job/{job.job_id}/log/tail/?instance_id=host%7Cinstance%7Chost%7C1&attempt=1 "
        "(follow its cursor) or download the log"
    )
