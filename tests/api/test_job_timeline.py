"""The job timeline (GET /api/job/{job_id}/timeline/) over real HTTP against a server running the engine, on
both stores: a real job's hosts and steps agree with the log API and details_job, the chart's series counts the
hosts as they ended, pages are bounded, a stranger is refused exactly as details_job refuses, and every bad
parameter is answered in the envelope, naming the field.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from nodeops.service.job_timeline import series
from nodeops.store.job_reads import Instance
from tests.support.jobs import JobApi, local_host

STEP_FIELDS = ("step", "status", "start_time", "finish_time")


def get_timeline(api: JobApi, job_id: object, **params: object) -> dict[str, Any]:
    """The timeline's envelope, common args in the query string as a browser's GET would carry them."""
    common = {"bk_app_code": api.app.code, "bk_app_secret": api.app.secret, "bk_username": api.username}
    response = api.client.get(f"/api/job/{job_id}/timeline/", params={**common, **params})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer: dict[str, Any] = response.json()
    assert set(answer) >= {"result", "code", "message", "data"}, answer
    return answer


def timeline_ok(api: JobApi, job_id: object, **params: object) -> dict[str, Any]:
    answer = get_timeline(api, job_id, **params)
    assert answer["result"] is True and answer["code"] == 0, answer
    data: dict[str, Any] = answer["data"]
    return data


def local_time(text: str | None) -> int | None:
    """Epoch seconds of a ``YYYY-MM-DD HH:MM:SS`` in the service's zone (the tests' default: Asia/Shanghai)."""
    if text is None:
        return None
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp())


@pytest.fixture
def finished_job(api, tmp_path) -> int:
    """A real INSTALL_AGENT job on three local hosts, the second of which fails at 安装; finished."""
    broken = local_host(tmp_path, 2, setup_path="/proc/nodeops-x/agent")  # nothing can be created there
    hosts = [local_host(tmp_path, 1), broken, local_host(tmp_path, 3)]
    job_id: int = api.ok("/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": hosts})["job_id"]
    assert api.wait(job_id)["status"] == "PART_FAILED"
    return job_id


def test_timeline_of_a_real_job_agrees_with_the_log_api_and_details(api, finished_job):
    job_id = finished_job
    details = api.details(job_id, pagesize=-1)
    data = timeline_ok(api, job_id)
    assert (data["job_id"], data["job_type"], data["status"]) == (job_id, "INSTALL_AGENT", details["status"])
    assert data["statistics"] == details["statistics"]
    assert (data["start_time"], data["end_time"]) == (details["start_time"], details["end_time"])
    assert (data["total"], data["page"], data["pagesize"]) == (3, 1, 100)
    assert [h["instance_id"] for h in data["list"]] == [r["instance_id"] for r in details["list"]]
    assert [h["status"] for h in data["list"]] == ["SUCCESS", "FAILED", "SUCCESS"]
    assert [h["ip"] for h in data["list"]] == ["127.0.20.1", "127.0.20.2", "127.0.20.3"]
    for host, row in zip(data["list"], details["list"], strict=True):
        assert (host["bk_host_id"], host["attempt"]) == (row["bk_host_id"], row["attempt"])
        logged = api.log(job_id, host["instance_id"])
        assert [{k: s[k] for k in STEP_FIELDS} for s in host["steps"]] == [
            {k: s[k] for k in STEP_FIELDS} for s in logged
        ]
        assert [s["index"] for s in host["steps"]] == list(range(len(logged)))
        for step in host["steps"]:
            # the exact instants are the shown times, to the second
            for shown, exact in (("start_time", "start_ms"), ("finish_time", "finish_ms")):
                if step[shown] is None:
                    assert step[exact] is None, step
                else:
                    assert step[exact] // 1000 == local_time(step[shown]), step
            if step["finish_ms"] is not None:
                assert step["start_ms"] <= step["finish_ms"], step
    failed = data["list"][1]["steps"]
    assert [s["status"] for s in failed] == ["SUCCESS"] * 4 + ["FAILED", "PENDING", "PENDING"], failed
    assert failed[5]["start_ms"] is None and failed[5]["finish_time"] is None

    # the chart: evenly spread from the job's start to its end, ending with the job's outcome
    points = data["series"]["points"]
    assert len(points) == 60
    assert points[0]["time_ms"] == data["start_ms"] and points[-1]["time_ms"] == data["end_ms"]
    assert (points[-1]["done"], points[-1]["failed"], points[-1]["running"]) == (2, 1, 0)
    times = [p["time_ms"] for p in points]
    assert times == sorted(times)
    for before, after in itertools.pairwise(points):
        assert before["done"] <= after["done"] and before["failed"] <= after["failed"]
    assert all(0 <= p["done"] + p["failed"] + p["running"] <= 3 for p in points)
    assert data["now_ms"] >= data["end_ms"]
    few = timeline_ok(api, job_id, points=2)["series"]["points"]
    assert [(p["done"], p["failed"], p["running"]) for p in few][-1] == (2, 1, 0) and len(few) == 2


def test_timeline_pages_are_bounded_and_past_the_last_is_refused(api, finished_job):
    job_id = finished_job
    first = timeline_ok(api, job_id, pagesize=2)
    second = timeline_ok(api, job_id, pagesize="2", page="2")
    assert [len(first["list"]), len(second["list"])] == [2, 1]
    assert (first["total"], second["total"], second["page"]) == (3, 3, 2)
    everyone = [h["instance_id"] for h in timeline_ok(api, job_id, pagesize=500)["list"]]
    assert [h["instance_id"] for h in first["list"] + second["list"]] == everyone
    # the series always counts every host, whatever the page
    assert second["series"]["points"][-1] == first["series"]["points"][-1]

    # without its trailing slash, and HEAD: the same route
    common = {"bk_app_code": api.app.code, "bk_app_secret": api.app.secret, "bk_username": api.username}
    bare = api.client.get(f"/api/job/{job_id}/timeline", params={**common, "pagesize": 2}).json()
    assert bare["result"] is True and bare["data"]["list"] == first["list"]
    head = api.client.head(f"/api/job/{job_id}/timeline/", params=common)
    assert head.status_code == 200 and head.content == b""

    answer = get_timeline(api, job_id, pagesize=2, page=3)
    assert (answer["result"], answer["code"], answer["data"]) == (False, 3800001, None)
    assert "page 3 is out of range: 3 hosts make 2 page(s) of 2" in answer["message"]


def test_timeline_refuses_a_stranger_exactly_as_details_job_does(api, finished_job):
    job_id = finished_job
    outsider = api.as_user("outsider")  # business 3; the job is business 2's
    refused = get_timeline(outsider, job_id)
    details = outsider.call(f"/api/job/{job_id}/details/")
    assert refused["result"] is False and refused["code"] == 9900403
    same = ("result", "code", "message", "data")
    assert {k: refused[k] for k in same} == {k: details[k] for k in same}, (refused, details)
    assert refused["data"]["permission"]["bk_biz_ids"] == [2]
    assert "outsider" in refused["message"] and "127.0.20" not in refused["message"]

    assert timeline_ok(api.as_user("viewer"), job_id)["total"] == 3  # granted business 2

    # an unknown job and an unknown caller: details_job's answers too
    missing = get_timeline(api, 987654)
    assert missing["code"] == 3801012 and missing["code"] == api.call("/api/job/987654/details/")["code"]
    response = api.client.get(f"/api/job/{job_id}/timeline/")
    anonymous, details_anonymous = response.json(), api.client.post(f"/api/job/{job_id}/details/").json()
    assert anonymous["result"] is False and anonymous["code"] == details_anonymous["code"], anonymous
    assert anonymous["data"] is None and "list" not in response.text
    wrong_secret = api.client.get(
        f"/api/job/{job_id}/timeline/",
        params={"bk_app_code": api.app.code, "bk_app_secret": "not-it", "bk_username": "admin"},
    ).json()
    assert wrong_secret["result"] is False and "not-it" not in wrong_secret["message"]


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"page": "0"}, "page", "1"),
        ({"page": "-1"}, "page", "1"),
        ({"page": "x"}, "page", "integer"),
        ({"page": "\uff11"}, "page", "integer"),  # a full-width digit is not an ASCII one
        ({"pagesize": "501"}, "pagesize", "500"),
        ({"pagesize": "0"}, "pagesize", "500"),
        ({"pagesize": "9" * 400}, "pagesize", "500"),
        ({"points": "1"}, "points", "300"),
        ({"points": "301"}, "points", "300"),
        ({"points": "1e3"}, "points", "integer"),
    ],
)
def test_timeline_bad_parameters_answer_the_envelope_naming_the_field(api, params, field, says):
    answer = get_timeline(api, 1, **params)
    assert (answer["result"], answer["code"], answer["data"]) == (False, 3800001, None), answer
    assert field in answer["message"] and says in answer["message"], answer
    assert answer["message"].endswith("（3800001）"), answer


@pytest.mark.parametrize("job_id", ["0", "abc", "9" * 30, "%E4%BB%BB"])
def test_timeline_bad_job_id_answers_the_envelope(api, job_id):
    answer = get_timeline(api, job_id)
    assert (answer["result"], answer["code"], answer["data"]) == (False, 3800001, None), answer
    assert "job_id" in answer["message"]


def test_timeline_refuses_a_nul_and_every_bad_field_at_once(api):
    answer = get_timeline(api, 1, page="1\x00", points="0")
    assert answer["result"] is False and answer["code"] == 3800001, answer
    both = get_timeline(api, 1, page="0", pagesize="1000", points="0")
    assert all(name in both["message"] for name in ("page", "pagesize", "points")), both


# --- the series, as a pure function ----------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def instance(status: str, start_s: float | None, finish_s: float | None) -> Instance:
    def at(s: float | None) -> datetime | None:
        return None if s is None else T0 + timedelta(seconds=s)

    return Instance(
        record_id=1,
        first_record_id=1,
        task_id=1,
        instance_id="host|instance|host|1",
        bk_host_id=1,
        host_key=None,
        attempt=1,
        status=status,
        instance_info={},
        start_at=at(start_s),
        finish_at=at(finish_s),
    )


@pytest.mark.parametrize(
    ("instances", "end_s", "points", "expected"),
    [
        ([], 10, 3, [(0, 0, 0), (0, 0, 0), (0, 0, 0)]),
        # one host running from 0 to 10, then done; a finish counts at its own instant
        ([instance("SUCCESS", 0, 10)], 10, 3, [(0, 0, 1), (0, 0, 1), (1, 0, 0)]),
        # failed and terminated both count as failed; a still running host has no finish
        (
            [instance("FAILED", 1, 4), instance("TERMINATED", 2, 6), instance("RUNNING", 3, None)],
            8,
            5,
            [(0, 0, 0), (0, 0, 2), (0, 1, 2), (0, 2, 1), (0, 2, 1)],
        ),
        # never started (IGNORED, or ended before starting): never counted
        ([instance("IGNORED", None, None), instance("FAILED", None, 3)], 6, 2, [(0, 0, 0), (0, 1, 0)]),
        # a job of no length: every point at its start
        ([instance("SUCCESS", 0, 0)], 0, 2, [(1, 0, 0), (1, 0, 0)]),
    ],
)
def test_series_counts_hosts_done_failed_running_at_each_instant(instances, end_s, points, expected):
    tz = ZoneInfo("Asia/Shanghai")
    result = series(instances, start_at=T0, end_at=T0 + timedelta(seconds=end_s), points=points, tz=tz)
    assert [(p["done"], p["failed"], p["running"]) for p in result["points"]] == expected
    assert result["points"][0]["time_ms"] == int(T0.timestamp() * 1000)
    assert result["points"][-1]["time"] == (T0 + timedelta(seconds=end_s)).astimezone(tz).strftime(
        "%Y-%m-%d %H:%M:%S%z"
    )
    assert result["interval_s"] == end_s / (points - 1)


def test_timeline_is_described_in_the_openapi_schema(api):
    schema = api.client.get("/openapi.json").json()
    operation = schema["paths"]["/api/job/{job_id}/timeline/"]["get"]
    assert operation["operationId"] == "job_timeline" and "requestBody" not in operation
    described = {p["name"]: (p["in"], p["schema"]) for p in operation["parameters"]}
    assert described["job_id"][0] == "path"
    assert described["pagesize"] == ("query", described["pagesize"][1]) and described["pagesize"][1]["maximum"] == 500
    assert described["points"][1]["minimum"] == 2 and described["page"][1]["default"] == 1
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert answer == "#/components/schemas/JobTimelineResponse"
    data = schema["components"]["schemas"]["JobTimelineData"]["properties"]
    assert {"list", "series", "now_ms", "statistics"} <= set(data)
