"""The proxy job types over the API: every bad field of a proxy or install channel request named at once,
business rights, node types checked by operate_job, and proxy jobs listed, filtered and described like the others.
(Proxies and P-Agents at work: tests/engine/test_proxy_jobs.py, tests/network/test_cloud_area_installs.py.)"""

from __future__ import annotations

from typing import Any

from nodeops.store.models import CloudArea
from tests.support.jobs import ESB_JOB
from tests.support.subscriptions import BACKEND, INVENTORY, topology, wait_result

INSTALL = f"{ESB_JOB}/install/"
OPERATE = f"{ESB_JOB}/operate/"
JOB_LIST = f"{ESB_JOB}/job_list/"
UNREACHABLE = "127.0.10.250"  # nothing listens there: a job on it fails at once
PASSWORD = "proxy-pw-never-shown-4"


def host(**changes: Any) -> dict[str, Any]:
    return {
        "bk_biz_id": 2,
        "bk_cloud_id": 1,
        "inner_ip": UNREACHABLE,
        "outer_ip": UNREACHABLE,
        "account": "nobody",
        "password": PASSWORD,
        **changes,
    }


def add_area(services, bk_cloud_id: int = 1) -> None:
    with services.db.session() as session:
        session.add(CloudArea(bk_cloud_id=bk_cloud_id, bk_cloud_name=f"area-{bk_cloud_id}", creator=[]))


def test_bad_proxy_and_channel_fields_are_each_named_and_nothing_is_created(api, services):
    huge = "1" * 100_000
    bad = [
        host(outer_ip="not-an-ip"),
        host(inner_ip="127.0.10.251", outer_ip=huge),
        host(inner_ip="127.0.10.252", login_ip="\uff11\uff12\uff17.\uff10.\uff10.\uff11"),  # full-width digits
        host(inner_ip="127.0.10.253", install_channel_id=-2),
        host(inner_ip="127.0.10.254", install_channel_id="通道"),
        host(inner_ip="127.0.10.249", install_channel_id=2**40),
    ]
    answer = api.error(INSTALL, {"job_type": "REPLACE_PROXY", "hosts": bad, "replace_host_id": "x"}, 3800001)
    message = answer["message"]
    for field in (
        "hosts[0].outer_ip: 'not-an-ip' is not an IPv4 address",
        "hosts[1].outer_ip: '1111",
        "hosts[2].login_ip:",
        "hosts[3].install_channel_id",
        "hosts[4].install_channel_id",
        "hosts[5].install_channel_id",
        "replace_host_id",
    ):
        assert field in message, (field, message)
    assert len(message) < 2000 and PASSWORD not in message
    answer = api.error(INSTALL, {"job_type": "INSTALL_PROXY", "hosts": [host(outer_ip=None)]}, 3800001)
    assert "hosts[0].outer_ip: Proxy 操作的请求参数 outer_ip 和 outer_ipv6 不能同时为空" in answer["message"]
    answer = api.error(INSTALL, {"job_type": "REPLACE_PROXY", "hosts": [host()]}, 3800001)
    assert answer["message"].startswith("replace_host_id: 替换PROXY必须填写replace_host_id"), answer
    with services.db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM jobs").scalar() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM hosts").scalar() == 0


def test_a_proxy_install_needs_the_right_on_its_business(api, services):
    add_area(services)
    answer = api.as_user("outsider").error(INSTALL, {"job_type": "INSTALL_PROXY", "hosts": [host()]}, 9900403)
    assert answer["data"]["permission"]["action"] == "agent_operate"
    answer = api.as_user("outsider").error(
        INSTALL, {"job_type": "INSTALL_PROXY", "hosts": [host(bk_biz_id=3, bk_cloud_id=0)]}, 3801006
    )
    assert f"{UNREACHABLE} 是「直连区域」，不可以安装PROXY" in answer["message"]


def test_proxy_jobs_are_listed_described_and_their_hosts_kept_to_proxy_job_types(api, services):
    add_area(services)
    started = api.ok(INSTALL, {"job_type": "INSTALL_PROXY", "hosts": [host()]})
    assert started["ip_filter"] == []
    done = api.wait(started["job_id"])
    assert done["status"] == "FAILED" and done["job_type_display"] == "安装 Proxy", done
    assert done["meta"]["step_type"] == "PROXY" and done["meta"]["step_type_display"] == "Proxy"
    proxy_id = done["list"][0]["bk_host_id"]
    steps = api.log(started["job_id"], proxy_id)
    assert steps[5]["step"] == "查询Proxy状态" and steps[5]["status"] == "PENDING"
    assert f"cannot reach {UNREACHABLE}:22" in steps[4]["log"], steps[4]

    refused = api.error(OPERATE, {"job_type": "UPGRADE_AGENT", "bk_host_id": [proxy_id]}, 3801018)
    (entry,) = refused["data"]["ip_filter"]
    assert entry["exception"] == "node_type" and "UPGRADE_PROXY" in entry["msg"], entry

    replaced = api.ok(
        INSTALL,
        {"job_type": "REPLACE_PROXY", "replace_host_id": proxy_id, "hosts": [host(inner_ip="127.0.10.249")]},
    )
    described = api.wait(replaced["job_id"])
    assert described["job_type_display"] == "替换 Proxy" and described["meta"]["op_type_display"] == "替换"
    uninstall = api.ok(OPERATE, {"job_type": "UNINSTALL_PROXY", "bk_host_id": [proxy_id]})
    api.wait(uninstall["job_id"])

    listed = api.ok(JOB_LIST, {"job_type": ["INSTALL_PROXY", "REPLACE_PROXY"], "page": 1, "pagesize": 10})
    assert sorted(row["job_type"] for row in listed["list"]) == ["INSTALL_PROXY", "REPLACE_PROXY"]
    answer = api.error(JOB_LIST, {"job_type": ["INSTALL_PLUGIN"]}, 3800001)
    assert "UNINSTALL_PROXY" in answer["message"]
    with services.db.engine.connect() as conn:
        kinds = dict(conn.exec_driver_sql("SELECT inner_ip, node_type FROM hosts").all())
    assert kinds == {UNREACHABLE: "PROXY", "127.0.10.249": "PROXY"}


def test_a_subscription_runs_a_proxy_action_and_makes_its_hosts_proxies(api, services, tmp_path):
    local = {
        "bk_biz_id": 2,
        "inner_ip": "127.0.20.31",
        "transport": "local",
        "setup_path": str(tmp_path / "host31" / "nodeops-agent"),
        "modules": [100],
    }
    api.ok(f"{INVENTORY}/import/", {"inventory": {"topology": topology(2), "hosts": [local]}})
    steps = [{"id": "agent", "type": "AGENT", "config": {"job_type": "RELOAD_PROXY"}, "params": {}}]
    scope = {"object_type": "HOST", "node_type": "TOPO", "nodes": [{"bk_obj_id": "module", "bk_inst_id": 100}]}
    subscription_id = api.ok(f"{BACKEND}/create/", {"scope": scope, "steps": steps})["subscription_id"]
    api.ok(f"{BACKEND}/run/", {"subscription_id": subscription_id})
    (row,) = wait_result(api, subscription_id)["list"]
    query = {"subscription_id": subscription_id, "instance_id": row["instance_id"]}
    sub_steps = api.ok(f"{BACKEND}/task_result_detail/", query)["steps"][0]["target_hosts"][0]["sub_steps"]
    assert [s["node_name"] for s in sub_steps][1:-1] == [
        "检查Agent状态",
        "渲染并下发Agent配置",
        "重载Agent配置",
        "查询Agent状态",
    ]
    assert row["status"] == "FAILED"  # no agent runs there to reload
    with services.db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT node_type FROM hosts").scalar() == "PROXY"
