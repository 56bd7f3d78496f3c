"""``nodeops worker`` with ``NODEOPS_LOG_FORMAT=json``: a real worker process on the test PostgreSQL and Redis
writes JSON lines only, on stderr and stdout alike (Celery's banner included, if it printed one), from its start
to its warm shutdown on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess

from tests.support.cluster import NODEOPS, Cluster


def test_a_worker_writes_json_lines_from_start_to_stop(cluster: Cluster) -> None:
    data_dir = cluster.root / "json-worker"
    data_dir.mkdir()
    err_path = cluster.root / "json-worker.out"
    with err_path.open("wb") as err:
        process = subprocess.Popen(
            [NODEOPS, "worker", "--name", "json-worker", "--concurrency", "2"],
            env=cluster.env(data_dir, NODEOPS_LOG_FORMAT="json"),
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            cwd=cluster.root,
        )
    try:
        cluster.wait_for(lambda: "json-worker" in " ".join(cluster.live_workers()), "the worker's lease", 60)
        # the lease is taken before the start line is written and before Celery's warm-shutdown handler is in
        # place: a SIGTERM in between ends the process at once, silently, so wait for the line itself
        cluster.wait_for(lambda: b"worker_started" in err_path.read_bytes(), "the worker's start line", 60)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    lines = [json.loads(text) for text in err_path.read_text(encoding="utf-8").splitlines()]
    assert lines, "the worker logged nothing"
    for line in lines:
        assert {"ts", "level", "logger", "message"} <= set(line), line
        assert "request_id" not in line  # no request is served by a worker
    started = [line for line in lines if line.get("action") == "worker_started"]
    assert started and "json-worker" in started[0]["message"], lines
