"""查询Agent状态 waits for a heartbeat: woken at once by a real heartbeat reaching the live server, or on
PostgreSQL by the notice of a heartbeat another process recorded (also after the listening connection was lost),
still ending through its store reads when no wake-up reaches it, and failing after its timeout."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid

import httpx
import pytest
from sqlalchemy import select, text

from nodeops.crypto import SecretBox
from nodeops.domain.plans import StepCode
from nodeops.engine.heartbeats import HeartbeatWaiters
from nodeops.engine.logwriter import LogWriter
from nodeops.engine.notices import heartbeat_router
from nodeops.engine.packages import ChosenPackage
from nodeops.engine.steps import StepContext, StepTimeouts, query_agent_status
from nodeops.errors import TransportError
from nodeops.service.heartbeat_groups import HeartbeatGroups
from nodeops.store import agents as agent_rows
from nodeops.store import hosts
from nodeops.store import packages as package_rows
from nodeops.store.db import Database
from nodeops.store.models import AccessPoint
from nodeops.store.pipelines import HostWork, PlannedRun
from tests.support.factories import local_login

TOKEN = "token-of-host-under-test"
EXPECTED = "0.3.0"


@pytest.fixture
def host_id(services) -> int:
    """A host whose agent was just (re)started: token set, last heartbeat cleared, as the steps leave it."""
    with services.db.session() as session:
        package_rows.ensure_default_access_point(session, server_url="http://127.0.0.1:9")
        ap_id = session.scalar(select(AccessPoint.id))
        assert ap_id is not None
        bk_host_id = hosts.upsert_host(session, local_login("127.0.20.7", "/tmp/nodeops-test/agent", ap_id=ap_id))
    agent_rows.set_agent(
        services.db,
        bk_host_id=bk_host_id,
        status="UPGRADING",
        version=EXPECTED,
        token_hash=hashlib.sha256(TOKEN.encode()).digest(),
        clear_heartbeat=True,
    )
    return bk_host_id


def waiting_step(services, bk_host_id: int, heartbeats: HeartbeatWaiters, **timeouts: float) -> StepContext:
    work = HostWork(
        record_id=0,
        job_id=0,
        instance_id=f"host|instance|host|{bk_host_id}",
        bk_host_id=bk_host_id,
        ip="127.0.20.7",
        bk_cloud_id=0,
        os_type="LINUX",
        transport="local",
        ssh_port=22,
        account=None,
        auth_type="PASSWORD",
        password_enc=None,
        key_enc=None,
        credentials_expire_at=None,
        setup_path="/tmp/nodeops-test/agent",
        server_url="http://127.0.0.1:9",
        agent_version="0.2.0",
        steps=(PlannedRun(index=3, code=StepCode.RUN_UPGRADE_SCRIPT.value, name="执行升级脚本", status="PENDING"),),
    )
    context = StepContext(
        work=work,
        db=services.db,
        writer=LogWriter(services.db, services.settings.tz),  # never flushed: the record is made up
        box=SecretBox(services.settings.resolved_secret_key()),
        package=ChosenPackage(version=EXPECTED, sha256="0" * 64),
        packages=services.engine.pipeline.packages,
        timeouts=StepTimeouts(**timeouts),
        connect=services.engine.pipeline.connect,  # the transport factory Services.build wires
        heartbeats=heartbeats,
    )
    context.step = PlannedRun(index=4, code=StepCode.QUERY_AGENT_STATUS.value, name="查询Agent状态", status="PENDING")
    return context


async def until_watched(heartbeats: HeartbeatWaiters, waiting: asyncio.Task[None]) -> None:
    async with asyncio.timeout(5):
        while not heartbeats.watched_hosts():
            if waiting.done():
                waiting.result()  # the step ended early: show why
            await asyncio.sleep(0.01)


def post_heartbeat(url: str, bk_host_id: int, version: str) -> dict[str, object]:
    body = {"bk_host_id": bk_host_id, "token": TOKEN, "version": version}
    answer: dict[str, object] = httpx.post(f"{url}/api/agent/heartbeat/", json=body, timeout=10).json()
    return answer


async def test_a_real_heartbeat_wakes_the_waiting_step_at_once(services, live_server, host_id):
    # the store is read only every 60 s, so only the heartbeat API's wake-up can end the step in time
    context = waiting_step(services, host_id, services.heartbeats, heartbeat_s=30, poll_interval_s=60)
    waiting = asyncio.create_task(query_agent_status(context))
    await until_watched(services.heartbeats, waiting)

    answer = await asyncio.to_thread(post_heartbeat, live_server.url, host_id, "0.2.0")  # the old agent, late
    assert answer["result"] is True, answer
    await asyncio.sleep(0.2)
    assert not waiting.done()  # woken, but not by the expected version

    sent = time.monotonic()
    answer = await asyncio.to_thread(post_heartbeat, live_server.url, host_id, EXPECTED)
    assert answer["result"] is True, answer
    async with asyncio.timeout(2):
        await waiting
    assert time.monotonic() - sent < 2
    assert services.heartbeats.watched_hosts() == 0  # the step stopped watching
    assert any(f"Agent 心跳正常, 版本 {EXPECTED}" in op.text for op in context.writer._pending if hasattr(op, "text"))


async def test_a_heartbeat_taken_by_another_process_is_found_by_the_fallback_read(services, host_id):
    elsewhere = HeartbeatWaiters()  # nothing will notify it, as when another process takes the heartbeat
    context = waiting_step(services, host_id, elsewhere, heartbeat_s=30, poll_interval_s=0.3)
    waiting = asyncio.create_task(query_agent_status(context))
    await until_watched(elsewhere, waiting)
    await asyncio.sleep(0.4)
    assert not waiting.done()

    # taken as another process takes it: its waiters are not this step's
    await HeartbeatGroups(services.db, HeartbeatWaiters()).receive(
        {"bk_host_id": host_id, "token": TOKEN, "version": EXPECTED}
    )
    async with asyncio.timeout(3):
        await waiting


async def test_a_heartbeat_already_recorded_when_the_step_starts_ends_it_at_once(services, host_id):
    await HeartbeatGroups(services.db, HeartbeatWaiters()).receive(
        {"bk_host_id": host_id, "token": TOKEN, "version": EXPECTED}
    )
    context = waiting_step(services, host_id, HeartbeatWaiters(), heartbeat_s=30, poll_interval_s=60)
    async with asyncio.timeout(2):
        await query_agent_status(context)


async def test_without_the_expected_heartbeat_the_step_fails_after_its_timeout(services, live_server, host_id):
    context = waiting_step(services, host_id, services.heartbeats, heartbeat_s=1.0, poll_interval_s=60)
    waiting = asyncio.create_task(query_agent_status(context))
    await until_watched(services.heartbeats, waiting)
    await asyncio.to_thread(post_heartbeat, live_server.url, host_id, "0.2.0")
    with pytest.raises(TransportError, match=r"查询 Agent 状态超时: last heartbeat version 0\.2\.0 within 1 s"):
        async with asyncio.timeout(5):
            await waiting


async def test_notify_from_another_thread_wakes_a_watch_on_this_loop():
    heartbeats = HeartbeatWaiters()
    heartbeats.notify(5, "1.0")  # nobody watches: nothing happens
    with heartbeats.watch(5) as watch:
        thread = threading.Thread(target=heartbeats.notify, args=(5, "1.0"))
        thread.start()
        assert await watch.wait(2) is True
        thread.join()
        assert watch.versions == ["1.0"]
        assert await watch.wait(0.05) is False  # the signal was consumed
    assert heartbeats.watched_hosts() == 0


async def test_a_step_woken_to_read_again_reads_the_store_and_waits_on_until_the_heartbeat_is_there(services, host_id):
    here = HeartbeatWaiters()
    context = waiting_step(services, host_id, here, heartbeat_s=30, poll_interval_s=60)
    waiting = asyncio.create_task(query_agent_status(context))
    await until_watched(here, waiting)
    here.wake_all()  # notices may have been missed, and nothing was: the step reads the store and waits again
    await asyncio.sleep(0.3)
    assert not waiting.done() and here.watched_hosts() == 1

    # recorded where no notice reaches this process's waiters; the next "read again" finds it
    await HeartbeatGroups(services.db, HeartbeatWaiters()).receive(
        {"bk_host_id": host_id, "token": TOKEN, "version": EXPECTED}
    )
    here.wake_all()
    async with asyncio.timeout(2):
        await waiting


def kill_listener(db: Database, application_name: str) -> int:
    """End the listening connection as a database restart or an administrator does."""
    with db.engine.begin() as conn:
        return len(
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name AND datname = current_database()"
                ),
                {"name": application_name},
            ).all()
        )


async def test_a_heartbeat_another_process_records_wakes_the_step_through_its_notice_also_after_a_lost_listener(
    services, host_id
):
    if services.db.is_sqlite:
        pytest.skip("NOTIFY/LISTEN is PostgreSQL's; on SQLite a single process takes every heartbeat")
    here = HeartbeatWaiters()
    listener = heartbeat_router(here).listener(services.db, application_name=f"nodeops-listen-{uuid.uuid4().hex[:8]}")
    elsewhere = Database.connect(services.settings.database_url)  # as another API process holds it
    groups_elsewhere = HeartbeatGroups(elsewhere, HeartbeatWaiters())
    beat = {"bk_host_id": host_id, "token": TOKEN, "version": EXPECTED}
    listener.start()
    try:
        await listener.wait_listening(5)
        # the backstop read comes only after 30 s: only the notice can end the step in time
        context = waiting_step(services, host_id, here, heartbeat_s=60, poll_interval_s=30)
        waiting = asyncio.create_task(query_agent_status(context))
        await until_watched(here, waiting)
        await asyncio.sleep(0.2)
        assert not waiting.done()
        sent = time.monotonic()
        await groups_elsewhere.receive(beat)
        async with asyncio.timeout(5):
            await waiting
        assert time.monotonic() - sent < 1

        # the agent restarts again, and the listening connection is killed: the notice of the next first
        # heartbeat is lost, and the step learns of it when the listener is back and has it read the store
        agent_rows.set_agent(services.db, bk_host_id=host_id, status="RESTARTING", clear_heartbeat=True)
        context = waiting_step(services, host_id, here, heartbeat_s=60, poll_interval_s=30)
        waiting = asyncio.create_task(query_agent_status(context))
        await until_watched(here, waiting)
        assert await asyncio.to_thread(kill_listener, services.db, listener.application_name) == 1
        sent = time.monotonic()
        await groups_elsewhere.receive(beat)
        async with asyncio.timeout(5):
            await waiting
        assert time.monotonic() - sent < 1
        assert listener.connections == 2 and listener.is_listening
        logged = [op.text for op in context.writer._pending if hasattr(op, "text")]
        assert any(f"Agent 心跳正常, 版本 {EXPECTED}" in line for line in logged)
    finally:
        await listener.aclose()
        elsewhere.dispose()
