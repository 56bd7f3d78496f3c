"""Benchmark of a fleet-wide agent upgrade (UPGRADE_AGENT over SSH) against a bare-asyncssh floor, in one run.

For each fleet size N (default 50 200 500; ``--quick`` = 10):

1. N loopback SSH hosts (``bench/_sshd_hosts.py``: one sshd per 16 addresses on 127.0.11.x, 127.0.12.x, ...,
   password login as ``nodeops-test``, a setup_path per host owned by that user), emptied between sizes.
2. The service (``bench/_fanout_service.py``, one process: ``Services`` + uvicorn serving ``create_app``, so the
   heartbeats land in it) installs the agent on all N hosts (INSTALL_AGENT), registers version 0.9.N, measures
   a few quiet seconds of heartbeats, then runs the timed UPGRADE_AGENT on all N (job limit 100): wall time
   from the submit to the job's end, the process's CPU seconds and its peak RSS over that window.
3. The floor (``bench/_fanout_floor.py``, no nodeops code), once the service has exited: the same remote actions
   with bare asyncssh at the same concurrency (test -f, SFTP put, stop, unpack, start), then the wait for the
   new version's first heartbeat, received by a minimal HTTP server on the service's own port (the agents'
   ``server_url``). It upgrades to 0.9.N.1, a package of the same size.
4. The table, and the targets: wall ≤ 1.25x the floor at N=200, service CPU ≤ 20 ms per host (every N), peak
   RSS ≤ 300 MB at N=500.

``--executor embedded,celery --workers 1,2`` adds the distributed mode (``bench/_fanout_cluster.py``): after the
floor, the agents are stopped and the hosts emptied, and a cluster of real processes (a private Redis, a PostgreSQL
database of its own, ``nodeops serve`` in celery mode receiving the heartbeats, ``nodeops worker`` processes with
the job limit split across them) installs the agent on all N, then runs the same timed UPGRADE_AGENT with each
number of workers in turn. The controller's CPU is the API's plus all workers'. A second table shows floor,
embedded and celery side by side, with the distributed mode's targets: wall ≤ 1.15x the floor at N=500 and
controller CPU ≤ 20 ms per host. ``--executor celery`` alone measures the floor after the cluster instead.

Run as root: ``.venv/bin/python bench/fanout.py [N ...] [--quick] [--profile DIR]``. Only 127.0.0.0/8 is used.
Everything started here (sshd, the service, the floor, the agents on the hosts) is stopped by pid and the temp
folder removed on exit, on error, and on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncssh

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import wait_quiet
from _sshd_hosts import Host, LabError, LabUser, SSHDFleet, ensure_user

from nodeops.agent.package import build_package

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
PYTHON = ROOT / ".venv" / "bin" / "python"
SERVICE_SCRIPT = HERE / "_fanout_service.py"
FLOOR_SCRIPT = HERE / "_fanout_floor.py"
CLUSTER_SCRIPT = HERE / "_fanout_cluster.py"
CLUSTER_TARGET_RATIO, CLUSTER_TARGET_RATIO_N = 1.15, 500
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:54329/postgres"
TARGET_RATIO, TARGET_RATIO_N = 1.25, 200
TARGET_CPU_MS = 20.0
TARGET_RSS_MB, TARGET_RSS_N = 300.0, 500
NOISY_CORES = 0.2  # other load above this during a window makes its figures suspect
MIN_IDLE_BEATS = 20  # heartbeats the quiet window needs before its CPU per heartbeat means anything


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


class Children:
    """The service and floor processes, stopped by pid on exit, error or signal."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def run(self, cmd: Sequence[str], *, log: Path, timeout_s: float) -> None:
        """Run ``cmd`` to its end (output in ``log``), in its own session so a Ctrl-C reaches only the bench."""
        with open(log, "wb") as out:
            proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._procs.append(proc)
        try:
            code = proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{Path(cmd[1]).name} did not finish in {timeout_s:.0f}s; its log:\n{tail(log)}") from None
        finally:
            self.stop(proc)
        if code != 0:
            raise BenchError(f"{Path(cmd[1]).name} exited with code {code}; its log:\n{tail(log)}")

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self._procs):
            self.stop(proc)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Standby:
    """Answers the agents' heartbeats on their port while neither the service nor the floor holds it.

    Without it, agents whose heartbeats fail back off (to twice their interval, at most 60 s), and the next
    round's windows would see a quieter fleet than the first. Stopped before a child starts, started again when
    it has exited.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        if self.server is None:
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), _StandbyHandler)
            threading.Thread(target=self.server.serve_forever, name="standby", daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class _StandbyHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"result":true,"code":0,"message":"success","data":null}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def write_private(path: Path, data: dict[str, Any]) -> None:
    """JSON holding the password: readable by root only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(data, file)


def prove_login(host: Host, user: LabUser, fleet: SSHDFleet) -> None:
    async def login() -> int:
        async with asyncssh.connect(
            host.ip,
            host.port,
            username=user.name,
            password=user.password,
            known_hosts=None,
            client_keys=None,
            agent_path=None,
            config=[],
        ) as conn:
            result = await conn.run("command -v python3 && test -w " + host.setup_path)
            return result.exit_status or 0

    try:
        status = asyncio.run(login())
    except (OSError, asyncssh.Error) as exc:
        where = f"{host.ip}:{host.port}"
        raise BenchError(f"{user.name} cannot log in to {where} ({exc}); sshd: {fleet.log_tail()}") from exc
    if status != 0:
        raise BenchError(f"{host.ip}: python3 is missing or {host.setup_path} is not writable for {user.name}")


# ---------------------------------------------------------------------------------------------------- one size


@dataclass
class Round:
    """One timed service upgrade and the floor's upgrade right after it, on the same hosts."""

    idle: dict[str, Any]
    service: dict[str, Any]
    floor: dict[str, Any]

    @property
    def ratio(self) -> float:
        return float(self.service["wall_s"] / self.floor["wall_s"])


@dataclass
class SizeResult:
    n: int
    install: dict[str, Any]
    rounds: list[Round]
    lifetime_peak_rss_mb: float
    profiles: list[str]
    floor_only: dict[str, Any] | None = None  # the floor measured after the cluster (no embedded rounds)
    cluster: dict[str, Any] | None = None  # the distributed mode's rounds, by number of workers

    def floor_wall_s(self) -> float:
        if self.rounds:
            return self.median("floor", "wall_s")
        assert self.floor_only is not None
        return float(self.floor_only["wall_s"])

    def median(self, side: str, key: str) -> float:
        return statistics.median(getattr(r, side)[key] for r in self.rounds)

    def median_or_none(self, side: str, key: str) -> float | None:
        values = [getattr(r, side)[key] for r in self.rounds]
        return None if None in values else statistics.median(values)

    @property
    def ratio(self) -> float:
        return statistics.median(r.ratio for r in self.rounds)

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.median("service", "cpu_s") / self.n

    @property
    def peak_rss_mb(self) -> float:
        return max(r.service["peak_rss_mb"] for r in self.rounds)


def check(result: dict[str, Any], n: int, phase: str) -> None:
    phase_result = result.get(phase)
    if phase_result is None:
        raise BenchError(f"the service stopped before {phase}")
    if phase_result.get("records") != {"SUCCESS": n}:
        failures = "\n  ".join(phase_result.get("failures", []))
        raise BenchError(f"{phase}: not every host succeeded: {phase_result.get('records')}\n  {failures}")


def run_size(
    n: int, hosts: list[Host], fleet: SSHDFleet, user: LabUser, children: Children, temp: Path, args: argparse.Namespace
) -> SizeResult:
    """Install on ``n`` hosts, then ``args.repeat`` rounds of (service upgrade, floor upgrade)."""
    fleet.reset(hosts)
    wait_quiet(args.wait_quiet, say)  # before the install: no agent runs yet, so what is busy is other work
    run_dir = temp / f"n{n}"
    run_dir.mkdir(mode=0o700)
    port = free_port()  # the agents' server_url: the service, the floor and the standby take turns on it
    data_dir = run_dir / "data"
    common = {
        "port": port,
        "limit": args.limit,
        "username": user.name,
        "password": user.password,
        "settle_s": args.settle,
        "hosts_cgroup": fleet.cpu_usage_path,
    }
    standby = Standby(port)

    def run_child(script: Path, name: str, plan: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        write_private(run_dir / f"{name}-plan.json", plan)
        standby.stop()
        children.run(
            [str(PYTHON), str(script), str(run_dir / f"{name}-plan.json"), str(run_dir / f"{name}.json")],
            log=run_dir / f"{name}.log",
            timeout_s=timeout_s,
        )
        standby.start()
        result: dict[str, Any] = json.loads((run_dir / f"{name}.json").read_text())
        return result

    rounds: list[Round] = []
    install: dict[str, Any] = {}
    lifetime_peak = 0.0
    profiles: list[str] = []
    cluster: dict[str, Any] | None = None
    floor_only: dict[str, Any] | None = None

    def run_floor(number: int, service_hosts: list[dict[str, Any]], known_hosts: str | None) -> dict[str, Any]:
        floor_version = f"0.9.{n}.{2 * number + 1}"  # a package of the same size
        package = build_package(floor_version, run_dir / "floor-packages")
        say(f"N={n}: floor: bare asyncssh upgrade to {floor_version} on the same {n} hosts ...")
        floor = run_child(
            FLOOR_SCRIPT,
            f"floor-{number + 1}",
            common
            | {
                "version": floor_version,
                "package": str(package.path),
                "known_hosts": known_hosts if args.host_key_policy != "off" else None,
                "hosts": service_hosts,
            },
            timeout_s=120 + n + args.settle,
        )
        if floor["ok"] != n:
            raise BenchError(f"floor: {n - floor['ok']} hosts failed:\n  " + "\n  ".join(floor["failures"]))
        say(f"N={n}: floor {floor['wall_s']:.2f}s, CPU {floor['cpu_s']:.2f}s")
        return floor

    try:
        for number in range(args.repeat if "embedded" in args.executors else 0):
            tag = f"N={n} round {number + 1}/{args.repeat}"
            # versions go up every time: 0.9.N.0 (service), 0.9.N.1 (floor), 0.9.N.2 (service), ...
            version = f"0.9.{n}.{2 * number}"
            profile = str(run_dir / f"service-n{n}-round{number + 1}") if args.profile else None
            what = f"install the agent on {n} hosts, then the" if number == 0 else "the"
            say(f"{tag}: service: {what} timed UPGRADE_AGENT to {version} ...")
            service = run_child(
                SERVICE_SCRIPT,
                f"service-{number + 1}",
                common
                | {
                    "data_dir": str(data_dir),
                    "host_key_policy": args.host_key_policy,
                    "install": number == 0,
                    "version": version,
                    "idle_s": args.idle,
                    "profile": profile,
                    "hosts": [{"ip": h.ip, "port": h.port, "setup_path": h.setup_path} for h in hosts],
                },
                timeout_s=300 + 2 * n,
            )
            if number == 0:
                check(service, n, "install")
                install = service["install"]
            check(service, n, "upgrade")
            up = service["upgrade"]
            if up["versions"] != {version: n}:
                raise BenchError(f"after the upgrade the hosts report versions {up['versions']}")
            lifetime_peak = max(lifetime_peak, service["lifetime_peak_rss_mb"])
            say(f"{tag}: service {up['wall_s']:.2f}s, CPU {up['cpu_s']:.2f}s, peak RSS {up['peak_rss_mb']:.0f} MB")

            floor = run_floor(number, service["hosts"], service["known_hosts"])
            rounds.append(Round(idle=service["idle"], service=up, floor=floor))
            if profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                for window in ("idle", "upgrade"):
                    if Path(f"{profile}-{window}.txt").exists():
                        profiles.append(str(shutil.copy(f"{profile}-{window}.txt", args.profile)))
        if "celery" in args.executors:
            fleet.reset(hosts)  # the cluster installs its own agents, registered in its own database
            cluster = run_cluster(n, hosts, run_dir, common, run_child, args)
            if not rounds:
                floor_only = run_floor(0, cluster["hosts"], cluster["known_hosts"])
    finally:
        standby.stop()
    fleet.stop_agents()
    return SizeResult(
        n=n,
        install=install,
        rounds=rounds,
        lifetime_peak_rss_mb=lifetime_peak,
        profiles=profiles,
        floor_only=floor_only,
        cluster=cluster,
    )


def run_cluster(
    n: int,
    hosts: list[Host],
    run_dir: Path,
    common: dict[str, Any],
    run_child: Any,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The distributed mode on ``n`` hosts: its own install, then one timed upgrade per entry of ``--workers``."""
    cluster_dir = run_dir / "cluster"
    cluster_dir.mkdir(mode=0o700)
    workers = ", ".join(str(w) for w in args.workers)
    say(
        f"N={n}: celery: Redis, PostgreSQL, API and workers; install on {n} hosts, "
        f"then UPGRADE_AGENT with {workers} workers ..."
    )
    result: dict[str, Any] = run_child(
        CLUSTER_SCRIPT,
        "cluster",
        common
        | {
            "run_dir": str(cluster_dir),
            "pg_admin_url": args.pg_url,
            "redis_server": args.redis_server,
            "secret_key": secrets.token_urlsafe(32),
            "host_key_policy": args.host_key_policy,
            "workers": args.workers,
            # each round: an untimed upgrade of min(N, limit) hosts to 0.9.N.(100+2i), then the timed one of all N
            # to 0.9.N.(101+2i)
            "versions": [f"0.9.{n}.{101 + 2 * i}" for i in range(len(args.workers))],
            "warmup_versions": [f"0.9.{n}.{100 + 2 * i}" for i in range(len(args.workers))],
            "profile": str(cluster_dir / f"celery-n{n}") if args.profile else None,
            "py_spy": args.py_spy,
            "hosts": [{"ip": h.ip, "port": h.port, "setup_path": h.setup_path} for h in hosts],
        },
        900 + 8 * n,
    )
    check(result, n, "install")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        result["profiles"] = [str(shutil.copy(p, args.profile)) for p in sorted(cluster_dir.glob(f"celery-n{n}-*.txt"))]
    for count in args.workers:
        up = result["rounds"].get(str(count))
        if up is None or up["records"] != {"SUCCESS": n}:
            raise BenchError(
                f"celery, {count} workers: not every host succeeded: {up and up['records']}\n  "
                + "\n  ".join((up or {}).get("failures", []))
            )
        version = f"0.9.{n}.{101 + 2 * args.workers.index(count)}"
        if up["versions"] != {version: n}:
            raise BenchError(f"celery, {count} workers: after the upgrade the hosts report versions {up['versions']}")
        warm = up.get("warmup")
        if warm is not None and warm["records"] != {"SUCCESS": warm["hosts"]}:
            raise BenchError(f"celery, {count} workers: the warm-up upgrade did not succeed: {warm['records']}")
        say(
            f"N={n}: celery --workers {count}: {up['wall_s']:.2f}s, CPU {up['cpu_s']:.2f}s "
            f"(API {up['api_cpu_s']:.2f}s, workers {up['workers_cpu_s']:.2f}s of which kernel "
            f"{up['workers_sys_s']:.2f}s), hosts per worker {up['owners']}"
        )
    return result


# ---------------------------------------------------------------------------------------------------- report


def report(results: list[SizeResult], args: argparse.Namespace, runtime_s: float) -> None:
    cpus = os.cpu_count() or 1
    out: list[str] = []
    w = out.append
    if any(r.rounds for r in results):
        report_embedded(results, args, cpus, out)
    if "celery" in args.executors:
        report_executors(results, args, out)
    w("")
    w(f"load average at start: {args.loadavg}; total runtime {runtime_s:.0f}s")
    print("\n".join(out), flush=True)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))


def report_embedded(results: list[SizeResult], args: argparse.Namespace, cpus: int, out: list[str]) -> None:
    w = out.append
    w("")
    w(
        f"fan-out benchmark: UPGRADE_AGENT on N loopback SSH hosts (password login, host keys {args.host_key_policy}, "
        f"job limit {args.limit}, {args.per_sshd} hosts per sshd), {cpus} CPUs"
        + (f", median of {args.repeat} rounds" if args.repeat > 1 else "")
    )
    w("")
    header = (
        f"{'N':>5} {'service s':>10} {'floor s':>8} {'ratio':>6} {'CPU ms/host':>12} {'peak RSS MB':>12} "
        f"{'floor CPU ms/host':>18} {'other load svc/floor':>21}"
    )
    w(header)
    w("-" * len(header))
    for r in results:
        other = f"{fmt(r.median_or_none('service', 'other_cores'))} / {fmt(r.median_or_none('floor', 'other_cores'))}"
        w(
            f"{r.n:5d} {r.median('service', 'wall_s'):10.2f} {r.median('floor', 'wall_s'):8.2f} {r.ratio:5.2f}x "
            f"{r.cpu_ms:12.1f} {r.peak_rss_mb:12.0f} {1000 * r.median('floor', 'cpu_s') / r.n:18.1f} {other:>21}"
        )
    w("")
    w("every round (service CPU of the upgrade window in detail, and the machine):")
    header = (
        f"{'N':>5} {'round':>5} {'svc s':>6} {'floor s':>7} {'ratio':>6} {'user s':>7} {'sys s':>6} {'beats':>6} "
        f"{'idle ms/beat':>12} {'≈ beats ms/host':>15} {'rest ms/host':>12} {'hosts ms/host':>13} {'busy cores':>11}"
    )
    w(header)
    w("-" * len(header))
    for r in results:
        for number, rd in enumerate(r.rounds, 1):
            s, f, idle = rd.service, rd.floor, rd.idle
            enough = idle["heartbeats"] >= MIN_IDLE_BEATS  # else the window's background CPU is most of it
            per_beat_ms = 1000 * idle["cpu_s"] / idle["heartbeats"] if enough else None
            beats_ms = (per_beat_ms or 0.0) * s["heartbeats"] / r.n
            hosts_ms = f"{fmt(s['hosts_cpu_s'], 1000 / r.n, 0)} / {fmt(f['hosts_cpu_s'], 1000 / r.n, 0)}"
            busy = f"{s['machine_busy_cores']:.2f} / {f['machine_busy_cores']:.2f}"
            w(
                f"{r.n:5d} {number:5d} {s['wall_s']:6.2f} {f['wall_s']:7.2f} {rd.ratio:5.2f}x {s['cpu_user_s']:7.2f} "
                f"{s['cpu_sys_s']:6.2f} {s['heartbeats']:6d} {fmt(per_beat_ms, 1, 2):>12} {beats_ms:15.1f} "
                f"{1000 * s['cpu_s'] / r.n - beats_ms:12.1f} {hosts_ms:>13} {busy:>11}"
            )
    w("idle ms/beat: the service's CPU per heartbeat in a quiet window before the upgrade, when the fleet only")
    w(f"reports (at the interval the service configures; n/a: fewer than {MIN_IDLE_BEATS} heartbeats in the window);")
    w("≈ beats: that cost times the heartbeats of the upgrade window, per host;")
    w("rest: the upgrade's own CPU per host. hosts: CPU of the host side (sshd sessions, commands, agents) per host,")
    w(f"service / floor. busy cores: the whole machine (of {cpus}), service / floor. other load: cores used by")
    w("processes that are not this bench during the window.")
    installs = ", ".join(
        f"N={r.n} {r.install['wall_s']:.1f}s ({1000 * r.install['cpu_s'] / r.n:.0f} ms CPU/host)" for r in results
    )
    w(f"install (not timed against a floor): {installs}")
    w(
        "service peak RSS over its whole life (install included): "
        + ", ".join(f"N={r.n} {r.lifetime_peak_rss_mb:.0f} MB" for r in results)
    )
    w("")
    w("targets:")
    by_n = {r.n: r for r in results}
    label = f"wall ≤ {TARGET_RATIO}x floor at N={TARGET_RATIO_N}"
    if TARGET_RATIO_N in by_n:
        ratio = by_n[TARGET_RATIO_N].ratio
        w(target_line(label, f"{ratio:.2f}x", ratio <= TARGET_RATIO))
    else:
        w(target_line(label, "not run", None))
    worst = max(results, key=lambda r: r.cpu_ms)
    label = f"CPU ≤ {TARGET_CPU_MS:.0f} ms/host (worst N)"
    w(target_line(label, f"{worst.cpu_ms:.1f} ms (N={worst.n})", worst.cpu_ms <= TARGET_CPU_MS))
    label = f"peak RSS ≤ {TARGET_RSS_MB:.0f} MB at N={TARGET_RSS_N}"
    if TARGET_RSS_N in by_n:
        peak = by_n[TARGET_RSS_N].peak_rss_mb
        w(target_line(label, f"{peak:.0f} MB", peak <= TARGET_RSS_MB))
    else:
        w(target_line(label, "not run", None))
    noisy = [
        f"N={r.n}/{number} {side}"
        for r in results
        for number, rd in enumerate(r.rounds, 1)
        for side, x in (("service", rd.service), ("floor", rd.floor))
        if (x["other_cores"] or 0.0) > NOISY_CORES
    ]
    if noisy:
        w(f"warning: other load on the machine (> {NOISY_CORES} cores) during {', '.join(noisy)}: figures are noisy")
    for r in results:
        for path in r.profiles:
            w("")
            window = "the upgrade" if path.endswith("-upgrade.txt") else "the heartbeat-only window"
            w(f"profile of the service during {window} at N={r.n} (py-spy, on-CPU samples): {path}")
            out.extend("  " + line for line in summarize_profile(Path(path)))


def report_executors(results: list[SizeResult], args: argparse.Namespace, out: list[str]) -> None:
    """Floor, embedded and the distributed mode side by side, with the distributed mode's targets."""
    w = out.append
    w("")
    w(
        f"executors side by side: the same UPGRADE_AGENT on N hosts, job limit {args.limit} "
        f"(celery: --concurrency = {args.limit} / workers each), measured one after another in this run"
    )
    w("")
    header = (
        f"{'N':>5}  {'executor':<20} {'wall s':>7} {'x floor':>8} {'CPU ms/host':>12} {'API ms/host':>12} "
        f"{'workers ms/host':>16} {'hosts per worker':>18} {'other load':>11} {'warm-up ms/host':>16}"
    )
    w(header)
    w("-" * len(header))
    for r in results:
        floor_s = r.floor_wall_s()
        floor_cpu = r.median("floor", "cpu_s") if r.rounds else float((r.floor_only or {})["cpu_s"])
        floor_other = r.median_or_none("floor", "other_cores") if r.rounds else (r.floor_only or {}).get("other_cores")
        w(
            f"{r.n:5d}  {'floor (bare asyncssh)':<20} {floor_s:7.2f} {1.0:7.2f}x {1000 * floor_cpu / r.n:12.1f} "
            f"{'':>12} {'':>16} {'':>18} {fmt(floor_other):>11}"
        )
        if r.rounds:
            w(
                f"{r.n:5d}  {'embedded':<20} {r.median('service', 'wall_s'):7.2f} {r.ratio:7.2f}x {r.cpu_ms:12.1f} "
                f"{'':>12} {'':>16} {'':>18} {fmt(r.median_or_none('service', 'other_cores')):>11}"
            )
        for count in args.workers:
            up = (r.cluster or {}).get("rounds", {}).get(str(count))
            if up is None:
                continue
            owners = "/".join(str(v) for _, v in sorted(up["owners"].items()))
            warm = up.get("warmup")
            warm_ms = fmt(1000 * warm["cpu_s"] / warm["hosts"], digits=1) if warm else "n/a"
            w(
                f"{r.n:5d}  {'celery --workers ' + str(count):<20} {up['wall_s']:7.2f} {up['wall_s'] / floor_s:7.2f}x "
                f"{1000 * up['cpu_s'] / r.n:12.1f} {1000 * up['api_cpu_s'] / r.n:12.1f} "
                f"{1000 * up['workers_cpu_s'] / r.n:16.1f} {owners:>18} {fmt(up['other_cores']):>11} {warm_ms:>16}"
            )
    w("CPU: the controller's CPU seconds over the timed window per host: for embedded the service process, for")
    w("celery the API process plus every worker process (/proc/<pid>/stat utime + stime, all threads). The floor's")
    w("column is the floor process's own. other load: cores used by processes that are not this bench.")
    w("Each round's workers are new processes: before the timed window they run one untimed UPGRADE_AGENT on")
    w(f"min(N, {args.limit}) hosts, as the embedded service ran the install before its window. warm-up: the API's")
    w("and workers' CPU per host of that first job (an upgrade, with the processes' new connections and threads).")
    w("On 2 cores, two workers cannot beat one at CPU-bound fan-out: they share the same cores (and PostgreSQL and")
    w("the hosts' sshd run on them too). Workers add capacity when hosts' steps wait: see bench/capacity.py.")
    for r in results:
        for path in (r.cluster or {}).get("profiles", []):
            w("")
            w(f"profile of celery at N={r.n}, {Path(path).stem.split('-', 2)[-1]} (py-spy, on-CPU samples): {path}")
            out.extend("  " + line for line in summarize_profile(Path(path), thread_names=True))
    w("")
    w("targets (distributed mode):")
    by_n = {r.n: r for r in results}
    for count in args.workers:
        label = f"celery x{count}: wall ≤ {CLUSTER_TARGET_RATIO}x floor at N={CLUSTER_TARGET_RATIO_N}"
        at = by_n.get(CLUSTER_TARGET_RATIO_N)
        up = (at.cluster or {}).get("rounds", {}).get(str(count)) if at else None
        if at is None or up is None:
            w(target_line(label, "not run", None))
        else:
            ratio = up["wall_s"] / at.floor_wall_s()
            w(target_line(label, f"{ratio:.2f}x", ratio <= CLUSTER_TARGET_RATIO))
        per_n = [
            (1000 * x["cpu_s"] / r.n, r.n)
            for r in results
            if (x := (r.cluster or {}).get("rounds", {}).get(str(count))) is not None
        ]
        label = f"celery x{count}: API+workers CPU ≤ {TARGET_CPU_MS:.0f} ms/host"
        if per_n:
            worst_ms, worst_n = max(per_n)
            w(target_line(label, f"{worst_ms:.1f} ms (N={worst_n})", worst_ms <= TARGET_CPU_MS))
        else:
            w(target_line(label, "not run", None))


def fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value * scale:.{digits}f}"


def target_line(label: str, value: str, ok: bool | None) -> str:
    return f"  {label:34} {value:>18}  {'' if ok is None else 'PASS' if ok else 'MISS'}"


def summarize_profile(path: Path, top: int = 12, *, thread_names: bool = False) -> list[str]:
    """Samples on the event loop vs worker threads, the top leaf functions, and nodeops functions (inclusive)."""
    threads: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        thread = frames[0].partition(": ")[2]
        if thread_names:  # a cluster worker: its loop is a thread of its own, beside the broker's threads
            threads[thread.split("-")[0] if thread.startswith("ThreadPoolExecutor") else thread] += count
        else:
            threads["event loop" if thread == "MainThread" else "worker threads (db.call)"] += count
        leaves[_short(frames[-1])] += count
        for name in {_short(f) for f in frames[1:] if " (nodeops/" in f}:
            inclusive[name] += count
    if not total:
        return ["(no samples)"]
    by_thread = ", ".join(f"{t} {100 * c / total:.0f}%" for t, c in threads.most_common())
    lines = [f"{total} samples: {by_thread}"]
    lines.append("top leaf functions (self):")
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in leaves.most_common(top)]
    lines.append("nodeops functions (inclusive):")
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in inclusive.most_common(top)]
    return lines


def _short(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (to/file.py)``."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 2)
    return f"{name} ({'/'.join(file[-2:])})" if where else name


# ---------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark UPGRADE_AGENT over SSH on N loopback hosts against a bare-asyncssh floor.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("sizes", nargs="*", type=int, help="fleet sizes (default 50 200 500)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=10")
    parser.add_argument("--limit", type=int, default=100, help="hosts at once: the service's job_limit and the floor's")
    parser.add_argument("--per-sshd", type=int, default=16, help="addresses served by one sshd process (at most 16)")
    parser.add_argument(
        "--host-key-policy", choices=("accept-new", "off"), default="accept-new", help="the service's host key policy"
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds of (service, floor) per N; medians are reported")
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds for the agents' heartbeats to settle before measuring"
    )
    parser.add_argument("--idle", type=float, default=6.0, help="seconds of the quiet heartbeat-only window")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=30,
        metavar="SECONDS",
        help="before each size, wait up to this long for other load on the machine to stop",
    )
    parser.add_argument(
        "--executor",
        default="embedded",
        help="which controllers run, comma-separated: embedded, celery (e.g. embedded,celery)",
    )
    parser.add_argument(
        "--workers", default="1", help="celery: numbers of worker processes to measure, comma-separated (e.g. 1,2)"
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("NODEOPS_BENCH_PG_URL", PG_URL),
        help="celery: a PostgreSQL server on loopback where the bench may create and drop a database "
        "(env NODEOPS_BENCH_PG_URL)",
    )
    parser.add_argument(
        "--redis-server", default=shutil.which("redis-server") or "redis-server", help="celery: the redis-server binary"
    )
    parser.add_argument("--profile", type=Path, help="py-spy the service's upgrade window; keep the profiles here")
    parser.add_argument(
        "--py-spy",
        default=str(PYTHON.with_name("py-spy")) if PYTHON.with_name("py-spy").exists() else shutil.which("py-spy"),
        help="celery with --profile: the py-spy binary (it is not in the lock: install it in a throwaway venv)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    if not args.sizes:
        args.sizes = [10] if args.quick else [50, 200, 500]
    if min(args.sizes) < 1 or min(args.limit, args.per_sshd, args.repeat) < 1:
        parser.error("sizes, --limit, --per-sshd and --repeat must be positive")
    args.executors = [e.strip() for e in args.executor.split(",") if e.strip()]
    if not args.executors or not set(args.executors) <= {"embedded", "celery"}:
        parser.error("--executor takes embedded, celery or embedded,celery")
    try:
        args.workers = [int(x) for x in args.workers.split(",")]
    except ValueError:
        parser.error("--workers takes numbers of workers, comma-separated, e.g. 1,2")
    if min(args.workers) < 1 or max(args.workers) > args.limit:
        parser.error("--workers: each number must be between 1 and --limit")
    if "celery" in args.executors:
        host = sa_host(args.pg_url)
        if not host.startswith("127."):
            parser.error(f"--pg-url must be on 127.0.0.0/8, not {host!r}")
    return args


def sa_host(url: str) -> str:
    """The host of a database URL (``driver://user@host:port/db``), without importing SQLAlchemy here."""
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    return rest.rsplit("@", 1)[-1].rsplit(":", 1)[0]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root: the bench starts sshd for the user nodeops-test")
    began = time.perf_counter()
    args.loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    temp = Path(tempfile.mkdtemp(prefix="nodeops-fanout-", dir="/tmp"))
    temp.chmod(0o711)  # the test user must reach lab/hosts/*; the run folders below stay 0700
    children = Children()
    user: LabUser | None = None
    fleet: SSHDFleet | None = None
    try:
        user = ensure_user()
        fleet = SSHDFleet(temp / "lab", user, per_sshd=args.per_sshd)
        args.per_sshd = fleet.per_sshd
        biggest = max(args.sizes)
        say(f"starting {biggest} SSH hosts ({-(-biggest // args.per_sshd)} sshd processes) ...")
        hosts = fleet.start(biggest)
        prove_login(hosts[0], user, fleet)
        results = [run_size(n, hosts[:n], fleet, user, children, temp, args) for n in args.sizes]
        report(results, args, time.perf_counter() - began)
        return 0
    except (BenchError, LabError) as exc:
        say(f"error: {exc}")
        return 1
    finally:
        children.stop_all()
        if fleet is not None:
            fleet.close()
        if user is not None:
            user.lock.close()
        with contextlib.suppress(OSError):
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted; stopped every process the bench started")
        sys.exit(130)
