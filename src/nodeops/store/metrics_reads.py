"""What a metrics scrape reads from the store: jobs and instances by job type and status, hosts by agent status,
live workers. Reads only.

Each figure is one grouped count (``GROUP BY``, no row loaded), so a scrape stays cheap on a store of 100k jobs:
jobs are counted over ``jobs``, instances over the latest record of each (``is_latest``) joined to its job's type,
agents by ``inventory.count_by_status`` (as the agent counts of the API), workers by ``cluster.live_workers``.
Imports domain and the store only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nodeops.store import cluster, inventory
from nodeops.store.models import InstanceRecord, Job


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreFigures:
    jobs: Mapping[tuple[str, str], int]  # (job_type, status) -> jobs
    instances: Mapping[tuple[str, str], int]  # (job_type, status) -> latest records
    agents_by_status: Mapping[str, int]  # hosts.agent_status -> hosts
    workers_alive: int | None  # None: not asked (embedded mode, or SQLite)


def read_figures(session: Session, *, workers: bool) -> StoreFigures:
    """The scrape's figures, in the caller's session (one read transaction); ``workers`` reads the live workers
    too (celery mode: PostgreSQL only, it compares leases with the database's clock)."""
    return StoreFigures(
        jobs=jobs_by_type_and_status(session),
        instances=instances_by_type_and_status(session),
        agents_by_status=inventory.count_by_status(session, inventory.HostQuery()),
        workers_alive=len(cluster.live_workers(session)) if workers else None,
    )


def jobs_by_type_and_status(session: Session) -> dict[tuple[str, str], int]:
    """``(job_type, status) -> jobs``: one grouped count over ``jobs``."""
    rows = session.execute(select(Job.job_type, Job.status, func.count()).group_by(Job.job_type, Job.status))
    return {(str(job_type), str(status)): int(count) for job_type, status, count in rows}


def instances_by_type_and_status(session: Session) -> dict[tuple[str, str], int]:
    """``(job_type, status) -> instances``, each instance counted once, by its latest record: one grouped count of
    the records joined to their job's type."""
    rows = session.execute(
        select(Job.job_type, InstanceRecord.status, func.count())
        .join(Job, Job.id == InstanceRecord.job_id)
        .where(InstanceRecord.is_latest.is_(True))
        .group_by(Job.job_type, InstanceRecord.status)
    )
    return {(str(job_type), str(status)): int(count) for job_type, status, count in rows}
