"""A cluster worker's claim (``engine.cluster.ClusterWorker``) on a real PostgreSQL, without a broker: the claim
and the record's work are one transaction, and a claim whose commit was not heard is taken as the worker's own."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from nodeops.crypto import SecretBox
from nodeops.domain.plans import JobType, plan_steps
from nodeops.engine.cluster import ClusterWorker, WorkerConfig
from nodeops.engine.connect import transport_factory
from nodeops.errors import TransientStoreError
from nodeops.store import cluster, jobs, packages
from nodeops.store.pipelines import HostWork
from tests.support.factories import restart_job, ssh_host

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def make_worker(services, tmp_path):
    """Builds workers that are never started (no loop thread, no broker); their loops are closed at the end."""
    made: list[ClusterWorker] = []

    def make(worker_id: str) -> ClusterWorker:
        made.append(_worker(services, tmp_path, worker_id))
        return made[-1]

    yield make
    for worker in made:
        worker._loop.close()


def _worker(services, tmp_path, worker_id: str) -> ClusterWorker:
    with services.db.session() as session:
        cluster.register_worker(session, worker_id=worker_id, hostname="test", pid=1, concurrency=4, lease_s=30)
    config = WorkerConfig(
        worker_id=worker_id,
        concurrency=4,
        job_limit=10,
        lease_s=30,
        reaper_interval_s=60,
        step_timeout_s=30,
        heartbeat_interval_s=1,
    )
    connect = transport_factory(db=services.db, policy="off", connect_timeout_s=5)
    box = SecretBox(b"k" * 32)
    publish = lambda *_args: None  # noqa: E731
    return ClusterWorker(services.db, services.settings.tz, box, connect, config, publish, packages_dir=tmp_path)


def _record(services) -> int:
    with services.db.session() as session:
        packages.ensure_default_access_point(session, server_url="http://127.0.0.1:1")
        host_id = ssh_host(session, "127.0.41.1")
    job = restart_job(services, [jobs.NewInstance(instance_id=f"host|instance|host|{host_id}", bk_host_id=host_id)])
    (record_id,) = job.record_ids.values()
    return record_id


def test_a_claim_returns_the_record_s_work_read_in_its_transaction(services, make_worker):
    record_id = _record(services)
    worker, other = make_worker("w.1"), make_worker("w.2")
    claimed = worker._claim_once(record_id)
    assert claimed.outcome is cluster.Claim.CLAIMED
    assert isinstance(claimed.work, HostWork) and claimed.work.record_id == record_id
    assert claimed.work.ip == "127.0.41.1" and [s.code for s in claimed.work.steps] == [
        s.code for s in plan_steps(JobType.RESTART_AGENT)
    ]
    assert worker._claim_once(record_id).outcome is cluster.Claim.GONE
    assert other._claim_once(record_id).outcome is cluster.Claim.GONE
    assert other._claim_once(record_id, after_failure=True).outcome is cluster.Claim.GONE  # not the other's own


def test_a_claim_whose_commit_was_not_heard_is_the_worker_s_own_once(services, make_worker, monkeypatch):
    record_id = _record(services)
    worker = make_worker("w.3")
    real = worker._claim_once
    calls: list[bool] = []

    def commit_then_lose_the_answer(record_id: int, *, after_failure: bool = False):
        calls.append(after_failure)
        claimed = real(record_id, after_failure=after_failure)
        if len(calls) == 1:  # committed, but the connection broke before the answer came back
            raise TransientStoreError()
        return claimed

    monkeypatch.setattr(worker, "_claim_once", commit_then_lose_the_answer)
    worker.config = dataclasses.replace(worker.config, claim_retry_s=0.01)
    claimed = asyncio.run(worker._claim(record_id))
    assert calls == [False, True]
    assert claimed is not None and isinstance(claimed.work, HostWork) and claimed.work.record_id == record_id
    calls.clear()  # the same record delivered again while this worker still runs it: not run twice
    assert asyncio.run(worker._claim(record_id)) is None
    with services.db.session() as session:
        assert cluster.running_owner(session, record_id=record_id) == "w.3"
