"""``bound_heap``: the C heap of a long-running process (``nodeops serve``, ``nodeops worker``) kept to two arenas.

glibc's malloc gives each thread that allocates while another holds an arena an arena of its own, up to eight per
core, and memory freed in one arena is not reused by another. The service reads on a pool of threads (the
database's) beside its event loop and its background loops (the agent watch, the notifier), so a large answer (a
1 MiB log page, a download's blocks) built on one thread and then on another leaves a copy's worth of freed
memory in each arena: measured serving a 100 MB step (tests/api/test_huge_log.py), two arenas keep 25 to 30 MiB
less resident than the default. Python's small objects come from its own allocator, and the GIL lets one thread
run Python at a time, so few threads ever contend for an arena. ``MALLOC_ARENA_MAX`` in the environment, if set,
wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number (glibc malloc.h)


def bound_heap() -> bool:
    """Limit glibc's malloc to ``ARENAS`` arenas unless ``MALLOC_ARENA_MAX`` says otherwise; False where there is
    no glibc (nothing to do) or the call was refused."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(_M_ARENA_MAX, ARENAS))
