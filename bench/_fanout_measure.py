"""Measurements shared by the service and floor processes of ``bench/fanout.py`` (stdlib only, no nodeops).

A ``Window`` records, between ``start`` and ``stop``: wall time, this process's CPU (``getrusage``, all threads),
the whole machine's busy CPU (``/proc/stat``), and the CPU of the hosts' side: every process in the run's cpuacct
cgroup, which holds the sshd listeners and so every session, command and agent daemon they start (a daemon stays
in it after it is reparented to init). ``other_cores`` is the rest: load on the machine that is not this
benchmark. Without the cgroup (``hosts_cgroup`` None) the hosts' side cannot be measured: reaped ``cutime`` misses
most of it, so the two figures are left out rather than guessed.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

from _machine import machine_busy_s


def rss_mb(field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def cgroup_cpu_s(usage_path: str | None) -> float | None:
    if usage_path is None:
        return None
    return int(Path(usage_path).read_text()) / 1e9


class Window:
    """Wall, own CPU, machine CPU and the bench's other processes' CPU between ``start`` and ``stop``."""

    def __init__(self, hosts_cgroup: str | None) -> None:
        self.hosts_cgroup = hosts_cgroup

    def start(self) -> None:
        self.usage0 = resource.getrusage(resource.RUSAGE_SELF)
        self.machine0 = machine_busy_s()
        self.hosts0 = cgroup_cpu_s(self.hosts_cgroup)
        self.wall0 = time.perf_counter()

    def stop(self) -> dict[str, float | None]:
        wall = time.perf_counter() - self.wall0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        machine = machine_busy_s() - self.machine0
        hosts_now = cgroup_cpu_s(self.hosts_cgroup)
        user = usage.ru_utime - self.usage0.ru_utime
        system = usage.ru_stime - self.usage0.ru_stime
        result: dict[str, float | None] = {
            "wall_s": wall,
            "cpu_s": user + system,
            "cpu_user_s": user,
            "cpu_sys_s": system,
            "machine_busy_cores": machine / wall,
            "hosts_cpu_s": None,  # sshd sessions, commands and agents: the hosts' side
            "other_cores": None,
        }
        if hosts_now is not None and self.hosts0 is not None:
            hosts = hosts_now - self.hosts0
            result["hosts_cpu_s"] = hosts
            result["other_cores"] = max(0.0, machine - hosts - user - system) / wall
        return result
