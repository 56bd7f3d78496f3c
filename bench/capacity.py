"""Capacity of the distributed mode when hosts' steps wait: one worker against two, in one run.

``bench/fanout.py`` measures a CPU-bound fan-out: on 2 cores two workers cannot beat one there, because they
share the same cores (with PostgreSQL, Redis and the hosts' sshd). What workers add is room for hosts that wait.
Here every host's step mostly waits: N loopback SSH hosts (``bench/_sshd_hosts.py``), the agent installed by the
cluster (``bench/_fanout_cluster.py``: a private Redis, a PostgreSQL database of its own, ``nodeops serve`` in
celery mode, ``nodeops worker`` processes), then on every host ``nodeops_agent.py`` is replaced by a stand-in that
sleeps ``--sleep-step`` seconds (3, give or take up to ``--sleep-jitter``, 1) before ``restart`` and then runs the
real script. The timed job is RESTART_AGENT on all N hosts (重启, then 查询Agent状态), with one worker of
``--concurrency 20``, then with two workers of ``--concurrency 20`` each; the job limit (``NODEOPS_JOB_LIMIT``) is
high enough not to cap them. Hosts per second should about double: each worker runs at most ``--concurrency``
hosts at once. It does so only as far as the hosts' own CPU allows: here they share the machine's cores, and the
report shows how much of a host's time was its login and restart on the host against its sleep and the workers' part.

Run as root (it starts sshd for the user ``nodeops-test``): ``.venv/bin/python bench/capacity.py [N]``. Only
127.0.0.0/8 is used; everything started is stopped on exit, on error, and on Ctrl-C or SIGTERM, and the database
is dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import wait_quiet
from _sshd_hosts import LabError, LabUser, SSHDFleet, ensure_user
from fanout import (
    CLUSTER_SCRIPT,
    PG_URL,
    PYTHON,
    BenchError,
    Children,
    fmt,
    free_port,
    prove_login,
    sa_host,
    say,
    write_private,
)


def run(args: argparse.Namespace, fleet: SSHDFleet, user: LabUser, children: Children, temp: Path) -> dict[str, Any]:
    hosts = fleet.start(args.n)
    prove_login(hosts[0], user, fleet)
    wait_quiet(args.wait_quiet, say)
    run_dir = temp / "cluster"
    run_dir.mkdir(mode=0o700)
    port = free_port()
    plan = {
        "port": port,
        "limit": args.job_limit,
        "username": user.name,
        "password": user.password,
        "settle_s": args.settle,
        "hosts_cgroup": fleet.cpu_usage_path,
        "run_dir": str(run_dir),
        "pg_admin_url": args.pg_url,
        "redis_server": args.redis_server,
        "secret_key": secrets.token_urlsafe(32),
        "host_key_policy": "accept-new",
        "workers": args.workers,
        "concurrency": args.concurrency,
        "install_concurrency": 50,
        "sleep_s": args.sleep_step,
        "jitter_s": args.sleep_jitter,
        "versions": ["" for _ in args.workers],
        "hosts": [{"ip": h.ip, "port": h.port, "setup_path": h.setup_path} for h in hosts],
    }
    write_private(run_dir / "plan.json", plan)
    say(
        f"capacity: install on {args.n} hosts, then RESTART_AGENT (the restart sleeps {args.sleep_step} s) with "
        f"{', '.join(map(str, args.workers))} workers of --concurrency {args.concurrency} ..."
    )
    children.run(
        [str(PYTHON), str(CLUSTER_SCRIPT), str(run_dir / "plan.json"), str(run_dir / "result.json")],
        log=run_dir / "cluster.log",
        timeout_s=900 + 10 * args.n,
    )
    result: dict[str, Any] = json.loads((run_dir / "result.json").read_text())
    if result.get("install", {}).get("records") != {"SUCCESS": args.n}:
        raise BenchError(f"install: {result.get('install')}")
    for count in args.workers:
        up = result["rounds"].get(str(count))
        if up is None or up["records"] != {"SUCCESS": args.n}:
            failures = "\n  ".join((up or {}).get("failures", []))
            raise BenchError(f"{count} workers: not every host succeeded: {up and up['records']}\n  {failures}")
        say(f"{count} workers: {up['wall_s']:.2f}s, {args.n / up['wall_s']:.1f} hosts/s")
    return result


def report(result: dict[str, Any], args: argparse.Namespace, runtime_s: float) -> None:
    out: list[str] = []
    w = out.append
    w("")
    jitter = f" ± {args.sleep_jitter:g}" if args.sleep_jitter else ""
    w(
        f"capacity: RESTART_AGENT on {args.n} loopback SSH hosts whose restart sleeps {args.sleep_step:g} s{jitter} on "
        f"the host; each worker --concurrency {args.concurrency}, job limit {args.job_limit}; {os.cpu_count()} CPUs"
    )
    w("")
    header = (
        f"{'workers':>7} {'wall s':>7} {'hosts/s':>8} {'x 1 worker':>11} {'middle hosts/s':>15} {'x 1 worker':>11} "
        f"{'slots busy':>11} {'bound hosts/s':>14} {'ceiling':>8} "
        f"{'wave s':>7} {'CPU ms/host':>12} {'host ms/host':>13} {'hosts per worker':>17} {'busy cores':>11} "
        f"{'other load':>11}"
    )
    w(header)
    w("-" * len(header))
    first: float | None = None
    first_middle: float | None = None
    for count in args.workers:
        up = result["rounds"][str(count)]
        rate = args.n / up["wall_s"]
        first = first or rate
        middle = up["pace"]["middle_rate"]
        first_middle = first_middle or middle
        busy_slots = up["pace"]["record_s"] / (count * args.concurrency * up["wall_s"])
        bound = count * args.concurrency / args.sleep_step
        # the machine's cores over the core-seconds a host took (controller, hosts, PostgreSQL, Redis, the rest)
        ceiling = (os.cpu_count() or 1) * args.n / (up["machine_busy_cores"] * up["wall_s"])
        # the seconds of all cores one wave of hosts (every slot's host logging in and restarting at once) takes
        host_s = (up["hosts_cpu_s"] or 0.0) / args.n
        wave = count * args.concurrency * (host_s + up["cpu_s"] / args.n) / (os.cpu_count() or 1)
        owners = "/".join(str(v) for _, v in sorted(up["owners"].items()))
        w(
            f"{count:7d} {up['wall_s']:7.2f} {rate:8.1f} {rate / first:10.2f}x {middle:15.1f} "
            f"{middle / first_middle:10.2f}x {busy_slots:10.0%} {bound:14.1f} {ceiling:8.1f} "
            f"{wave:7.2f} {1000 * up['cpu_s'] / args.n:12.1f} {fmt(up['hosts_cpu_s'], 1000 / args.n, 1):>13} "
            f"{owners:>17} {up['machine_busy_cores']:11.2f} {fmt(up['other_cores']):>11}"
        )
    w("")
    w("where a host's time went, seconds p50 / p90:")
    names = list(dict.fromkeys(name for count in args.workers for name in result["rounds"][str(count)]["phases"]))
    w(f"{'':>24}" + "".join(f"{f'{count} workers':>16}" for count in args.workers))
    for name in names:
        cells = []
        for count in args.workers:
            p50, p90 = result["rounds"][str(count)]["phases"].get(name, [0.0, 0.0])
            cells.append(f"{p50:7.2f} / {p90:5.2f}")
        w(f"{name[:24]:>24}" + "".join(f"{c:>16}" for c in cells))
    w("")
    w("hosts/s: N over the wall, from the call to the job's end. middle hosts/s: while the middle 80% of hosts")
    w("ended (10th to 90th percentile of the records' end times), without the ramp-up and the drain (the last")
    w("hosts' slots wait for the slowest). slots busy: the records' summed seconds over workers x concurrency x wall.")
    w("bound: workers x concurrency / sleep, the most hosts per second the slots allow if a host cost nothing but")
    w("its sleep. ceiling: the machine's CPUs over the CPU seconds the whole machine spent per host (API, workers,")
    w("the hosts' sshd sessions and agents, PostgreSQL, Redis), the most hosts per second its cores allow.")
    w("CPU: API + workers, per host. host ms/host: the hosts' side (sshd sessions, commands, agents), per host.")
    w("busy cores: the whole machine. wave s: workers x concurrency x (host + controller CPU per host) / CPUs,")
    w("the seconds every core is busy when all slots' hosts log in and restart at once, as they do here: every")
    w("host sleeps the same time, so the hosts that start together end together and the next ones start together.")
    w("")
    w("Two workers cannot beat one on 2 cores when the fan-out is CPU-bound (bench/fanout.py): they share the same")
    w("cores. When hosts' steps wait, capacity adds up: each worker brings its own --concurrency slots. Here the")
    w("hosts are on the same cores as the workers: a wave of twice the hosts takes twice the seconds of login,")
    w("Python's start and the agent's restart (the host's phases above), while the workers' own phases (claim")
    w("to 1st step, last step to end, 查询Agent状态) stay near zero.")
    w("")
    w(f"load average at start: {args.loadavg}; total runtime {runtime_s:.0f}s")
    print("\n".join(out), flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Hosts per second of one worker against two when each host's step waits on the host.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("n", nargs="?", type=int, default=500, help="hosts")
    parser.add_argument("--sleep-step", type=float, default=3.0, help="seconds the restart sleeps on each host")
    parser.add_argument(
        "--sleep-jitter",
        type=float,
        default=1.0,
        help="each restart sleeps --sleep-step plus or minus up to this many seconds (uniform), so hosts that start "
        "together do not all end together (0: every host sleeps exactly --sleep-step, and the hosts of each wave log "
        "in and restart at once on this machine's cores)",
    )
    parser.add_argument("--concurrency", type=int, default=20, help="each worker's --concurrency")
    parser.add_argument("--workers", default="1,2", help="numbers of workers to measure, comma-separated")
    parser.add_argument("--job-limit", type=int, default=1000, help="NODEOPS_JOB_LIMIT: high, so it does not cap")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds between starting workers and the job")
    parser.add_argument("--per-sshd", type=int, default=16, help="addresses served by one sshd process (at most 16)")
    parser.add_argument("--wait-quiet", type=float, default=30, metavar="SECONDS", help="wait for other load first")
    parser.add_argument("--pg-url", default=os.environ.get("NODEOPS_BENCH_PG_URL", PG_URL), help="PostgreSQL server")
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    args = parser.parse_args(argv)
    try:
        args.workers = [int(x) for x in args.workers.split(",")]
    except ValueError:
        parser.error("--workers takes numbers, comma-separated, e.g. 1,2")
    if min(args.n, args.concurrency, args.job_limit, min(args.workers)) < 1 or args.sleep_step <= 0:
        parser.error("N, --concurrency, --job-limit, --workers and --sleep-step must be positive")
    if not 0 <= args.sleep_jitter < args.sleep_step:
        parser.error("--sleep-jitter must be at least 0 and less than --sleep-step")
    if not sa_host(args.pg_url).startswith("127."):
        parser.error("--pg-url must be on 127.0.0.0/8")
    return args


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
    temp = Path(tempfile.mkdtemp(prefix="nodeops-capacity-", dir="/tmp"))
    temp.chmod(0o711)
    children = Children()
    user: LabUser | None = None
    fleet: SSHDFleet | None = None
    try:
        user = ensure_user()
        fleet = SSHDFleet(temp / "lab", user, per_sshd=args.per_sshd)
        result = run(args, fleet, user, children, temp)
        report(result, args, time.perf_counter() - began)
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
