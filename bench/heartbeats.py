"""Benchmark of agent heartbeats (``POST /api/agent/heartbeat/``) against the HTTP floor, in one run.

1. Fill a fresh database with ``--agents`` agent hosts (default 100,000), each with its own heartbeat token, whose
   SHA-256 is stored as the engine stores it: SQLite in a temp ``NODEOPS_DATA_DIR``; with ``--database
   postgresql[=URL]`` also a throwaway PostgreSQL database created on that server (default: the URL in
   ``NODEOPS_TEST_PG_URL``), dropped at the end.
2. Start the server as ``make run`` does (``.venv/bin/nodeops serve``) on a free 127.0.0.1 port; check that good
   heartbeats are accepted and a wrong token is refused.
3. Drive heartbeats with wrk: every request is the body of a random agent of the whole fleet.
4. The HTTP floor (``bench/_floor.py``: a bare ASGI app answering a fixed envelope of the accepted answer's
   size), driven by the same script.
5. Print the table: heartbeats/s, p50, p99, x HTTP floor, server CPU µs per heartbeat, and the targets.

``--baseline REF`` also serves the same database with the code of git ref ``REF`` (e.g. ``main``), right before
the working tree's server, so before and after are measured in one run.

Run: ``.venv/bin/python bench/heartbeats.py [--agents 100000 --duration 10 --connections 64] [--database
postgresql[=URL]] [--baseline main]``, ``--quick`` for a smoke run. Everything stays on 127.0.0.1; every
process started here is stopped by pid on exit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import secrets
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _postgres
import sqlalchemy as sa
from _machine import wait_quiet
from log_api import (
    _DONE_LUA,
    BIN,
    FLOOR_SCRIPT,
    HOST,
    ROOT,
    Processes,
    Run,
    add_wait_quiet,
    free_port,
    run_bench,
    run_wrk,
    say,
    seeded_threads_lua,
    server,
    tail,
)

from nodeops.settings import Settings
from nodeops.store import migrate
from nodeops.store.db import Database
from nodeops.store.models import Host, utcnow

HEARTBEAT_PATH = "/api/agent/heartbeat/"
HOST_ID_BASE = 500_001
TARGET_RPS = 5000.0
TARGET_P99_MS = 50.0
FLOOR_ROW = "HTTP floor"
NOISY_CORES = 0.2  # CPU of other processes (PostgreSQL excepted) above this makes a run's figures suspect
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only: ignore any *_proxy


@dataclass(frozen=True, slots=True)
class Fleet:
    """The agents of a filled database: host ``HOST_ID_BASE + i`` sends token ``f"{salt}-{i}"``."""

    agents: int
    salt: str

    def token(self, index: int) -> str:
        return f"{self.salt}-{index}"

    def body(self, index: int, *, token: str | None = None) -> bytes:
        token = self.token(index) if token is None else token
        return json.dumps(
            {"bk_host_id": HOST_ID_BASE + index, "token": token, "version": f"1.0.{index % 10}"},
            separators=(",", ":"),
        ).encode()


@dataclass(frozen=True, slots=True)
class Backend:
    """A database the server runs on: its name in the table, its URL, and its data dir."""

    name: str
    url: str  # "" = SQLite in data_dir
    data_dir: Path


# ---------------------------------------------------------------------------------------------------- fill


# every agent's last heartbeat before a run: it is in its rhythm (recent, so the service's watch for agents that
# stop, told to tolerate SILENCE_TOLERATED missed heartbeats, marks none of them during the runs)
BEFORE = datetime.now(UTC) - timedelta(minutes=1)
SILENCE_TOLERATED = 1000  # NODEOPS_AGENT_MISSED_HEARTBEATS: 1000 intervals of 30 s, longer than any bench


def fill(db: Database, fleet: Fleet, batch: int = 5000) -> None:
    """Migrate and insert the fleet's hosts, each with its token's SHA-256 and an agent already RUNNING, of the
    version it reports, that has reported before (steady state: no heartbeat is an agent's first after a start,
    which would also send a notification)."""
    migrate.upgrade(db)
    now = utcnow()
    for first in range(0, fleet.agents, batch):
        rows = []
        for i in range(first, min(first + batch, fleet.agents)):
            k = i + 1
            rows.append(
                {
                    "bk_host_id": HOST_ID_BASE + i,
                    "bk_biz_id": 2,
                    "bk_cloud_id": 0,
                    "inner_ip": f"127.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}",  # never contacted
                    "os_type": "LINUX",
                    "transport": "ssh",
                    "agent_status": "RUNNING",
                    "agent_version": f"1.0.{i % 10}",
                    "last_heartbeat_at": BEFORE,
                    "agent_token_hash": hashlib.sha256(fleet.token(i).encode()).digest(),
                    "created_at": now,
                    "updated_at": now,
                }
            )
        with db.session() as session:
            session.execute(sa.insert(Host), rows)


def heartbeats_recorded(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(sa.select(sa.func.count()).where(Host.last_heartbeat_at > BEFORE)) or 0)


def forget_heartbeats(db: Database) -> None:
    with db.session() as session:
        session.execute(sa.update(Host).values(last_heartbeat_at=BEFORE))


# ---------------------------------------------------------------------------------------------------- load


def write_lua(path: Path, fleet: Fleet, seed: int) -> None:
    """A wrk script posting the heartbeat of a random agent of the fleet on every request."""
    path.write_text(
        f"""-- generated by bench/heartbeats.py
local agents = {fleet.agents}
local base = {HOST_ID_BASE}
local salt = "{fleet.salt}"
local random = math.random
local headers = {{["Content-Type"] = "application/json"}}
"""
        + seeded_threads_lua(seed)
        + f"""
function request()
  local i = random(agents) - 1
  local body = '{{"bk_host_id":' .. (base + i) .. ',"token":"' .. salt .. '-' .. i
    .. '","version":"1.0.' .. (i % 10) .. '"}}'
  return wrk.format("POST", "{HEARTBEAT_PATH}", headers, body)
end
"""
        + _DONE_LUA
    )


def post(url: str, body: bytes) -> bytes:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with _OPENER.open(request, timeout=10) as response:
        raw: bytes = response.read()
        return raw


def check_answers(base: str, fleet: Fleet) -> int:
    """Post 20 good heartbeats and one of a wrong token; returns the accepted answer's size in bytes."""
    size = 0
    for index in range(0, fleet.agents, max(1, fleet.agents // 20)):
        raw = post(base + HEARTBEAT_PATH, fleet.body(index))
        if not json.loads(raw).get("result"):
            raise RuntimeError(f"heartbeat of agent {index} refused: {raw[:300]!r}")
        size = len(raw)
    refused = json.loads(post(base + HEARTBEAT_PATH, fleet.body(0, token="not-the-token")))
    if refused.get("code") != 3800403:
        raise RuntimeError(f"a wrong token was not refused with 3800403: {refused}")
    return size


def expected_hosts(agents: int, heartbeats: int) -> float:
    """How many distinct agents ``heartbeats`` requests of a random agent each reach, on average."""
    return agents * (1 - math.exp(-heartbeats / agents))


def baseline_src(ref: str, into: Path) -> Path:
    """The ``src`` folder of git ref ``ref``, extracted into ``into`` (the working tree is not touched)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "src"], check=True, capture_output=True
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    tar_path = into / "baseline.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


# ---------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark agent heartbeats against the HTTP floor.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--agents", type=int, default=100_000, help="agent hosts in the database")
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load after each start")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--database",
        action="append",
        default=[],
        metavar="postgresql[=URL]",
        help="also run on a throwaway database of this PostgreSQL server (default URL: $NODEOPS_TEST_PG_URL)",
    )
    parser.add_argument(
        "--baseline", metavar="REF", help="also serve with the code of this git ref (e.g. main), before the tree's"
    )
    parser.add_argument("--seed", type=int, default=20261206, help="seed of the request mix")
    add_wait_quiet(parser)
    parser.add_argument("--quick", action="store_true", help="smoke defaults: 2,000 agents, 2s runs, 1s warm-up")
    args = parser.parse_args(argv)
    if args.quick:  # smaller defaults; options given explicitly still win
        parser.set_defaults(agents=2000, duration=2, warmup=1)
        args = parser.parse_args(argv)
    if min(args.agents, args.connections, args.threads) < 1 or args.duration <= 0:
        parser.error("agents, connections, threads and duration must be positive")
    args.pg_urls = []
    for value in args.database:
        kind, _, url = value.partition("=")
        if kind != "postgresql":
            parser.error(f"--database {value!r}: expected postgresql or postgresql=URL (SQLite always runs)")
        url = url or os.environ.get("NODEOPS_TEST_PG_URL", "")
        if not url:
            parser.error("--database postgresql needs a URL: postgresql=URL or NODEOPS_TEST_PG_URL")
        args.pg_urls.append(url)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run_bench(parse_args(argv), "nodeops-bench-beats-", _run)


def _run(args: argparse.Namespace, procs: Processes, temp: Path, began: float) -> int:
    fleet = Fleet(agents=args.agents, salt=secrets.token_hex(8))
    lua = temp / "heartbeats.lua"
    write_lua(lua, fleet, args.seed)
    servers: list[tuple[str, dict[str, str]]] = []
    if args.baseline:
        src = baseline_src(args.baseline, temp / "baseline")
        servers.append((f"before ({args.baseline})", {"PYTHONPATH": str(src)}))
        found = subprocess.run(
            [str(BIN / "python"), "-c", "import nodeops; print(nodeops.__file__)"],
            env={**os.environ, "PYTHONPATH": str(src)},
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not found.startswith(str(src)):
            raise RuntimeError(f"the baseline server would import nodeops from {found}, not {src}")
    servers.append(("after (this tree)" if args.baseline else "", {}))
    runs: list[tuple[str, Run, int]] = []  # (database, run, heartbeats recorded)
    warnings: list[str] = []
    answer_size = 0

    def measure(name: str, url: str, pid: int) -> tuple[Run, int]:
        """One measured wrk run after the warm-up; returns it and how many random agents its requests drew."""
        wait_quiet(args.wait_quiet, say)
        sent = 0
        if args.warmup > 0:
            warm = run_wrk(
                "warm-up", url, lua, duration=args.warmup, connections=args.connections, threads=args.threads
            )
            sent = warm.requests
        say(f"{name}: wrk -t{args.threads} -c{args.connections} -d{args.duration:.0f}s ...")
        run = run_wrk(
            name, url, lua, duration=args.duration, connections=args.connections, threads=args.threads, server_pid=pid
        )
        # the warm-up's requests are the start of the run's own sequence (same seed): the run reaches as many
        return run, max(sent, run.requests)

    backends = [Backend("SQLite", "", temp / "sqlite")]
    with pg_databases(args.pg_urls) as pg_urls:
        backends += [Backend("PostgreSQL", url, temp / f"pg{n}") for n, url in enumerate(pg_urls)]
        for backend in backends:
            settings = Settings(data_dir=backend.data_dir, database_url=backend.url)
            db = Database.connect(settings.database_url)
            try:
                say(f"{backend.name}: filling {fleet.agents} agent hosts ...")
                started = time.perf_counter()
                fill(db, fleet)
                say(f"{backend.name}: filled in {time.perf_counter() - started:.1f}s")
                for label, extra_env in servers:
                    forget_heartbeats(db)
                    port = free_port()
                    base = f"http://{HOST}:{port}"
                    env = {
                        **os.environ,
                        **extra_env,
                        "NODEOPS_DATA_DIR": str(backend.data_dir),
                        "NODEOPS_PORT": str(port),
                        "NODEOPS_HOST": HOST,
                        "NODEOPS_DATABASE_URL": backend.url,
                        "NODEOPS_AGENT_MISSED_HEARTBEATS": str(SILENCE_TOLERATED),
                    }
                    log = temp / f"nodeops-{backend.data_dir.name}-{len(runs)}.log"
                    name = f"heartbeats {label}".strip()
                    say(f"{backend.name}, {name}: starting nodeops serve on {base} ...")
                    with server(procs, [str(BIN / "nodeops"), "serve"], env, base + "/healthz", log) as api:
                        answer_size = check_answers(base, fleet)
                        run, sent = measure(f"{backend.name}, {name}", base, api.pid)
                    if re.search(r"Traceback|ERROR", log.read_text(errors="replace")):
                        say(f"warning: the server logged errors:\n{tail(log)}")
                    recorded, expected = heartbeats_recorded(db), expected_hosts(fleet.agents, sent + 21)
                    if recorded < 0.95 * expected:
                        warnings.append(
                            f"warning: after {run.name}, {recorded} hosts have a heartbeat, {expected:.0f} expected: "
                            "some heartbeats were refused"
                        )
                    runs.append((backend.name, run, recorded))
            finally:
                db.dispose()

    floor_port = free_port()
    floor_base = f"http://{HOST}:{floor_port}"
    floor_cmd = [str(BIN / "python"), str(FLOOR_SCRIPT), "--port", str(floor_port), "--size", str(answer_size)]
    say(f"HTTP floor: bench/_floor.py with a {answer_size} B body on {floor_base} ...")
    with server(procs, floor_cmd, dict(os.environ), floor_base + "/", temp / "floor.log") as floor:
        floor_run, _ = measure(FLOOR_ROW, floor_base, floor.pid)
    report(args, fleet, answer_size, runs, floor_run, warnings, time.perf_counter() - began)
    return 0


@contextmanager
def pg_databases(pg_urls: Sequence[str]) -> Iterator[list[str]]:
    """A throwaway database on each PostgreSQL server, all dropped on exit."""
    if not pg_urls:
        yield []
        return
    with _postgres.database(pg_urls[0]) as url, pg_databases(pg_urls[1:]) as rest:
        yield [url, *rest]


def report(
    args: argparse.Namespace,
    fleet: Fleet,
    answer_size: int,
    runs: list[tuple[str, Run, int]],
    floor: Run,
    warnings: list[str],
    runtime_s: float,
) -> None:
    out: list[str] = []
    w = out.append
    w("")
    w(
        f"heartbeat benchmark: {fleet.agents} agents, a random agent's heartbeat per request, "
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:.0f}s, {os.cpu_count()} CPUs; "
        f"accepted answer {answer_size} B"
    )
    w("")
    header = (
        f"{'':42} {'heartbeats/s':>12} {'p50 ms':>7} {'p99 ms':>7} {'x floor':>8} {'server µs':>10} "
        f"{'busy':>5} {'other':>6} {'recorded':>9}"
    )
    w(header)
    w("-" * len(header))
    for _, run, recorded in runs:
        w(_row(run, floor, f"{recorded:9d}"))
    w(_row(floor, floor, f"{'-':>9}"))
    w("")
    w(f"targets: ≥ {TARGET_RPS:.0f} heartbeats/s and p99 ≤ {TARGET_P99_MS:.0f} ms")
    for _, run, _recorded in runs:
        rps_ok, p99_ok = run.rps >= TARGET_RPS, run.p99_ms <= TARGET_P99_MS
        w(
            f"  {run.name:40} {run.rps:7.0f}/s {'PASS' if rps_ok else 'MISS'}   "
            f"p99 {run.p99_ms:6.2f} ms {'PASS' if p99_ok else 'MISS'}"
        )
    w("server µs = server CPU per heartbeat (utime + stime of the nodeops process); busy = server CPU s / wall s;")
    w("other = CPU of other processes during the run, in cores (PostgreSQL's backends count here); recorded =")
    w("hosts with a heartbeat newer than the fill after the run, its warm-up and checks; the bench")
    w("warns when that is under 95% of the distinct agents the requests reached.")
    for _, run, _recorded in [*runs, ("", floor, 0)]:
        if run.errors:
            w(f"wrk errors in {run.name}: {run.errors}")
    out.extend(warnings)
    noisy = [run.name for db_name, run, _ in runs if db_name == "SQLite" and (run.other_cores or 0) > NOISY_CORES]
    if (floor.other_cores or 0) > NOISY_CORES:
        noisy.append(floor.name)
    if noisy:
        w(f"warning: other load on the machine during {', '.join(noisy)} (> {NOISY_CORES} cores): figures are noisy")
    w(f"load average at start: {args.loadavg}")
    w(f"total runtime {runtime_s:.1f}s")
    print("\n".join(out), flush=True)


def _row(run: Run, floor: Run, recorded: str) -> str:
    return (
        f"{run.name:42} {run.rps:12.0f} {run.p50_ms:7.2f} {run.p99_ms:7.2f} {run.rps / floor.rps:7.2f}x "
        f"{run.server_cpu_us or 0:10.0f} {(run.server_cpu_share or 0) * 100:4.0f}% {run.other_cores or 0:6.2f} "
        f"{recorded}"
    )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted; stopped every process the bench started")
        sys.exit(130)
