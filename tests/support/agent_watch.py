"""An agent that stops, seen from outside: kill a real agent, wait for its host to be TERMINATED, start it again,
wait for RUNNING, checking the counts of its business, set and module at each stage (``kill_then_restart``, shared
by the embedded and the celery tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.jobs import JobApi

INTERVAL_S = 1.0
MISSES = 3
AGENT_STATUS = "/api/v2/host/agent_status/"
NODES = [
    {"bk_biz_id": 2, "bk_obj_id": "biz"},
    {"bk_biz_id": 2, "bk_inst_id": 10, "bk_obj_id": "set"},
    {"bk_biz_id": 2, "bk_inst_id": 100, "bk_obj_id": "module"},
]


def wait_until(check: Callable[[], Any], what: str, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)
    return found


def counted(api: JobApi) -> list[tuple[int, int, int]]:
    """``(total, RUNNING, TERMINATED)`` of business 2, set 10 and module 100."""
    return [
        (c["total"], c["RUNNING"], c["TERMINATED"])
        for c in (node["agent_status_count"] for node in api.ok(AGENT_STATUS, {"nodes": NODES}))
    ]


def agent_pid(home: Path) -> int:
    return int((home / "agent.pid").read_text().split()[0])


def kill_then_restart(
    api: JobApi, read_host: Callable[[], tuple[str, datetime | None]], home: Path, start: list[str]
) -> None:
    """Kill the agent running from ``home``, see its host TERMINATED, ``start`` it, see it RUNNING: the common
    part of the embedded and the celery test."""
    assert counted(api) == [(1, 1, 0)] * 3
    os.kill(agent_pid(home), signal.SIGKILL)
    killed_at = datetime.now(UTC)
    _status, seen = wait_until(
        lambda: (state := read_host())[0] == "TERMINATED" and state, "the host to be TERMINATED", 10 * INTERVAL_S
    )
    marked_at = datetime.now(UTC)
    assert seen is not None and seen <= killed_at  # the time it was last seen, kept
    # not before its misses: silent for at least MISSES intervals when marked, and found within a few more
    assert marked_at - seen >= timedelta(seconds=MISSES * INTERVAL_S)
    assert marked_at - killed_at < timedelta(seconds=(MISSES + 3) * INTERVAL_S)
    assert counted(api) == [(1, 0, 1)] * 3
    subprocess.run(start, check=True, capture_output=True, timeout=30)
    _status, again = wait_until(
        lambda: (state := read_host())[0] == "RUNNING" and state, "the host to be RUNNING again", 10 * INTERVAL_S
    )
    assert again is not None and again > seen
    assert counted(api) == [(1, 1, 0)] * 3
