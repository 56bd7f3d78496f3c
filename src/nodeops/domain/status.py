"""The nine statuses of the API and how step statuses roll up into instance and job statuses (spec §6).

Pure: imports only the standard library.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    PENDING = "PENDING"  # waiting to run (等待执行); also a step never reached
    RUNNING = "RUNNING"  # running now (正在执行)
    SUCCESS = "SUCCESS"  # finished well (执行成功)
    FAILED = "FAILED"  # finished badly (执行失败)
    PART_FAILED = "PART_FAILED"  # job only: some instances failed, some succeeded (部分失败)
    TERMINATED = "TERMINATED"  # job only: revoked by a user (已终止)
    REMOVED = "REMOVED"  # instance left the subscription's scope (已移除)
    FILTERED = "FILTERED"  # host excluded by the job type itself, e.g. its OS (被过滤的)
    IGNORED = "IGNORED"  # host refused before execution, with a reason (已忽略)


TERMINAL = frozenset(
    {
        Status.SUCCESS,
        Status.FAILED,
        Status.PART_FAILED,
        Status.TERMINATED,
        Status.REMOVED,
        Status.FILTERED,
        Status.IGNORED,
    }
)
ACTIVE = frozenset({Status.PENDING, Status.RUNNING})


def collect_status(statuses: Iterable[Status]) -> Status:
    """Roll child statuses into one, as Node Manager's ``collect_status`` (spec §6.2).

    All SUCCESS -> SUCCESS; else any FAILED -> FAILED; else any RUNNING -> RUNNING; else PENDING (so a mix of
    SUCCESS and PENDING is PENDING: the parent has not finished). An empty list is PENDING, not SUCCESS: an
    object with no children has not run anything.
    """
    seen = set(statuses)
    if not seen:
        return Status.PENDING
    if seen == {Status.SUCCESS}:
        return Status.SUCCESS
    if Status.FAILED in seen:
        return Status.FAILED
    if Status.RUNNING in seen:
        return Status.RUNNING
    return Status.PENDING


def backtrace_steps(statuses: Sequence[Status]) -> list[Status]:
    """Report every step before the first RUNNING/FAILED one as SUCCESS (spec §6.2 ``backtrace_steps``).

    A pipeline only reaches a step after all earlier ones succeeded, so an earlier step whose row was purged
    (and reads PENDING) did in fact succeed.
    """
    for index, status in enumerate(statuses):
        if status in (Status.RUNNING, Status.FAILED):
            return [Status.SUCCESS] * index + list(statuses[index:])
    return list(statuses)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStatistics:
    """Per-status instance counts of a job, the ``statistics`` field of Node Manager's job (spec §3)."""

    success_count: int = 0
    failed_count: int = 0
    pending_count: int = 0
    running_count: int = 0
    ignored_count: int = 0

    @property
    def total_count(self) -> int:
        return self.success_count + self.failed_count + self.pending_count + self.running_count + self.ignored_count

    @classmethod
    def count(cls, statuses: Iterable[Status]) -> JobStatistics:
        """Count instance statuses; statuses outside the five counted ones are not counted (spec §6.2)."""
        counts = dict.fromkeys(("SUCCESS", "FAILED", "PENDING", "RUNNING", "IGNORED"), 0)
        for status in statuses:
            if status in counts:
                counts[status] += 1
        return cls(
            success_count=counts["SUCCESS"],
            failed_count=counts["FAILED"],
            pending_count=counts["PENDING"],
            running_count=counts["RUNNING"],
            ignored_count=counts["IGNORED"],
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "success_count": self.success_count,
            "failed_count": self.failed_count,
            "pending_count": self.pending_count,
            "running_count": self.running_count,
            "ignored_count": self.ignored_count,
            "total_count": self.total_count,
        }


def aggregate_job_status(stats: JobStatistics, current: Status) -> Status:
    """The job's status from its statistics, as ``JobTools.update_job_statistics`` (spec §6.2).

    A TERMINATED job stays TERMINATED: the original overwrites it on recomputation (spec §11.16), which loses
    the fact that a user revoked it.
    """
    if current == Status.TERMINATED:
        return current
    if stats.total_count == 0:
        return Status.PENDING
    if stats.ignored_count == stats.total_count:
        return Status.SUCCESS
    if stats.running_count + stats.pending_count == 0:
        if stats.failed_count == 0:
            return Status.SUCCESS
        if stats.success_count == 0:
            return Status.FAILED
        return Status.PART_FAILED
    if stats.running_count > 0:
        return Status.RUNNING
    return current
