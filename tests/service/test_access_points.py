"""Access points of install and operate jobs: an unknown ``ap_id`` is refused up front in ``ip_filter``, ``-1``
(Node Manager's 自动选择接入点) takes the default access point, and a record whose host or access point is gone
by the time it runs ends FAILED with a line saying why, so its job always reaches a final state, also through
revoke and retry.
"""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select

from nodeops.domain.plans import JobType
from nodeops.service.host_requests import parse_hosts
from nodeops.store.models import AccessPoint, Host, InstanceRecord, Job, RecordStep, StepLog
from nodeops.store.packages import DEFAULT_AP_ID
from tests.support.jobs import ESB_JOB, local_host

HOST1 = "host|instance|host|127.0.20.1-0-0"
HOST2 = "host|instance|host|127.0.20.2-0-0"
FINAL = ("SUCCESS", "FAILED", "PART_FAILED", "TERMINATED")


def add_dead_access_point(services, url: str, ap_id: int = 2) -> None:
    """An access point (``silent_ap_url``) that takes no heartbeat: 查询Agent状态 waits for one."""
    with services.db.session() as session:
        session.add(AccessPoint(id=ap_id, name="dead", server_url=url))


def drop_access_point(services, ap_id: int) -> None:
    with services.db.session() as session:
        session.execute(delete(AccessPoint).where(AccessPoint.id == ap_id))


def test_an_unknown_ap_id_refuses_the_host_in_ip_filter(api, services, tmp_path):
    hosts = [local_host(tmp_path, 1), local_host(tmp_path, 2, ap_id=2)]
    started = api.ok(f"{ESB_JOB}/install/", {"job_type": "INSTALL_AGENT", "hosts": hosts})
    [refused] = started["ip_filter"]
    assert (refused["ip"], refused["status"], refused["exception"]) == ("127.0.20.2", "IGNORED", "unknown_ap")
    assert "access point 2 does not exist" in refused["msg"] and "-1" in refused["msg"], refused
    data = api.wait(started["job_id"])
    assert data["status"] == "SUCCESS" and data["ip_filter_list"] == ["127.0.20.2"], data
    assert data["statistics"]["success_count"] == 1 and data["statistics"]["ignored_count"] == 1
    with services.db.session() as session:  # a refused host is not registered
        assert session.scalar(select(Host.bk_host_id).where(Host.inner_ip == "127.0.20.2")) is None

    # every host refused: no job, 3801018 with the reasons
    answer = api.error(
        "/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 3, ap_id=7)]}, 3801018
    )
    assert [h["exception"] for h in answer["data"]["ip_filter"]] == ["unknown_ap"], answer
    assert "access point 7 does not exist" in answer["data"]["ip_filter"][0]["msg"]


@pytest.mark.parametrize("auto", [-1, "-1"])
def test_ap_id_minus_one_installs_with_the_default_access_point(api, services, tmp_path, auto):
    started = api.ok("/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1, ap_id=auto)]})
    assert started["ip_filter"] == []
    data = api.wait(started["job_id"])
    assert data["status"] == "SUCCESS", data
    assert data["list"][0]["ap_id"] == DEFAULT_AP_ID
    with services.db.session() as session:
        assert session.scalar(select(Host.ap_id).where(Host.inner_ip == "127.0.20.1")) == DEFAULT_AP_ID


def test_a_negative_ap_id_other_than_minus_one_is_a_validation_error(api, tmp_path):
    answer = api.error(
        "/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1, ap_id=-2)]}, 3800001
    )
    assert "hosts[0].ap_id: -2 is not an integer from -1 to 2147483647" in answer["message"]


def test_a_record_whose_access_point_vanished_ends_failed_through_revoke_and_retry(
    api, services, tmp_path, silent_ap_url
):
    add_dead_access_point(services, silent_ap_url)
    hosts = [local_host(tmp_path, 1, ap_id=2), local_host(tmp_path, 2)]
    job_id = api.ok("/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": hosts})["job_id"]
    api.wait_step(job_id, HOST1, "查询Agent状态", "RUNNING")
    api.wait_step(job_id, HOST2, "查询Agent状态", "SUCCESS")

    # the access point is deleted while the job runs; revoking ends the job
    drop_access_point(services, 2)
    api.ok(f"/api/job/{job_id}/revoke/", {})
    data = api.wait(job_id)
    assert data["status"] == "TERMINATED" and [r["status"] for r in data["list"]] == ["FAILED", "SUCCESS"], data

    # a retry cannot run the host any more: its new attempt ends FAILED with the reason, and the job ends
    api.ok(f"/api/job/{job_id}/retry/", {})
    data = api.wait(job_id, until=lambda d: d["list"][0]["attempt"] == 2 and d["status"] in FINAL, timeout_s=20)
    assert data["status"] == "PART_FAILED", data
    assert data["statistics"]["failed_count"] == 1 and data["statistics"]["pending_count"] == 0
    row = data["list"][0]
    assert (row["status"], row["status_display"]) == ("FAILED", "更新任务状态 失败"), row
    steps = api.log(job_id, HOST1)
    assert steps[0]["status"] == "FAILED" and "接入点(id:2)不存在" in steps[0]["log"], steps
    assert "access point 2" in steps[0]["log"] and {s["status"] for s in steps[1:]} == {"PENDING"}
    api.error(f"/api/job/{job_id}/revoke/", {}, 3800016)  # nothing left running

    # and again, the same way
    api.ok(f"/api/job/{job_id}/retry/", {})
    data = api.wait(job_id, until=lambda d: d["list"][0]["attempt"] == 3 and d["status"] in FINAL, timeout_s=20)
    assert data["status"] == "PART_FAILED" and data["list"][0]["status"] == "FAILED", data


def test_operate_refuses_a_host_whose_access_point_is_gone(api, services, tmp_path):
    with services.db.session() as session:  # access point 3 is as live as the default one
        default = session.get(AccessPoint, DEFAULT_AP_ID)
        session.add(AccessPoint(id=3, name="second", server_url=default.server_url))
    started = api.ok("/api/job/install/", {"job_type": "INSTALL_AGENT", "hosts": [local_host(tmp_path, 1, ap_id=3)]})
    data = api.wait(started["job_id"])
    assert data["status"] == "SUCCESS", data
    bk_host_id = data["list"][0]["bk_host_id"]

    drop_access_point(services, 3)
    answer = api.error("/api/job/operate/", {"job_type": "RESTART_AGENT", "bk_host_id": [bk_host_id]}, 3801018)
    [refused] = answer["data"]["ip_filter"]
    assert (refused["bk_host_id"], refused["status"], refused["exception"]) == (bk_host_id, "IGNORED", "unknown_ap")
    assert "access point 3 does not exist" in refused["msg"], refused


@pytest.mark.parametrize(
    ("gone", "reason"),
    [("access_point", "接入点(id:2)不存在 (the host's access point 2 does not exist)"), ("host", "主机不存在 (host ")],
    ids=["access_point", "host"],
)
async def test_a_record_whose_host_or_access_point_is_deleted_before_it_runs_ends_failed(
    services, engine, tmp_path, gone, reason, silent_ap_url
):
    add_dead_access_point(services, silent_ap_url)
    started = await services.jobs.install(
        job_type=JobType.INSTALL_AGENT,
        hosts=parse_hosts([local_host(tmp_path, 1, ap_id=2)]),
        created_by="admin",
        from_system="test",
    )
    # the engine reads its work at its first turn of the event loop: the row is gone by then
    if gone == "host":
        with services.db.session() as session:
            session.execute(delete(Host).where(Host.inner_ip == "127.0.20.1"))
    else:
        drop_access_point(services, 2)
    await engine.wait(started.job_id)
    with services.db.session() as session:
        record = session.scalars(select(InstanceRecord).where(InstanceRecord.job_id == started.job_id)).one()
        assert record.status == "FAILED" and record.start_at and record.finish_at
        job = session.get(Job, started.job_id)
        assert (job.status, job.statistics["failed_count"], job.end_at is not None) == ("FAILED", 1, True)
        log = "".join(session.scalars(select(StepLog.text).where(StepLog.record_id == record.id)))
        steps = dict(
            session.execute(
                select(RecordStep.step_index, RecordStep.status).where(RecordStep.record_id == record.id)
            ).all()
        )
    assert reason in log and "marked FAILED without running" in log, log
    assert steps[0] == "FAILED" and set(list(steps.values())[1:]) == {"PENDING"}, steps
