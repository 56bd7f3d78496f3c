"""``bound_heap`` in a real process: glibc takes the arena limit, and an operator's MALLOC_ARENA_MAX wins.
What it is for, the server's memory serving a huge step, is measured by tests/api/test_huge_log.py."""

from __future__ import annotations

import os
import subprocess
import sys

CALL = "from nodeops.cli.heap import bound_heap; print(bound_heap())"


def run(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", CALL], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_glibc_takes_the_arena_limit():
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert run(env) == "True"


def test_an_operators_malloc_arena_max_wins():
    assert run({**os.environ, "MALLOC_ARENA_MAX": "4"}) == "False"
