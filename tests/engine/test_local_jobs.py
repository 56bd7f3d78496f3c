"""Install then upgrade agents on local-transport hosts, end to end: engine, agent daemons, heartbeats, log API."""

from __future__ import annotations

import logging

import httpx
from sqlalchemy import select

from nodeops.domain.plans import JobType, plan_steps
from nodeops.engine import packages
from nodeops.service.host_requests import parse_hosts
from nodeops.store import hosts, jobs
from nodeops.store.models import InstanceRecord
from tests.support.factories import local_login, make_app, make_user
from tests.support.jobs import local_host, stop_agents


def read_log(live_server, app, job_id, instance_id):
    response = httpx.get(
        f"{live_server.url}/api/job/{job_id}/log/",
        params={
            "instance_id": instance_id,
            "bk_app_code": app.code,
            "bk_app_secret": app.secret,
            "bk_username": "admin",
        },
    )
    body = response.json()
    assert body["result"], body
    return body["data"]


async def test_install_then_upgrade_on_local_hosts_writes_every_step(services, live_server, engine, tmp_path):
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    try:
        started = await services.jobs.install(
            job_type=JobType.INSTALL_AGENT,
            hosts=parse_hosts([local_host(tmp_path, 1), local_host(tmp_path, 2)]),
            created_by="admin",
            from_system="test",
        )
        await engine.wait(started.job_id)
        data = read_log(live_server, app, started.job_id, "host|instance|host|127.0.20.1-0-0")
        assert [s["step"] for s in data] == [
            "更新任务状态",
            "注册主机到配置平台",
            "查询主机密码",
            "选择接入点",
            "安装",
            "查询Agent状态",
            "更新任务状态",
        ]
        assert {s["status"] for s in data} == {"SUCCESS"}, data
        assert "Agent 心跳正常, 版本 0.1.0" in data[5]["log"]
        assert all(s["start_time"] and s["finish_time"] for s in data)
        assert (tmp_path / "host2" / "nodeops-agent" / "VERSION").read_text().strip() == "0.1.0"

        host_ids = [1, 2]
        packages.register(services.db, services.settings.packages_dir, "0.2.0")
        upgraded = await services.jobs.operate(
            job_type=JobType.UPGRADE_AGENT, bk_host_ids=host_ids, created_by="admin", from_system="test"
        )
        await engine.wait(upgraded.job_id)
        data = read_log(live_server, app, upgraded.job_id, 2)
        assert [s["step"] for s in data] == [
            "更新任务状态",
            "批量下发升级包",
            "执行升级脚本",
            "查询Agent状态",
            "更新任务状态",
        ]
        assert {s["status"] for s in data} == {"SUCCESS"}, data
        assert "Agent 心跳正常, 版本 0.2.0" in data[3]["log"]
        assert (tmp_path / "host2" / "nodeops-agent" / "VERSION").read_text().strip() == "0.2.0"

        for job_type in (JobType.RESTART_AGENT, JobType.RELOAD_AGENT, JobType.UNINSTALL_AGENT):
            started = await services.jobs.operate(
                job_type=job_type, bk_host_ids=host_ids, created_by="admin", from_system="test"
            )
            await engine.wait(started.job_id)
            data = read_log(live_server, app, started.job_id, "host|instance|host|1")
            assert {s["status"] for s in data} == {"SUCCESS"}, (job_type, data)
        assert not (tmp_path / "host1" / "nodeops-agent").exists()
    finally:
        stop_agents(tmp_path)


SECRET_PASSWORD = "hunter2-Correct-Horse-9"


async def test_an_unreachable_ssh_host_fails_with_the_reason_and_its_password_is_stored_nowhere_in_clear(
    services, live_server, engine, tmp_path, caplog
):
    from sqlalchemy import text

    from nodeops.store.models import Base

    caplog.set_level(logging.DEBUG, logger="nodeops.engine.pipeline")
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    host = {
        "bk_biz_id": 2,
        "inner_ip": "127.0.10.250",
        "account": "nobody",
        "password": SECRET_PASSWORD,
        "port": 2,
        "setup_path": str(tmp_path / "x"),
    }
    started = await services.jobs.install(
        job_type=JobType.INSTALL_AGENT, hosts=parse_hosts([host]), created_by="admin", from_system="test"
    )
    await engine.wait(started.job_id)
    data = read_log(live_server, app, started.job_id, "host|instance|host|127.0.10.250-0-0")
    install = data[4]
    assert install["status"] == "FAILED"
    assert "127.0.10.250:2" in install["log"]
    assert [s["status"] for s in data[5:]] == ["PENDING", "PENDING"]
    assert all(s["log"] == "" and s["start_time"] is None for s in data[5:])

    with services.db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(text(f"SELECT * FROM {table.name}")):
                assert SECRET_PASSWORD not in repr(row), table.name
    assert SECRET_PASSWORD not in caplog.text
    # the service's own log names the step that failed, at INFO; the steps that passed only at DEBUG
    finished = [r for r in caplog.records if getattr(r, "action", None) == "step_finished"]
    assert [(r.levelno, r.getMessage()) for r in finished if r.levelno >= logging.INFO] == [
        (logging.INFO, "step 安装 FAILED on 127.0.10.250")
    ]
    assert {r.levelno for r in finished} == {logging.DEBUG, logging.INFO}

    with services.db.session() as session:
        from nodeops.store.models import Host

        host_row = session.get(Host, 1)
        assert host_row is not None and host_row.password_enc is not None
        host_row.credentials_expire_at = host_row.created_at
    assert await engine.forget_expired_credentials() == 1
    with services.db.session() as session:
        assert session.get(Host, 1).password_enc is None


async def test_a_heartbeat_with_a_wrong_token_is_refused_and_changes_nothing(services, live_server, engine, tmp_path):
    try:
        started = await services.jobs.install(
            job_type=JobType.INSTALL_AGENT,
            hosts=parse_hosts([local_host(tmp_path, 1)]),
            created_by="admin",
            from_system="test",
        )
        await engine.wait(started.job_id)
        url = f"{live_server.url}/api/agent/heartbeat/"
        for body, code in (
            ({"bk_host_id": 1, "token": "forged-token", "version": "9.9.9"}, 3800403),
            ({"bk_host_id": 999, "token": "forged-token", "version": "9.9.9"}, 3800403),
            ({"bk_host_id": "x", "version": ""}, 3800001),
        ):
            answer = httpx.post(url, json=body, timeout=10).json()
            assert (answer["result"], answer["code"]) == (False, code), answer
        assert (
            "wrong token for host 1"
            in httpx.post(url, json={"bk_host_id": 1, "token": "t", "version": "1.0"}, timeout=10).json()["message"]
        )
        with services.db.engine.connect() as conn:
            from sqlalchemy import text

            version = conn.execute(text("SELECT agent_version FROM hosts WHERE bk_host_id = 1")).scalar()
        assert version == "0.1.0"
    finally:
        stop_agents(tmp_path)


async def test_two_instances_on_one_host_run_one_after_the_other(services, engine, tmp_path):
    # two service instances of one host, as a subscription over service instances creates them; the host has no
    # agent, so each fails at 重启 after a few commands on the host
    with services.db.session() as session:
        host_id = hosts.upsert_host(session, local_login("127.0.20.1", str(tmp_path / "host1" / "nodeops-agent")))
        created = jobs.create_job(
            session,
            job_type=JobType.RESTART_AGENT,
            created_by="admin",
            from_system="test",
            bk_biz_scope=[2],
            instances=[
                jobs.NewInstance(instance_id=f"service|instance|service|{n}", bk_host_id=host_id) for n in (501, 502)
            ],
            steps=plan_steps(JobType.RESTART_AGENT),
        )
    engine.submit(created.job_id, created.task_id, packages.choose(services.db))
    await engine.wait(created.job_id)

    with services.db.session() as session:
        runs = session.execute(
            select(InstanceRecord.status, InstanceRecord.start_at, InstanceRecord.finish_at)
            .where(InstanceRecord.job_id == created.job_id)
            .order_by(InstanceRecord.start_at)
        ).all()
    assert [status for status, _start, _finish in runs] == ["FAILED", "FAILED"], runs
    (_s, first_start, first_finish), (_t, second_start, _second_finish) = runs
    assert first_start < first_finish <= second_start, runs  # the second began once the first had ended
    assert engine._hosts == {}  # nothing left waiting on the host
