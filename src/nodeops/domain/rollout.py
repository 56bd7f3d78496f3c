"""Rolling batches and the failure threshold of a job (ours: Node Manager has no such parameters, network spec §19).

A job's hosts are split into batches of ``batch_size`` in the order of the request when the job is created
(``batch_of``); batch n+1 opens once every host of batch n has ended and ``batch_interval_s`` has passed since the
last of them ended. Each time a host ends, the threshold is checked: once more than ``max_fail_percentage`` of
the hosts started so far failed (``threshold_reached``), no other host starts; those already running finish,
and every host not started ends IGNORED with ``stop_reason`` in its log. Absent parameters keep the behaviour
without them: no batches (every host at once) and no threshold.
Pure: imports only the stdlib and ``nodeops.domain``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FIELDS = ("batch_size", "max_fail_percentage", "batch_interval_s")
MAX_BATCH_SIZE = 100_000
MAX_BATCH_INTERVAL_S = 3600


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollout:
    """How a job's hosts start: in batches of ``batch_size`` (None: all at once), ``batch_interval_s`` apart,
    stopping once more than ``max_fail_percentage`` of those started failed (None: never)."""

    batch_size: int | None = None
    max_fail_percentage: float | None = None
    batch_interval_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """What ``jobs.rollout`` (and ``subscriptions.rollout``) stores."""
        return {
            "batch_size": self.batch_size,
            "max_fail_percentage": self.max_fail_percentage,
            "batch_interval_s": self.batch_interval_s,
        }

    @classmethod
    def stored(cls, value: Mapping[str, Any] | None) -> Rollout | None:
        """The rollout a job stored (None: the job has none)."""
        if not value:
            return None
        size, percentage = value.get("batch_size"), value.get("max_fail_percentage")
        return cls(
            batch_size=None if size is None else int(size),
            max_fail_percentage=None if percentage is None else float(percentage),
            batch_interval_s=float(value.get("batch_interval_s") or 0.0),
        )

    def batch_of(self, position: int) -> int:
        """The batch (from 1) of the host at ``position`` (from 0) of the job; without ``batch_size`` (a
        threshold alone) every host is in batch 1."""
        if self.batch_size is None:
            return 1
        return position // self.batch_size + 1

    def batches(self, instance_ids: Sequence[str]) -> dict[str, int]:
        """The batch of each instance of a run, by its position in ``instance_ids``."""
        return {instance_id: self.batch_of(position) for position, instance_id in enumerate(instance_ids)}

    def threshold_reached(self, *, started: int, failed: int) -> bool:
        """Whether ``failed`` of ``started`` hosts is more than the threshold allows."""
        if self.max_fail_percentage is None or started <= 0:
            return False
        return failed * 100 > self.max_fail_percentage * started

    def stop_reason(self, *, started: int, failed: int) -> str:
        """The line every host left unstarted gets in its log (and details_job shows)."""
        return (
            f"失败率超过阈值, 未执行 (not started: {failed} of the {started} hosts started so far failed, more than "
            f"max_fail_percentage {self.max_fail_percentage:g}%); retry the job to run the hosts left"
        )


def read_rollout(params: Mapping[str, object], problems: dict[str, str]) -> Rollout | None:
    """The rollout of a request (``batch_size``, ``max_fail_percentage``, ``batch_interval_s``), or None when it
    gives none of them; a bad value is put into ``problems`` under its field's name."""
    given = {name: params[name] for name in FIELDS if params.get(name) is not None}
    if not given:
        return None
    size = given.get("batch_size")
    if size is not None and not (type(size) is int and 1 <= size <= MAX_BATCH_SIZE):
        problems["batch_size"] = f"must be an integer from 1 to {MAX_BATCH_SIZE} (hosts per batch)"
        size = None
    percentage = _number(given.get("max_fail_percentage"), 100)
    if percentage is None and "max_fail_percentage" in given:
        problems["max_fail_percentage"] = "must be a number from 0 to 100 (the share of started hosts that may fail)"
    interval = _number(given.get("batch_interval_s"), MAX_BATCH_INTERVAL_S)
    if interval is None and "batch_interval_s" in given:
        problems["batch_interval_s"] = f"must be a number of seconds from 0 to {MAX_BATCH_INTERVAL_S}"
    if "batch_interval_s" in given and "batch_size" not in given and "batch_interval_s" not in problems:
        problems["batch_interval_s"] = "only applies between batches: give batch_size too"
    assert size is None or isinstance(size, int)
    return Rollout(
        batch_size=size,
        max_fail_percentage=percentage,
        batch_interval_s=interval or 0.0,
    )


def _number(value: object, maximum: float) -> float | None:
    """A finite number (not a bool, not text) from 0 to ``maximum``, else None."""
    if type(value) not in (int, float):
        return None
    assert isinstance(value, int | float)
    if isinstance(value, int) and not 0 <= value <= maximum:  # a huge integer has no float
        return None
    number = float(value)
    return number if math.isfinite(number) and 0 <= number <= maximum else None
