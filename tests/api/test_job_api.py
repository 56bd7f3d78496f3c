"""The job APIs over real HTTP against a server running the engine, on hosts of the local transport: install
and operate at their ESB and nodeman addresses, details with filters and pages, a failing host retried and
retried from its failed step, revoke in the middle of a step, and every validation and permission error.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from nodeops.engine import packages
from nodeops.store.models import AccessPoint, Host
from tests.support.jobs import (
    ESB_JOB,
    JobApi,
    local_host,
)

INSTALL_STEPS = [
    "更新任务状态",
    "注册主机到配置平台",
    "查询主机密码",
    "选择接入点",
    "安装",
    "查询Agent状态",
    "更新任务状态",
]
HOST1 = "host|instance|host|127.0.20.1-0-0"
HOST2 = "host|instance|host|127.0.20.2-0-0"


def test_install_details_and_upgrade(api, services, tmp_path):
    no_login = {"bk_biz_id": 2, "inner_ip": "127.0.20.9", "transport": "ssh"}  # refused: no credentials
    started = api.ok(
        f"{ESB_JOB}/install/",
        {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1), local_host(tmp_path, 2), no_login]},
    )
    job_id = started["job_id"]
    assert started["job_url"].endswith(f"/#/task-list/detail/{job_id}")
    assert started["task_id_list"] and started["subscription_id"]
    assert [(h["ip"], h["status"], h["exception"]) for h in started["ip_filter"]] == [
        ("127.0.20.9", "IGNORED", "no_credentials")
    ]

    data = api.wait(job_id)
    assert data["status"] == "SUCCESS", data
    assert data["statistics"] == {
        "success_count": 2,
        "failed_count": 0,
        "pending_count": 0,
        "running_count": 0,
        "ignored_count": 1,
        "total_count": 3,
    }
    assert data["job_type"] == "INSTALL_AGENT" and data["job_type_display"] == "安装 Agent"
    assert data["meta"] == {
        "type": "AGENT",
        "step_type": "AGENT",
        "op_type": "INSTALL",
        "op_type_display": "安装",
        "step_type_display": "Agent",
    }
    assert data["created_by"] == "admin" and data["ip_filter_list"] == ["127.0.20.9"]
    assert data["total"] == 2 and data["task_id_list"] == started["task_id_list"]
    assert data["start_time"].endswith("+0800") and data["end_time"] and data["cost_time"].isdigit()
    first, second, refused = data["list"]
    assert first["instance_id"] == HOST1 and second["instance_id"] == HOST2
    assert first["ip"] == first["inner_ip"] == "127.0.20.1" and first["bk_biz_id"] == 2 and first["bk_cloud_id"] == 0
    assert (first["status"], first["status_display"], first["step"], first["attempt"]) == (
        "SUCCESS",
        "执行成功",
        "更新任务状态",
        1,
    )
    assert first["start_time"] and first["end_time"] and first["cost_time"] >= 0
    assert refused["filter_host"] is True and refused["ip"] == "127.0.20.9" and refused["status"] == "IGNORED"
    steps = api.log(job_id, HOST1)
    assert [s["step"] for s in steps] == INSTALL_STEPS and {s["status"] for s in steps} == {"SUCCESS"}, steps

    # pages, and the conditions of details (the refused host follows every page, as Node Manager)
    page = api.details(job_id, page=2, pagesize=1)
    assert page["total"] == 2 and [r.get("instance_id") for r in page["list"]] == [HOST2, None]
    api.error(f"/api/job/{job_id}/details/", {"page": 3, "pagesize": 1}, 3800001)
    host2_id = second["bk_host_id"]
    for value in (HOST2, host2_id, f"host|instance|host|{host2_id}", [HOST2]):
        found = api.details(job_id, conditions=[{"key": "instance_id", "value": value}])
        assert [r["instance_id"] for r in found["list"] if not r.get("filter_host")] == [HOST2], value
    found = api.details(job_id, conditions=[{"key": "ip", "value": "20.1"}])
    assert [r.get("instance_id") for r in found["list"]] == [HOST1, None]
    found = api.details(job_id, conditions=[{"key": "status", "value": ["FAILED"]}])
    assert found["total"] == 0 and found["list"] == []
    found = api.details(job_id, conditions=[{"key": "exclude_instance_ids", "value": [HOST1]}])
    assert found["total"] == 1 and found["list"][0]["instance_id"] == HOST2
    esb = api.ok(f"{ESB_JOB}/details/", {"job_id": job_id, "pagesize": -1})
    assert esb["list"] == api.details(job_id, pagesize=-1)["list"]

    # permission: a user with business 2 reads it; one without is refused, reading and operating
    assert api.as_user("viewer").details(job_id)["job_id"] == job_id
    refused_answer = api.as_user("outsider").error(f"/api/job/{job_id}/details/", {}, 9900403)
    assert "business 2" in refused_answer["message"] and refused_answer["data"]["permission"]["bk_biz_ids"] == [2]
    api.as_user("outsider").error("/api/job/operate/", {"job_type": "RESTART_AGENT", "bk_host_id": [1]}, 9900403)
    ssh_login = {"transport": "ssh", "account": "root", "password": "not-used"}
    answer = api.as_user("outsider").error(
        f"{ESB_JOB}/install/", {"job_type": "INSTALL_AGENT", "hosts": [{**no_login, **ssh_login}]}, 9900403
    )
    assert answer["data"]["permission"] == {"action": "agent_operate", "bk_biz_ids": [2]}
    # nor may it take a host of business 2 into its own business 3 by installing it there
    taken = {**no_login, **ssh_login, "inner_ip": "127.0.20.1", "bk_biz_id": 3}
    answer = api.as_user("outsider").error(
        f"{ESB_JOB}/install/", {"job_type": "REINSTALL_AGENT", "hosts": [taken]}, 9900403
    )
    assert "business 2" in answer["message"]
    # the local transport runs commands on the service's machine: superusers only
    answer = api.as_user("viewer").error(
        "/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 3)]}, 9900403
    )
    assert "transport 'local'" in answer["message"]

    # every host refused: no job, 3801018 with the reasons
    answer = api.error(f"{ESB_JOB}/install/", {"job_type": "INSTALL_AGENT", "hosts": [no_login]}, 3801018)
    assert answer["data"]["job_id"] == "" and answer["data"]["ip_filter"][0]["exception"] == "no_credentials"

    # operate: upgrade both hosts to a newly registered version
    packages.register(services.db, services.settings.packages_dir, "0.2.0")
    upgraded = api.ok(
        "/api/job/operate/",
        {"job_type": "UPGRADE_AGENT", "bk_host_id": [first["bk_host_id"], host2_id], "version": "0.2.0"},
    )
    assert set(upgraded) >= {"job_id", "job_url", "subscription_id", "task_id_list"}
    data = api.wait(upgraded["job_id"])
    assert data["status"] == "SUCCESS", data
    assert [r["instance_id"] for r in data["list"]] == [
        f"host|instance|host|{first['bk_host_id']}",
        f"host|instance|host|{host2_id}",
    ]
    assert data["meta"]["op_type"] == "UPGRADE" and data["job_type_display"] == "升级 Agent"
    steps = api.log(upgraded["job_id"], host2_id)
    assert "Agent 心跳正常, 版本 0.2.0" in steps[3]["log"], steps
    assert (tmp_path / "host2" / "nodeops-agent" / "VERSION").read_text().strip() == "0.2.0"
    answer = api.error(f"{ESB_JOB}/operate/", {"job_type": "RESTART_AGENT", "bk_host_id": [999]}, 3801018)
    assert answer["data"]["ip_filter"][0]["exception"] == "unknown_host"


def test_failed_host_is_retried_then_resumed_from_its_failed_step(api, services, tmp_path):
    broken = local_host(tmp_path, 2, setup_path="/proc/nodeops-x/agent")  # nothing can be created there
    started = api.ok("/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1), broken]})
    job_id = started["job_id"]
    data = api.wait(job_id)
    assert data["status"] == "PART_FAILED", data
    assert data["statistics"]["failed_count"] == 1 and data["statistics"]["success_count"] == 1
    failed = data["list"][1]
    assert (failed["instance_id"], failed["status"], failed["step"], failed["status_display"]) == (
        HOST2,
        "FAILED",
        "安装",
        "安装 失败",
    )
    steps = api.log(job_id, HOST2)
    assert [s["status"] for s in steps] == ["SUCCESS"] * 4 + ["FAILED", "PENDING", "PENDING"], steps
    assert "creating the install path failed" in steps[4]["log"] and "/proc/nodeops-x" in steps[4]["log"]

    # retry everything that failed: the same host fails again, as attempt 2; attempt 1 stays readable
    retried = api.ok(f"/api/job/{job_id}/retry/", {})
    assert retried["job_id"] == job_id and len(retried["task_id_list"]) == 2
    data = api.wait(job_id, until=lambda d: d["list"][1]["attempt"] == 2 and d["status"] not in ("PENDING", "RUNNING"))
    assert data["status"] == "PART_FAILED" and data["task_id_list"] == retried["task_id_list"]
    assert [r["attempt"] for r in data["list"][:2]] == [1, 2]
    assert api.log(job_id, HOST2, attempt=1) == steps
    again = api.log(job_id, HOST2, attempt=2)
    assert again[4]["status"] == "FAILED" and again[4]["start_time"] >= steps[4]["start_time"]

    # fix the host, then re-run it from its failed step: the steps before are kept as they ran
    with services.db.session() as session:
        session.get(Host, failed["bk_host_id"]).setup_path = str(tmp_path / "host2" / "nodeops-agent")
    resumed = api.ok(f"/api/job/{job_id}/retry_node/", {"instance_id": failed["bk_host_id"]})
    assert resumed["retry_node_name"] == "安装" and resumed["retry_node_id"].endswith("-4")
    data = api.wait(job_id, until=lambda d: d["list"][1]["attempt"] == 3 and d["status"] not in ("PENDING", "RUNNING"))
    assert data["status"] == "SUCCESS", data
    third = api.log(job_id, failed["bk_host_id"])  # the bk_host_id form finds the ip-keyed instance
    assert [s["status"] for s in third] == ["SUCCESS"] * 7, third
    for kept, before in zip(third[:4], again[:4], strict=True):
        assert (kept["start_time"], kept["finish_time"], kept["log"]) == (
            before["start_time"],
            before["finish_time"],
            before["log"],
        )
    assert "Agent 心跳正常" in third[5]["log"]

    # nothing failed any more
    answer = api.error(f"/api/job/{job_id}/retry/", {}, 3800003)
    assert "no FAILED instance" in answer["message"] and "2 SUCCESS" in answer["message"]
    api.error(f"/api/job/{job_id}/retry/", {"instance_id_list": [HOST1]}, 3800003)
    answer = api.error(f"/api/job/{job_id}/retry_node/", {"instance_id": HOST2}, 3800007)
    assert "无法获取失败任务节点" in answer["message"]
    api.error(f"/api/job/{job_id}/retry/", {"instance_id_list": ["host|instance|host|127.0.20.7-0-0"]}, 3800007)
    api.error(f"/api/job/{job_id}/revoke/", {}, 3800016)


def test_revoke_stops_running_steps_and_the_job_stays_terminated(api, services, tmp_path, silent_ap_url):
    # agents of access point 2 report where no heartbeat is taken, so 查询Agent状态 waits for one
    with services.db.session() as session:
        session.add(AccessPoint(id=2, name="silent", server_url=silent_ap_url))
    hosts = [local_host(tmp_path, 1, ap_id=2), local_host(tmp_path, 2, ap_id=2)]
    job_id = api.ok("/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": hosts})["job_id"]
    api.wait_step(job_id, HOST1, "查询Agent状态", "RUNNING")
    api.wait_step(job_id, HOST2, "查询Agent状态", "RUNNING")

    # one instance: it ends FAILED, the other keeps running
    answer = api.ok(f"/api/job/{job_id}/revoke/", {"instance_id_list": [HOST1]})
    assert answer["job_id"] == job_id and len(answer["task_id_list"]) == 1
    steps = api.log(job_id, HOST1)
    assert [s["status"] for s in steps[4:]] == ["SUCCESS", "FAILED", "PENDING"], steps
    assert "已终止" in steps[5]["log"] and steps[5]["finish_time"]
    assert api.log(job_id, HOST2)[5]["status"] == "RUNNING"
    data = api.details(job_id)
    assert data["status"] == "TERMINATED" and [r["status"] for r in data["list"]] == ["FAILED", "RUNNING"]

    # the whole job: the last instance ends too, and the job stays TERMINATED
    api.ok(f"/api/job/{job_id}/revoke/", {})
    steps = api.log(job_id, HOST2)
    assert steps[5]["status"] == "FAILED" and "已终止" in steps[5]["log"] and steps[6]["status"] == "PENDING"
    data = api.details(job_id)
    assert data["status"] == "TERMINATED" and data["end_time"], data
    assert data["statistics"]["failed_count"] == 2 and data["list"][0]["status_display"] == "查询Agent状态 失败"
    answer = api.error(f"/api/job/{job_id}/revoke/", {}, 3800016)
    assert "PENDING or RUNNING" in answer["message"]

    # a retry runs the job again; revoking it terminates it again
    retried = api.ok(f"/api/job/{job_id}/retry/", {"instance_id_list": [HOST2]})
    assert len(retried["task_id_list"]) == 2
    assert api.details(job_id)["status"] == "RUNNING"
    api.wait_step(job_id, HOST2, "查询Agent状态", "RUNNING")
    api.ok(f"/api/job/{job_id}/revoke/", {})
    data = api.details(job_id, pagesize=-1)
    assert data["status"] == "TERMINATED" and [r["attempt"] for r in data["list"]] == [1, 2]


def test_concurrent_installs_and_retries_of_one_host_start_it_once(api, services, tmp_path, silent_ap_url):
    # the agent reports where no heartbeat is taken, so the job keeps running at 查询Agent状态
    with services.db.session() as session:
        session.add(AccessPoint(id=2, name="silent", server_url=silent_ap_url))
    host = local_host(tmp_path, 3, ap_id=2)
    host3 = "host|instance|host|127.0.20.3-0-0"

    installs = at_once(api, 4, "/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": [host]})
    started = [answer["data"]["job_id"] for answer in installs if answer["result"]]
    refused = [answer for answer in installs if not answer["result"]]
    assert len(started) == 1, installs
    for answer in refused:  # the host is new in each request: registered once, then busy in the first job
        assert answer["code"] == 3801018, answer
        assert [h["exception"] for h in answer["data"]["ip_filter"]] == ["running"], answer
    job_id = started[0]
    with services.db.session() as session:
        assert session.query(Host).filter(Host.inner_ip == "127.0.20.3").count() == 1
    api.wait_step(job_id, host3, "查询Agent状态", "RUNNING")
    api.ok(f"/api/job/{job_id}/revoke/", {})

    retries = at_once(api, 4, f"/api/job/{job_id}/retry/", {})
    assert sorted(answer["code"] for answer in retries) == [0, 3800003, 3800003, 3800003], retries
    data = api.details(job_id, pagesize=-1)
    assert [r["attempt"] for r in data["list"]] == [2] and len(data["task_id_list"]) == 2, data
    api.wait_step(job_id, host3, "查询Agent状态", "RUNNING")
    api.ok(f"/api/job/{job_id}/revoke/", {})


def at_once(api, count: int, path: str, body: dict[str, object]) -> list[dict[str, object]]:
    """``count`` calls of ``path`` started together, each on its own connection; their answers."""
    barrier = threading.Barrier(count)

    def call(_n: int) -> dict[str, object]:
        with httpx.Client(base_url=api.client.base_url, timeout=30) as client:
            barrier.wait(timeout=10)
            return JobApi(client, api.app).call(path, body)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(call, range(count)))


def test_validation_and_lookup_errors_name_what_is_wrong(api, tmp_path):
    install = f"{ESB_JOB}/install/"
    answer = api.error(install, {"job_type": "UPGRADE_PROXY", "hosts": []}, 3800001)
    assert "job_type: 'UPGRADE_PROXY' must be one of INSTALL_AGENT, INSTALL_PROXY, REINSTALL_AGENT" in answer["message"]
    assert "hosts: this field is required: a non-empty list of hosts" in answer["message"]
    answer = api.error(
        install, {"job_type": "INSTALL_AGENT", "hosts": [7, {"inner_ip": "127.0.0.1", "port": 0}]}, 3800001
    )
    assert "hosts[0]: must be an object" in answer["message"]
    assert "hosts[1].bk_biz_id: this field is required" in answer["message"]
    assert "hosts[1].port: 0 is not a positive integer of at most 65535" in answer["message"]
    answer = api.error(
        install, {"job_type": "INSTALL_AGENT", "hosts": [{"bk_biz_id": 2**40, "inner_ip": "127.300.1.1"}]}, 3800001
    )
    assert "hosts[0].bk_biz_id" in answer["message"] and "hosts[0].inner_ip" in answer["message"]
    answer = api.error("/api/job/operate/", {"job_type": "RESTART_AGENT", "bk_host_id": ["x"], "version": "1"}, 3800001)
    assert "bk_host_id[0]: 'x' is not a positive integer" in answer["message"]
    assert "version: only UPGRADE_AGENT and UPGRADE_PROXY take a version" in answer["message"]
    answer = api.error("/api/job/operate/", {"job_type": "UPGRADE_AGENT", "bk_host_id": [1], "version": "9.9"}, 3800001)
    assert "version: agent version '9.9' is not registered" in answer["message"]

    details = "/api/job/1/details/"
    answer = api.error(details, {"page": 0, "pagesize": 0, "conditions": [{"key": "query", "value": 1}]}, 3800001)
    for field in ("page:", "pagesize:", "conditions[0].key: 'query' must be one of ip, instance_id, status"):
        assert field in answer["message"], answer
    answer = api.error(details, {"conditions": [{"key": "ip", "value": "1"}, "ip"]}, 3800001)
    assert "conditions[1]: must be an object" in answer["message"]
    answer = api.error(details, {"conditions": {"key": "ip"}}, 3800001)
    assert "conditions: must be a list of conditions" in answer["message"]
    answer = api.error(details, {"conditions": [{"key": "status", "value": ["DONE"]}]}, 3800001)
    assert "conditions[0].value" in answer["message"]
    answer = api.error(details, {"conditions": [{"key": "instance_id", "value": "host|x"}]}, 3800001)
    assert "conditions[0].value" in answer["message"] and "object_type|node_type|type|id" in answer["message"]
    answer = api.error(f"{ESB_JOB}/details/", {}, 3800001)
    assert "job_id: this field is required" in answer["message"]
    answer = api.error("/api/job/abc/retry/", {"instance_id_list": "x"}, 3800001)
    assert "job_id: 'abc' is not a positive integer" in answer["message"] and "instance_id_list:" in answer["message"]
    answer = api.error("/api/job/1/retry_node/", {}, 3800001)
    assert "instance_id: this field is required" in answer["message"]
    answer = api.error("/api/job/1/revoke/", {"instance_id_list": ["host|instance|host|-1"]}, 3800001)
    assert "instance_id_list[0]" in answer["message"]

    for path in ("details", "retry", "revoke"):
        answer = api.error(f"/api/job/4242/{path}/", {}, 3801012)
        assert "job 4242 does not exist" in answer["message"]
    api.error("/api/job/4242/retry_node/", {"instance_id": HOST1}, 3801012)
    api.error(f"{ESB_JOB}/details/", {"job_id": 4242}, 3801012)

    # the body: a trailing comma is tolerated, other invalid JSON is named; the ESB layer's errors first
    raw = api.client.post(
        "/api/job/4242/details/",
        content=f'{{"bk_app_code": "{api.app.code}", "bk_app_secret": "{api.app.secret}", "bk_username": "admin",}}',
        headers={"content-type": "application/json"},
    ).json()
    assert raw["code"] == 3801012, raw
    raw = api.client.post("/api/job/4242/details/", content=b"{nope", headers={"content-type": "application/json"})
    assert raw.json()["code"] == 3800001 and "body" in raw.json()["message"]
    raw = api.client.post("/api/job/4242/details/", json={"page": "x"}).json()
    assert raw["code"] == 1306406 and raw["result"] is False, raw
    common = {"bk_app_code": api.app.code, "bk_app_secret": api.app.secret, "bk_username": "admin"}
    raw = api.client.post("/api/job/4242/details/", params=common).json()  # common args in the query string
    assert raw["code"] == 3801012, raw
    header = {"X-Bkapi-Authorization": json.dumps(common)}
    raw = api.client.post("/api/job/4242/details/", json={"bk_app_secret": "wrong"}, headers=header).json()
    assert raw["code"] == 3801012, raw  # the header's fields win over the body's
    raw = api.client.get("/api/job/4242/details/").json()
    assert raw["code"] == 3800405, raw
    assert api.client.post("/api/job/4242/details", json={}).json()["code"] == 1306406  # no trailing slash
