"""Where a task's hosts run: the seam between the use cases and the engines.

``Dispatcher`` is what the service talks to. Two implementations are equal peers: ``engine.runner.Engine``
runs pipelines in the service's own process (the embedded default), ``engine.dispatch.celery.CeleryDispatcher``
hands each host to a Celery worker (``NODEOPS_EXECUTOR=celery``, see docs/architecture.md). Only that module
imports Celery; it is imported when the celery executor is chosen, so the embedded mode needs no broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from nodeops.engine.packages import ChosenPackage

REVOKED_LINE = "已终止 (revoked by a user)"


class Dispatcher(Protocol):
    async def start(self) -> None:
        """Start what runs in the background (the embedded engine also fails what a previous process left)."""

    def submit(self, job_id: int, task_id: int, package: ChosenPackage) -> None:
        """Run the task's PENDING records, pushing ``package`` where a step needs one; returns at once."""

    async def wait(self, job_id: int) -> None:
        """Until the job's hosts are done (the demo, tests)."""

    async def revoke(self, job_id: int, record_ids: Sequence[int], *, whole_job: bool) -> None:
        """Stop the job's records ``record_ids`` (all its active records when ``whole_job``): PENDING ones never
        run, RUNNING ones end FAILED with one 已终止 line in their running step; the job becomes TERMINATED."""

    async def aclose(self) -> None:
        """Stop the background work."""


async def cancel_all(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel a dispatcher's background tasks and wait until each has ended."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
