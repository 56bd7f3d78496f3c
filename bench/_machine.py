"""The whole machine's load, shared by the benchmarks (stdlib only, no nodeops)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds all cores spent on anything but idle and iowait since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICK


def wait_quiet(max_wait: float, say: Callable[[str], None], threshold: float = 0.3) -> None:
    """Wait (at most ``max_wait`` s) for a second in which the machine is less than ``threshold`` cores busy."""
    if max_wait <= 0:
        return
    deadline = time.monotonic() + max_wait
    told = False
    while True:
        before = machine_busy_s()
        time.sleep(1.0)
        busy = machine_busy_s() - before
        if busy < threshold:
            return
        if time.monotonic() >= deadline:
            say(f"  machine still {busy:.2f} cores busy after {max_wait:.0f}s; measuring anyway")
            return
        if not told:
            say(f"  machine {busy:.2f} cores busy with other work; waiting up to {max_wait:.0f}s for it to quiet down")
            told = True
