"""The API in two languages, on a real job (an install on a host of the local transport, a real server running the
engine, both databases): the log API in Chinese by default (the seed's step names) and in English when asked, by
every way of asking, through the log lane and through the ASGI path, byte for byte alike; details_job and
job_list display fields; error envelopes in English; garbage and hostile values answered in Chinese, never an
error."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from nodeops.api.fastpath.lane import LaneProtocol, LogLane
from nodeops.domain.plans import JobType, plan_steps
from tests.support.api import ESB_PATH, nodeman_path, without_request_id
from tests.support.factories import AppCredentials, make_app, make_user
from tests.support.jobs import ESB_JOB, JobApi, local_host, stop_agents
from tests.support.live_server import LiveServer

INSTALL_STEPS_ZH = [step.name for step in plan_steps(JobType.INSTALL_AGENT)]  # the seed's names, as stored
INSTALL_STEPS_EN = [
    "Update task status",
    "Register host to configuration platform",
    "Query host password",
    "Select access point",
    "Install",
    "Query Agent Status",
    "Update task status",
]
HOST1 = "host|instance|host|127.0.20.1-0-0"


def same_request_id(headers: dict[str, str] | None) -> dict[str, str]:
    """``headers`` with one fixed X-Request-Id (unless they name one), so two answers compare byte for byte."""
    return {"X-Request-Id": "language-test", **(headers or {})}


@dataclass
class Served:
    server: LiveServer
    client: httpx.Client
    app: AppCredentials
    job_id: int

    def common(self, username: str = "admin") -> dict[str, str]:
        return {"bk_app_code": self.app.code, "bk_app_secret": self.app.secret, "bk_username": username}

    @property
    def lane(self) -> LogLane:
        protocol = self.server.app.http_protocol
        assert isinstance(protocol, type) and issubclass(protocol, LaneProtocol)
        return protocol.lane

    def log_target(self, **params: object) -> str:
        query = {**self.common(), "instance_id": HOST1, **params}
        return nodeman_path(self.job_id) + "?" + urlencode(query)

    def lane_get(self, target: str, headers: dict[str, str] | None = None) -> bytes:
        """GET over real HTTP, checked to be answered by the lane."""
        before = self.lane.requests
        response = self.client.get(target, headers=same_request_id(headers))
        assert response.status_code == 200
        assert self.lane.requests == before + 1, "the lane did not answer it"
        return response.content

    def asgi_get(self, target: str, headers: dict[str, str] | None = None) -> bytes:
        """The same GET through the ASGI path (``LogFastPath``), in process."""

        async def run() -> bytes:
            transport = httpx.ASGITransport(app=self.server.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                return (await client.get(target, headers=same_request_id(headers))).content

        return asyncio.run(run())

    def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
        response = self.client.post(path, json={**self.common(), **body}, headers=headers)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


@pytest.fixture
def served(services, listen_socket, tmp_path) -> Iterator[Served]:
    """A real server running the engine, with one finished install job on a host of the local transport."""
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    make_user(services, "outsider", biz=[3])
    server = LiveServer(services, listen_socket, lifespan=True)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            api = JobApi(client, app)
            job_id = api.ok(f"{ESB_JOB}/install/", {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1)]})[
                "job_id"
            ]
            assert api.wait(job_id)["status"] == "SUCCESS"
            yield Served(server=server, client=client, app=app, job_id=job_id)
    finally:
        stop_agents(tmp_path)
        server.stop()


def steps_of(body: bytes) -> list[dict[str, Any]]:
    answer = json.loads(body)
    assert (answer["result"], answer["code"], answer["message"]) == (True, 0, "success"), answer
    data: list[dict[str, Any]] = answer["data"]
    return data


# (how it asks: query parameters, headers) -> the language the answer is in
ASKING: list[tuple[str, dict[str, str], dict[str, str], str]] = [
    ("nothing", {}, {}, "zh"),
    ("param en", {"bk_language": "en"}, {}, "en"),
    ("param en-US", {"bk_language": "en-US"}, {}, "en"),
    ("param zh-cn", {"bk_language": "zh-cn"}, {}, "zh"),
    ("param zh-hans", {"bk_language": "zh-hans"}, {}, "zh"),
    ("cookie en", {}, {"Cookie": "blueking_language=en"}, "en"),
    ("cookie en among others", {}, {"Cookie": "a=1; blueking_language=en-us; nodeops_x=2"}, "en"),
    ("cookie zh-cn", {}, {"Cookie": "blueking_language=zh-cn"}, "zh"),
    ("accept en", {}, {"Accept-Language": "en-US,en;q=0.9"}, "en"),
    ("accept q-values prefer en", {}, {"Accept-Language": "zh-CN;q=0.5, en;q=0.8"}, "en"),
    ("accept q-values prefer zh", {}, {"Accept-Language": "en;q=0.2, zh-CN"}, "zh"),
    ("accept zh browser", {}, {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}, "zh"),
    # precedence: bk_language > blueking_language > Accept-Language
    ("param zh over cookie en", {"bk_language": "zh-cn"}, {"Cookie": "blueking_language=en"}, "zh"),
    ("param en over cookie zh", {"bk_language": "en"}, {"Cookie": "blueking_language=zh-cn"}, "en"),
    ("cookie zh over accept en", {}, {"Cookie": "blueking_language=zh-cn", "Accept-Language": "en"}, "zh"),
    ("cookie en over accept zh", {}, {"Cookie": "blueking_language=en", "Accept-Language": "zh-CN"}, "en"),
    # garbage: as if not asked
    ("param garbage", {"bk_language": "klingon"}, {}, "zh"),
    ("param non-ascii", {"bk_language": "英语"}, {}, "zh"),
    ("param empty", {"bk_language": ""}, {}, "zh"),
    ("param huge", {"bk_language": "en" * 5000}, {}, "zh"),
    ("cookie garbage", {}, {"Cookie": "blueking_language=%%%"}, "zh"),
    ("accept garbage", {}, {"Accept-Language": "*;q=1, fr, en;q=abc"}, "zh"),
    ("accept huge", {}, {"Accept-Language": "fr;q=0.9," * 500 + "en"}, "zh"),
    ("param garbage falls to the cookie", {"bk_language": "xx"}, {"Cookie": "blueking_language=en"}, "en"),
]


def test_the_log_answers_in_the_language_asked_through_the_lane_and_the_asgi_path(served):
    chinese = steps_of(served.lane_get(served.log_target()))
    assert [s["step"] for s in chinese] == INSTALL_STEPS_ZH
    english_steps = [{**step, "step": name} for step, name in zip(chinese, INSTALL_STEPS_EN, strict=True)]
    for name, params, headers, language in ASKING:
        target = served.log_target(**params)
        over_lane = served.lane_get(target, headers)
        assert over_lane == served.asgi_get(target, headers), name  # both paths byte for byte alike
        # only the step names change: statuses, times and the log's text (stored as written) are the same
        assert steps_of(over_lane) == (chinese if language == "zh" else english_steps), name
    # the Chinese default is exactly the answer of a caller that asks nothing
    assert served.lane_get(served.log_target(bk_language="zh-cn")) == served.lane_get(served.log_target())


def test_the_log_at_its_esb_address_reads_bk_language_from_the_post_body_and_the_get_query(served):
    body = {"job_id": served.job_id, "instance_id": HOST1}
    english = served.post(ESB_PATH, {**body, "bk_language": "en"})
    assert [s["step"] for s in english["data"]] == INSTALL_STEPS_EN
    chinese = served.post(ESB_PATH, body)
    assert [s["step"] for s in chinese["data"]] == INSTALL_STEPS_ZH
    by_cookie = served.post(ESB_PATH, body, headers={"Cookie": "blueking_language=en"})
    assert without_request_id(by_cookie) == without_request_id(english)
    # a bk_language that is no text (a list, a number) is as if not asked
    for odd in (["en"], 1, None, {"en": True}):
        answer = served.post(ESB_PATH, {**body, "bk_language": odd})
        assert [s["step"] for s in answer["data"]] == INSTALL_STEPS_ZH, odd
    query = urlencode({**served.common(), **body, "bk_language": "en"})
    assert steps_of(served.lane_get(f"{ESB_PATH}?{query}")) == english["data"]


def test_the_tail_answer_names_its_steps_in_the_language_asked(served):
    chinese = json.loads(served.lane_get(served.log_target(cursor="")))["data"]
    english = json.loads(served.lane_get(served.log_target(cursor="", bk_language="en")))["data"]
    assert [s["step"] for s in chinese["steps"]] == INSTALL_STEPS_ZH
    assert [s["step"] for s in english["steps"]] == INSTALL_STEPS_EN
    assert [s["log"] for s in english["steps"]] == [s["log"] for s in chinese["steps"]]
    assert english["cursor"] == chinese["cursor"] and english["status"] == chinese["status"] == "SUCCESS"


def test_details_and_job_list_show_their_displays_in_the_language_asked(served):
    path = f"/api/job/{served.job_id}/details/"
    chinese = served.post(path, {"pagesize": -1})["data"]
    assert chinese["job_type_display"] == "安装 Agent"
    assert chinese["meta"]["op_type_display"] == "安装"
    row = chinese["list"][0]
    assert (row["status"], row["status_display"], row["step"], row["op_type_display"]) == (
        "SUCCESS",
        "执行成功",
        "更新任务状态",
        "安装",
    )
    for how, body, headers in [
        ("body", {"bk_language": "en"}, None),
        ("cookie", {}, {"Cookie": "blueking_language=en"}),
        ("accept-language", {}, {"Accept-Language": "en-GB,en;q=0.9,zh;q=0.1"}),
    ]:
        english = served.post(path, {"pagesize": -1, **body}, headers)["data"]
        assert english["job_type_display"] == "Install Agent", how
        assert english["meta"] == {**chinese["meta"], "op_type_display": "Install"}, how
        row = english["list"][0]
        assert (row["status"], row["status_display"], row["step"], row["op_type_display"]) == (
            "SUCCESS",  # a status never changes
            "Succeed",
            "Update task status",
            "Install",
        ), how
        assert english["status"] == chinese["status"] and english["statistics"] == chinese["statistics"]
    esb = served.post(f"{ESB_JOB}/details/", {"job_id": served.job_id, "bk_language": "en-us"})["data"]
    assert esb["job_type_display"] == "Install Agent"

    listed = served.post("/api/job/job_list/", {"job_id": [served.job_id], "bk_language": "en"})["data"]
    assert [(j["id"], j["job_type"], j["job_type_display"]) for j in listed["list"]] == [
        (served.job_id, "INSTALL_AGENT", "Install Agent")
    ]
    listed = served.post("/api/job/job_list/", {"job_id": [served.job_id], "bk_language": "garbage"})["data"]
    assert listed["list"][0]["job_type_display"] == "安装 Agent"


def test_errors_answer_in_english_when_asked_and_unchanged_otherwise(served):
    revoke = f"/api/job/{served.job_id}/revoke/"
    chinese = served.post(revoke, {})
    assert (chinese["result"], chinese["code"]) == (False, 3800016)
    assert chinese["message"].startswith("订阅[id:") and "不存在运行中的任务，请确认: job" in chinese["message"]
    english = served.post(revoke, {"bk_language": "en"})
    assert english["code"] == 3800016 and english["data"] == chinese["data"]
    assert english["message"].startswith("Subscription [id:")
    assert "has no running tasks, please confirm: job" in english["message"]
    assert english["message"].endswith("（3800016）")
    # the facts are the Chinese message's
    assert english["message"].split(": ", 1)[1] == chinese["message"].split(": ", 1)[1]

    # a user without rights is refused in the language asked, with the same code and data
    stranger = served.client.post(
        f"/api/job/{served.job_id}/details/",
        json={**served.common("outsider"), "bk_language": "en"},
        headers={"Accept-Language": "en"},
    ).json()
    assert (stranger["result"], stranger["code"]) == (False, 9900403) and "outsider" in stranger["message"]
    assert stranger["data"]["permission"]["bk_biz_ids"] == [2]

    # errors raised before any route read the request: the query string and the headers still decide
    missing = served.client.get("/api/no/such/route/", headers={"Accept-Language": "en"}).json()
    assert missing["code"] == 3800404 and missing["message"].endswith("（3800404）")

    # the log API's own errors, through the lane and the ASGI path alike
    target = nodeman_path(served.job_id) + "?" + urlencode({**served.common("outsider"), "instance_id": HOST1})
    for headers in (None, {"Cookie": "blueking_language=en"}):
        refused = served.lane_get(target, headers)
        assert refused == served.asgi_get(target, headers)
        assert json.loads(refused)["code"] == 9900403


def test_a_hostile_language_value_never_breaks_an_answer(served):
    path = f"/api/job/{served.job_id}/details/"
    for value in ("en\u0000", "zh\ud7ff", "../../etc/passwd", "e" * 100_000, "en;q=1", " "):
        answer = served.post(path, {"bk_language": value})
        # the body's text with a NUL is refused as every such text; anything else answers in Chinese
        assert answer["result"] is True or answer["code"] == 3800001, (value[:20], answer)
        if answer["result"]:
            assert answer["data"]["job_type_display"] == "安装 Agent"
    hostile_headers = {
        "Cookie": "blueking_language=" + "x" * 4000 + "; blueking_language=en",
        "Accept-Language": ",".join(["q=;;"] * 300),
    }
    answer = served.post(path, {}, hostile_headers)
    assert answer["result"] is True and answer["data"]["job_type_display"] == "安装 Agent"
    body = served.lane_get(served.log_target(), hostile_headers)
    assert [s["step"] for s in steps_of(body)] == INSTALL_STEPS_ZH


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a finished Server-Sent Events stream."""
    events = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_the_viewers_tail_and_streams_name_steps_in_the_language_asked(served):
    base = f"/api/job/{served.job_id}"
    query = {**served.common(), "instance_id": HOST1}
    for headers, names in (
        (None, INSTALL_STEPS_ZH),
        ({"Cookie": "blueking_language=en"}, INSTALL_STEPS_EN),
        ({"Accept-Language": "en-US,en;q=0.9"}, INSTALL_STEPS_EN),
    ):
        tail = served.client.get(f"{base}/log/tail/", params=query, headers=headers).json()["data"]
        assert [s["step"] for s in tail["steps"]] == names
        stream = served.client.get(f"{base}/log/stream/", params=query, headers=headers, timeout=30)
        events = sse_events(stream.text)
        assert [e["step"] for kind, e in events if kind == "step"] == names
        lines = [e for kind, e in events if kind == "line"]
        assert lines and {e["step"] for e in lines} <= set(names)
        assert events[-1] == ("end", {"status": "SUCCESS"})
        changes = sse_events(served.client.get(f"{base}/events/", params=served.common(), headers=headers).text)
        (instance,) = [e for kind, e in changes if kind == "instance"]
        assert instance["status"] == "SUCCESS" and instance["step"] == names[-1]
    tail = served.client.get(f"{base}/log/tail/", params={**query, "bk_language": "en"}).json()["data"]
    assert [s["step"] for s in tail["steps"]] == INSTALL_STEPS_EN


def test_search_and_batch_name_steps_in_the_language_asked_and_find_a_step_by_either_name(served):
    base = f"/api/job/{served.job_id}/log"
    for params, names in (({}, INSTALL_STEPS_ZH), ({"bk_language": "en"}, INSTALL_STEPS_EN)):
        found = served.client.get(f"{base}/search/", params={**served.common(), "q": "INFO", **params}).json()
        assert found["result"] is True and found["data"]["total"] > 0, found
        assert {hit["step"] for hit in found["data"]["list"]} <= set(names)
        batch = served.post(f"{base}/batch/", {"instance_id_list": [HOST1], **params})["data"]
        assert [s["step"] for s in batch[0]["steps"]] == names
        tail = served.post(f"{base}/batch/", {"instance_id_list": [HOST1], "tail": 3, **params})["data"]
        assert tail[0]["lines"] and {line["step"] for line in tail[0]["lines"]} <= set(names)
    # a step is found by its name in either language (the viewer shows the one it asked for)
    by_name = {}
    for name in ("安装", "Install"):
        answer = served.client.get(f"{base}/search/", params={**served.common(), "q": "INFO", "step": name}).json()
        assert answer["result"] is True, answer
        by_name[name] = [(hit["step_index"], hit["line_no"]) for hit in answer["data"]["list"]]
    assert by_name["安装"] and by_name["安装"] == by_name["Install"]
    assert {index for index, _line in by_name["Install"]} == {INSTALL_STEPS_EN.index("Install")}


def test_task_result_names_its_nodes_in_the_language_asked(served):
    subscription_id = served.post(f"/api/job/{served.job_id}/details/", {})["data"]["subscription_id"]
    backend = "/backend/api/subscription"
    asked = {"subscription_id": subscription_id, "need_detail": True, "page": 1, "pagesize": 10}
    results = {}
    for language, body in (("zh", {}), ("en", {"bk_language": "en"})):
        answer = served.post(f"{backend}/task_result/", {**asked, **body})
        assert answer["result"] is True, answer
        (step,) = answer["data"]["list"][0]["steps"]
        results[language] = step
        detail = served.post(
            f"{backend}/task_result_detail/", {"subscription_id": subscription_id, "instance_id": HOST1, **body}
        )
        assert detail["data"]["steps"] == answer["data"]["list"][0]["steps"]
    zh, en = results["zh"], results["en"]
    assert zh["node_name"].endswith("安装 Agent") and en["node_name"].endswith("Install Agent")
    assert [s["node_name"] for s in zh["target_hosts"][0]["sub_steps"]] == INSTALL_STEPS_ZH
    assert [s["node_name"] for s in en["target_hosts"][0]["sub_steps"]] == INSTALL_STEPS_EN
    # the logs and statuses are the same in both
    assert [(s["log"], s["status"]) for s in en["target_hosts"][0]["sub_steps"]] == [
        (s["log"], s["status"]) for s in zh["target_hosts"][0]["sub_steps"]
    ]
