"""A 100 MB step served by a real server process: its peak memory stays bounded whatever is read (the capped
seed answer, tail pages, a download, a search, the archive).

Measured from /proc/<pid>/status: RssAnon (what the process allocates) sampled every 5 ms, and VmHWM (peak
resident). On SQLite, VmHWM also counts the database file's pages the reader maps (``PRAGMA mmap_size``): page
cache shared with the kernel, not the server's memory, so the bound there is on anonymous memory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.support.logs import append, finish, ok, running_job
from tests.support.services import TEST_SECRET_KEY, TEST_TIME_ZONE

CHUNK_LINES = 10_000
CHUNKS = 100  # x 10,000 lines x ~105 bytes: about 100 MB in one step
MIB = 1024 * 1024


def memory(pid: int) -> dict[str, int]:
    """VmHWM (peak resident), RssAnon and RssFile of a process, in bytes."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "RssAnon", "RssFile"):
            found[name] = int(value.split()[0]) * 1024
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serving_a_100_mb_step_keeps_the_server_memory_bounded(services, auth, tmp_path):
    job = running_job(services)
    padding = "x" * 64
    for chunk in range(CHUNKS):
        lines = [f"[2021-09-16 15:06:04 INFO] {chunk:03d}.{n:05d} {padding}" for n in range(CHUNK_LINES)]
        if chunk == CHUNKS - 1:
            lines[-1] = "[2021-09-16 15:06:04 ERROR] the needle"
        append(services, job.record_id, 1, lines)
    finish(services, job.record_id)
    total = sum(len(f"[2021-09-16 15:06:04 INFO] 000.00000 {padding}") + 1 for _ in range(CHUNK_LINES * CHUNKS))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NODEOPS_")},
        "NODEOPS_DATABASE_URL": services.settings.database_url,
        "NODEOPS_DATA_DIR": str(tmp_path / "server"),
        "NODEOPS_SECRET_KEY": TEST_SECRET_KEY,
        "NODEOPS_TIME_ZONE": TEST_TIME_ZONE,
        # the watch for silent agents first looks after a period (capped at 30 s), past the measure: its own
        # connection and thread (~10 MiB, once) are not the log's memory
        "NODEOPS_AGENT_HEARTBEAT_INTERVAL_S": "3600",
    }
    server = subprocess.Popen(
        [sys.executable, "-c", "from nodeops.cli.app import main; main()", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and server.poll() is None, "server did not start"
                    time.sleep(0.2)
            params = {**auth, "instance_id": job.instance_id}
            baseline = memory(server.pid)
            peak_anon = [baseline["RssAnon"]]
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.is_set():
                    peak_anon[0] = max(peak_anon[0], memory(server.pid)["RssAnon"])
                    time.sleep(0.005)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()

            seed = ok(client.get(f"/api/job/{job.job_id}/log/", params=params))
            assert len(seed[1]["log"].encode()) < MIB + 1024 and "more bytes of this step not shown" in seed[1]["log"]
            cursor, pages = "", 0
            while pages < 4:
                data = ok(
                    client.get(
                        f"/api/job/{job.job_id}/log/tail/", params={**params, "cursor": cursor, "max_bytes": 8 * MIB}
                    )
                )
                cursor, pages = data["cursor"], pages + 1
            received = 0
            with client.stream("GET", f"/api/job/{job.job_id}/log/download/", params=params) as response:
                for block in response.iter_bytes():
                    received += len(block)
            assert received > total
            found = ok(client.get(f"/api/job/{job.job_id}/log/search/", params={**auth, "q": "needle"}))
            assert found["total"] == 1 and found["list"][0]["level"] == "ERROR"
            packed = 0
            with client.stream("GET", f"/api/job/{job.job_id}/log/archive/", params=auth) as response:
                for block in response.iter_bytes():
                    packed += len(block)
            assert packed > 0
            sampling.set()
            sampler.join()
            peak = memory(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    anon = peak_anon[0] - baseline["RssAnon"]
    hwm = peak["VmHWM"] - baseline["VmHWM"]
    print(
        f"\n{services.db.engine.dialect.name}: serving a {total / MIB:.0f} MiB step: RssAnon peak "
        f"{peak_anon[0] / MIB:.1f} MiB (+{anon / MIB:.1f}), VmHWM {peak['VmHWM'] / MIB:.1f} MiB (+{hwm / MIB:.1f}), "
        f"RssFile {peak['RssFile'] / MIB:.1f} MiB"
    )
    assert anon < 96 * MIB, f"anonymous memory grew by {anon / MIB:.1f} MiB serving a {total / MIB:.0f} MiB step"
    if not services.db.is_sqlite:
        assert hwm < 96 * MIB, f"peak memory grew by {hwm / MIB:.1f} MiB serving a {total / MIB:.0f} MiB step"
