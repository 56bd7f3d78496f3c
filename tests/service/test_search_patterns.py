"""Search patterns run by RE2, in time linear in each line and never on the event loop: patterns that backtrack
without end in a backtracking engine answer at once, /healthz stays quick while ten of them are in flight,
what RE2 cannot do is refused with 3800001, and case and non-ASCII text keep working."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import httpx

from tests.support.logs import append, error, ok, running_job

A34 = "a" * 34
ORDINARY = "[2021-09-16 15:06:05 INFO] the agent took 1 s to stop"
QUICK_S = 2.0  # a search of three lines; a backtracking engine took 7 s for (a|aa)*c on A34 alone

# Ten connections, each sending its next search as soon as the last one answered, for ``seconds``: ten searches
# are in flight all along. A process of its own, so its work does not compete with the server for the GIL.
LOAD = """
import asyncio, json, sys, time
import httpx

url, params, patterns, seconds = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])

async def connection(n, end, answers):
    async with httpx.AsyncClient(timeout=120) as http:
        while time.monotonic() < end:
            q = patterns[n % len(patterns)]
            body = (await http.get(url, params={**params, "q": q, "regex": "true"})).json()
            answers.append([q, body["code"], (body["data"] or {}).get("total")])

async def main():
    answers = []
    print("started", flush=True)
    end = time.monotonic() + seconds
    await asyncio.gather(*(connection(n, end, answers) for n in range(10)))
    print(json.dumps(answers), flush=True)

asyncio.run(main())
"""


def _timed(client: httpx.Client, url: str, params: dict[str, str]) -> tuple[dict, float]:
    started = time.monotonic()
    data = ok(client.get(url, params=params))
    return data, time.monotonic() - started


def test_patterns_that_backtrack_without_end_answer_at_once_and_right(client, services, auth):
    job = running_job(services)
    append(services, job.record_id, 0, [A34, ORDINARY, A34 + "c"])
    url = f"/api/job/{job.job_id}/log/search/"

    found, took = _timed(client, url, {**auth, "q": "(a|aa)*c", "regex": "true"})
    assert took < QUICK_S, f"(a|aa)*c on a line of 34 a's took {took:.2f} s"
    assert found["total"] == 1 and found["complete"] is True
    assert [(hit["line_no"], hit["spans"]) for hit in found["list"]] == [(3, [[0, 35]])]

    found, took = _timed(client, url, {**auth, "q": "(.|..)*QZ", "regex": "true"})
    assert took < QUICK_S, f"(.|..)*QZ took {took:.2f} s"
    assert found == {"total": 0, "list": [], "complete": True, "instances_searched": 1}

    found, took = _timed(client, url, {**auth, "q": "(.|..)*stop", "regex": "true"})
    assert took < QUICK_S
    assert [(hit["line_no"], hit["spans"]) for hit in found["list"]] == [(2, [[0, len(ORDINARY)]])]

    found, took = _timed(client, url, {**auth, "q": "(a+)+$", "regex": "true"})  # refused by the old guard
    assert took < QUICK_S
    assert [hit["line_no"] for hit in found["list"]] == [1]


def test_healthz_answers_quickly_while_ten_such_searches_are_in_flight(live_server, services, auth):
    job = running_job(services)
    append(services, job.record_id, 0, [A34, A34 + "c"])
    url = f"{live_server.url}/api/job/{job.job_id}/log/search/"
    patterns = ["(a|aa)*c", "(.|..)*QZ"]
    load = subprocess.Popen(
        [sys.executable, "-c", LOAD, url, json.dumps(auth), json.dumps(patterns), "4"],
        stdout=subprocess.PIPE,
        text=True,
    )
    latencies: list[float] = []
    try:
        assert load.stdout is not None and load.stdout.readline().strip() == "started"
        with httpx.Client(base_url=live_server.url, timeout=30) as http:
            time.sleep(0.5)  # the ten connections are open and searching
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                started = time.monotonic()
                assert http.get("/healthz").json()["data"] == {"status": "ok"}
                latencies.append(time.monotonic() - started)
                time.sleep(0.05)
        out, _ = load.communicate(timeout=120)
    finally:
        load.kill()
        load.wait()
    answers = json.loads(out)
    # searches were answered all along, and right: one line ends with c, none holds QZ
    assert len(answers) >= 20, answers
    assert all(code == 0 and total == (1 if q == "(a|aa)*c" else 0) for q, code, total in answers), answers
    assert {q for q, _code, _total in answers} == set(patterns)
    # the requirement is 100 ms; the worst single answer gets room for a busy shared machine
    assert statistics.median(latencies) < 0.1, latencies
    assert max(latencies) < 0.5, latencies


def test_what_re2_cannot_do_is_refused_with_a_reason(client, services, auth):
    job = running_job(services)
    append(services, job.record_id, 0, ["disk ok"])
    url = f"/api/job/{job.job_id}/log/search/"
    for q, reason in [
        ("disk(?= ok)", "lookahead"),
        ("disk(?! ok)", "lookahead"),
        ("(?<=disk) ok", "lookbehind"),
        (r"(d)isk \1", "backreferences"),
        ("(?P<d>d)isk (?P=d)", "backreferences"),
        (r"ok\Z", r"\z"),
        (r"\pL{1000}", "1024 KiB"),
    ]:
        body = error(client.get(url, params={**auth, "q": q, "regex": "true"}), 3800001, "q", reason, "RE2")
        assert body["data"] is None
    # as plain text, each of them is only text to find
    assert ok(client.get(url, params={**auth, "q": "disk(?= ok)"}))["total"] == 0


def test_case_and_non_ascii_patterns_match(client, services, auth):
    job = running_job(services)
    lines = ["[2021-09-16 15:06:05 ERROR] 执行升级脚本 失败: Disk FULL", "[2021-09-16 15:06:06 INFO] disk ok"]
    append(services, job.record_id, 0, lines)
    url = f"/api/job/{job.job_id}/log/search/"

    def spans(**params: str) -> list[tuple[int, list[list[int]]]]:
        found = ok(client.get(url, params={**auth, **params}))
        return [(hit["line_no"], hit["spans"]) for hit in found["list"]]

    disk = [(1, [[39, 48]]), (2, [[27, 34]])]  # "Disk FULL", "disk ok"
    assert lines[0][39:48] == "Disk FULL" and lines[1][27:34] == "disk ok"
    assert spans(q=r"DISK \w+", regex="true") == disk  # insensitive by default
    assert spans(q=r"DISK \w+", regex="true", case="true") == []
    assert spans(q=r"(?i)DISK \w+", regex="true", case="true") == disk
    assert spans(q="disk", case="true") == [(2, [[27, 31]])]
    assert lines[0][30:37] == "升级脚本 失败"
    assert spans(q="升级.*失败", regex="true") == [(1, [[30, 37]])]  # character offsets, not bytes
    assert spans(q="失败") == [(1, [[35, 37]])]
    assert spans(q=r"\p{Han}+", regex="true") == [(1, [[28, 34], [35, 37]])]
