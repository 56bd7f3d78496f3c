"""``store.metrics_reads.read_figures`` on SQLite and PostgreSQL: each figure is one grouped count (a scrape never
loads rows, whatever the store's size), and the counts are right: jobs and each instance's latest record by job
type and status, hosts by agent status, and in celery mode the workers alive."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from nodeops.domain.plans import JobType
from nodeops.domain.status import Status
from nodeops.service.metrics import read_counts
from nodeops.store import cluster, metrics_reads
from tests.support.factories import StepRun, make_agents, make_job

RAN = StepRun(Status.SUCCESS, "2024-01-01 10:00:00", "2024-01-01 10:00:01", "ok")


def test_figures_are_grouped_counts_and_right(services):
    make_job(services, runs=[RAN] * 6, job_type=JobType.UPGRADE_AGENT, bk_host_id=1, ip="127.0.0.1")
    make_job(services, runs=[RAN] * 6, job_type=JobType.UPGRADE_AGENT, bk_host_id=2, ip="127.0.0.2")
    make_job(services, runs=[], job_type=JobType.RESTART_AGENT, bk_host_id=3, ip="127.0.0.3")
    agents = make_agents(services, 3)
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        statements.append(statement)

    sa.event.listen(services.db.engine, "before_cursor_execute", seen)
    try:
        with services.db.session() as session:
            figures = metrics_reads.read_figures(session, workers=False)
    finally:
        sa.event.remove(services.db.engine, "before_cursor_execute", seen)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 3, reads
    assert all("GROUP BY" in s.upper() and "COUNT(" in s.upper() for s in reads), reads
    with services.db.session() as session:
        jobs = dict(session.execute(sa.text("SELECT job_type, status FROM jobs")).all())
    assert sum(figures.jobs.values()) == 3
    assert {job_type for job_type, _status in figures.jobs} == set(jobs)
    assert sum(n for (job_type, _s), n in figures.instances.items() if job_type == "UPGRADE_AGENT") == 2
    assert sum(n for (job_type, _s), n in figures.instances.items() if job_type == "RESTART_AGENT") == 1
    assert figures.agents_by_status.get("INSTALLED") == len(agents)
    assert figures.workers_alive is None


def test_read_counts_maps_agents_as_node_manager_counts_them(services):
    make_agents(services, 2)  # INSTALLED: neither RUNNING nor NOT_INSTALLED, so abnormal (异常)
    counts = read_counts(services.db, services.settings)
    assert not counts.failed
    assert counts.agents["abnormal"] == 2 and counts.agents["running"] == 0
    assert counts.queue_depth is None and counts.workers_alive is None  # embedded mode


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # leases use PostgreSQL's clock
def test_live_workers_are_counted_on_postgresql(services):
    with services.db.session() as session:
        cluster.register_worker(session, worker_id="w.1", hostname="h", pid=1, concurrency=1, lease_s=30)
        cluster.register_worker(session, worker_id="w.2", hostname="h", pid=2, concurrency=1, lease_s=30)
        cluster.end_worker(session, worker_id="w.2", reason="stopped")
    with services.db.session() as session:
        assert metrics_reads.read_figures(session, workers=True).workers_alive == 1
