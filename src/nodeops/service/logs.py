"""The log use case (查询任务实例日志, spec §7.5): validate the query, check access, read the instance's steps.

Order as the original (spec §10): authentication, then validation, then the job, then permission, then the
record. Every address of the log API goes through ``parse_log_query`` and ``LogService.instance_log``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from nodeops.domain.answer import AnswerRenderer
from nodeops.domain.instance_id import InstanceId, parse_instance_id
from nodeops.errors import InstanceNotFound, InvalidInput, JobNotFound
from nodeops.service.auth import Authenticator, CommonArgs
from nodeops.service.cache import ByteBudgetCache
from nodeops.store.db import Database
from nodeops.store.log_reads import LogReads

BODY_CACHE_BYTES = 64 * 1024 * 1024
_MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class LogQuery:
    job_id: int
    instance: InstanceId
    attempt: int | None


def parse_log_query(params: Mapping[str, object]) -> LogQuery:
    """Validate ``job_id``, ``instance_id`` and the optional ``attempt``; one InvalidInput names every bad field."""
    problems: dict[str, str] = {}
    job_id = _positive_int(params, "job_id", problems, required=True)
    attempt = _positive_int(params, "attempt", problems, required=False)
    instance: InstanceId | None = None
    raw_instance = params.get("instance_id")
    if raw_instance is None or raw_instance == "":
        problems["instance_id"] = "this field is required (object_type|node_type|type|id, or a bk_host_id)"
    else:
        try:
            instance = parse_instance_id(raw_instance)
        except InvalidInput as exc:
            problems.update(exc.problems)
    if problems:
        raise InvalidInput(problems)
    assert job_id is not None and instance is not None
    return LogQuery(job_id=job_id, instance=instance, attempt=attempt)


def _positive_int(params: Mapping[str, object], name: str, problems: dict[str, str], *, required: bool) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            problems[name] = "this field is required (a positive integer)"
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        problems[name] = "must be a positive integer"
        return None
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= _MAX_ID:
        shown = text if len(text) <= 40 else text[:37] + "..."
        problems[name] = f"{shown!r} is not a positive integer"
        return None
    return int(text)


class LogService:
    """Reads instance logs for callers; build one per process."""

    def __init__(self, db: Database, auth: Authenticator, tz: tzinfo) -> None:
        self.db = db
        self.auth = auth
        self.reads = LogReads(db)
        self.renderer = AnswerRenderer(tz)
        # what a record without a sealed answer renders to, per (record_id, revision): a revision only grows, so
        # an entry is either current or never asked for again and ages out
        self._bodies = ByteBudgetCache(max_bytes=BODY_CACHE_BYTES)

    async def instance_log(self, args: CommonArgs, params: Mapping[str, object]) -> bytes:
        """The ``data`` of the log API as JSON: authenticate, validate, authorize, then every step of the
        instance's plan in order as the seed's five fields. Raises NodeopsError."""
        return await self.db.read(lambda cur: self._instance_log(cur, args, params))

    def _instance_log(self, cur: Any, args: CommonArgs, params: Mapping[str, object]) -> bytes:
        try:
            query = parse_log_query(params)
        except InvalidInput:
            self.auth.authenticate(cur, args)  # an unauthenticated caller learns nothing about its input
            raise
        found = self.reads.look_up(cur, query.job_id, query.instance, query.attempt, self.renderer.zone)
        caller = self.auth.authenticate(cur, args, epoch=found.epoch)
        if found.job is None:
            raise JobNotFound(job_id=query.job_id)
        caller.require_job_view(found.job)
        record = found.record
        if record is None:
            raise InstanceNotFound(job_id=query.job_id, instance_id=str(query.instance))
        if record.record_id is None:
            raise InstanceNotFound(
                job_id=query.job_id,
                instance_id=str(query.instance),
                detail=f"attempt {query.attempt} does not exist; attempts are 1 to {record.attempts}",
            )
        if record.answer is not None:  # finished, and sealed at this revision
            return record.answer
        key = (record.record_id, record.revision)
        body = self._bodies.get(key)
        if body is None:
            body = self.renderer.render(self.reads.fetch_steps(cur, record.record_id))
            self._bodies.put(key, body)
        return body
