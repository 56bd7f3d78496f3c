"""A ``nodeops serve`` started as a subprocess: wait until it answers ``/healthz``, failing the test with its log
if it exits or stays silent."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest


def wait_until_serving(process: subprocess.Popen[bytes], base_url: str, log_path: Path, timeout_s: float) -> None:
    """Return once ``base_url`` answers ``/healthz``; fail with the process's log (``log_path``) when it exits
    first or does not answer within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            pytest.fail(f"nodeops serve exited {process.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"nodeops serve did not answer /healthz within {timeout_s}s:\n{log_path.read_text()}")
        time.sleep(0.1)
