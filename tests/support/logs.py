"""Helpers of the log reading tests: jobs with chosen logs, written through the store as the engine writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from nodeops.domain.plans import JobType, plan_steps
from nodeops.domain.status import Status
from nodeops.service.container import Services
from nodeops.store import jobs
from tests.support.factories import MadeJob, StepRun, make_job

STEPS = [step.name for step in plan_steps(JobType.UPGRADE_AGENT)]


def running_job(services: Services, **kwargs: Any) -> MadeJob:
    """An UPGRADE_AGENT job whose one instance is RUNNING its first step, with no log yet."""
    return make_job(
        services,
        runs=[StepRun(status=Status.RUNNING, start="2021-09-16 15:06:04")],
        record_status=Status.RUNNING,
        **kwargs,
    )


def append(services: Services, record_id: int, step_index: int, lines: Sequence[str]) -> None:
    """One chunk of whole lines, in its own transaction, as one LogWriter flush writes it."""
    with services.db.session() as session:
        jobs.write_progress(services.db, session, chunks=[(record_id, step_index, "\n".join(lines))])


def set_step(services: Services, record_id: int, step_index: int, status: Status) -> None:
    with services.db.session() as session:
        jobs.write_progress(services.db, session, steps=[jobs.StepProgress(record_id, step_index, status, None, None)])


def finish(services: Services, record_id: int, status: Status = Status.SUCCESS) -> None:
    with services.db.session() as session:
        jobs.write_progress(services.db, session, records=[jobs.RecordProgress(record_id, status, None, None)])


def ok(response: httpx.Response) -> Any:
    """The ``data`` of a successful envelope."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"] is True and body["code"] == 0, body
    return body["data"]


def error(response: httpx.Response, code: int, *contains: str) -> dict[str, Any]:
    """An error envelope with ``code`` whose message holds every one of ``contains``."""
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["result"] is False and body["code"] == code, body
    for part in contains:
        assert part in body["message"], body
    return body
