"""The distributed mode under test for ``bench/fanout.py --executor celery``: real processes, as deployed.

``python bench/_fanout_cluster.py PLAN.json RESULT.json``. It starts, all on loopback and all stopped on exit:

- a private ``redis-server`` (no persistence, its own port, its folder under the run's temp dir), the broker;
- a PostgreSQL database of its own (``nodeops_bench_<random>`` on the plan's server), migrated, with an app and a
  superuser for the API's common args; dropped at the end;
- ``nodeops serve`` in celery mode on the plan's port, which is also ``NODEOPS_PUBLIC_URL``: the agents'
  ``server_url``, so their heartbeats land in the API process;
- ``nodeops worker`` processes: for each entry of the plan's ``workers`` (e.g. ``[1, 2]``) that many, each with
  ``--concurrency`` = the job limit split across them, and ``NODEOPS_JOB_LIMIT`` = the limit.

Then INSTALL_AGENT on every host (through the API, by the largest set of workers), and for each worker count a
timed UPGRADE_AGENT on every host, from the HTTP call to the moment the job row leaves PENDING/RUNNING (polled
every 50 ms in PostgreSQL by this process). The controller's CPU of a window is the API's and the workers' CPU
seconds (``/proc/<pid>/stat`` utime + stime, all threads, plus reaped children) between its start and its end.

With ``sleep_s`` in the plan (the capacity mode, ``bench/capacity.py``) the timed job is not an upgrade but
RESTART_AGENT on hosts whose agent script was replaced by a stand-in that sleeps ``sleep_s`` seconds on ``stop``:
each host's step then mostly waits, on the host, as a slow service would make it.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from _fanout_measure import Window

from nodeops.engine import packages
from nodeops.service import admin
from nodeops.store import migrate
from nodeops.store.db import Database

ESB_JOB = "/api/c/compapi/v2/nodeman/api/job"
NODEOPS = str(Path(sys.executable).with_name("nodeops"))
TICK = os.sysconf("SC_CLK_TCK")
APP_CODE = "bench"
USER = "bench"
ACTIVE = ("PENDING", "RUNNING")
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a child, before exec: SIGTERM when this script dies, even by SIGKILL (nothing is left behind)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def process_cpu_s(pid: int) -> float:
    """utime + stime (all threads) + cutime + cstime of ``pid``, in seconds."""
    return sum(process_cpu_split(pid))


def process_cpu_split(pid: int) -> tuple[float, float]:
    """(utime + cutime, stime + cstime) of ``pid`` (all threads), in seconds: user and kernel CPU."""
    fields = [int(v) for v in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:15]]
    return (fields[0] + fields[2]) / TICK, (fields[1] + fields[3]) / TICK


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """Redis, the database, the API and the workers; ``close`` stops and drops them all."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.root = Path(plan["run_dir"])
        self.port = int(plan["port"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.admin_engine = sa.create_engine(plan["pg_admin_url"], isolation_level="AUTOCOMMIT")
        self.database = f"nodeops_bench_{secrets.token_hex(4)}"
        self.database_url = sa.make_url(plan["pg_admin_url"]).set(database=self.database).render_as_string(False)
        self.broker_port = free_port()
        self.broker_url = f"redis://127.0.0.1:{self.broker_port}/0"
        self.made_database = False
        self.client = httpx.Client(base_url=self.url, timeout=60)
        self.secret = ""
        self.workers: list[str] = []
        # capacity mode: each host's folder, where its stand-in agent script writes its times
        self.homes = {h["ip"]: h["setup_path"] for h in plan["hosts"]} if plan.get("sleep_s") else None

    # --- setup ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        redis_dir = self.root / "redis"
        redis_dir.mkdir(exist_ok=True)
        self._spawn(
            "redis",
            [
                self.plan["redis_server"],
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.broker_port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(redis_dir),
                "--protected-mode",
                "yes",
            ],
        )
        with self.admin_engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self.database}"'))
        self.made_database = True
        db = Database.connect(self.database_url, pool_size=2)
        try:
            migrate.upgrade(db)
            self.secret = admin.add_app(db, code=APP_CODE, allow_username=True).secret
            admin.add_user(db, username=USER, is_superuser=True)
        finally:
            db.dispose()
        self.db = sa.create_engine(self.database_url, pool_size=2)
        self._wait_port(self.broker_port, "redis")
        self._spawn("api", [NODEOPS, "serve"], env=self.env("api"))
        deadline = time.monotonic() + 60
        while True:
            with suppress(httpx.HTTPError):
                if self.client.get("/healthz", timeout=2).status_code == 200:
                    break
            if self.procs["api"].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start:\n{self.log('api')}")
            time.sleep(0.1)

    def env(self, name: str) -> dict[str, str]:
        data_dir = self.root / name
        data_dir.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NODEOPS_")}
        return env | {
            "NODEOPS_EXECUTOR": "celery",
            "NODEOPS_DATABASE_URL": self.database_url,
            "NODEOPS_BROKER_URL": self.broker_url,
            "NODEOPS_SECRET_KEY": self.plan["secret_key"],
            "NODEOPS_PUBLIC_URL": self.url,
            "NODEOPS_HOST": "127.0.0.1",
            "NODEOPS_PORT": str(self.port),
            "NODEOPS_TIME_ZONE": "UTC",
            "NODEOPS_DATA_DIR": str(data_dir),
            "NODEOPS_JOB_LIMIT": str(self.plan["limit"]),
            "NODEOPS_SSH_HOST_KEY_POLICY": self.plan["host_key_policy"],
        }

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        with (self.root / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, preexec_fn=_die_with_parent
            )

    def _wait_port(self, port: int, what: str) -> None:
        deadline = time.monotonic() + 20
        while True:
            with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on {port}:\n{self.log(what)}")
            time.sleep(0.05)

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"

    # --- workers --------------------------------------------------------------------------------------------

    def use_workers(self, count: int, concurrency: int) -> None:
        """Stop the running workers (they finish nothing: no job runs between windows) and start ``count``."""
        self.stop_workers()
        generation = len([n for n in self.procs if n.startswith("w")])
        names = [f"w{generation + i + 1}" for i in range(count)]
        for name in names:
            self._spawn(name, [NODEOPS, "worker", "--name", name, "--concurrency", str(concurrency)], self.env(name))
        self.workers = names
        deadline = time.monotonic() + 60
        while True:
            with self.db.connect() as conn:
                live = {
                    row[0].split(".")[0]
                    for row in conn.execute(sa.text("SELECT id FROM workers WHERE ended_at IS NULL"))
                }
            if set(names) <= live:
                break
            for name in names:
                if self.procs[name].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {name} did not start:\n{self.log(name)}")
            time.sleep(0.1)
        time.sleep(2.0)  # Celery's consumers are up a moment after the lease is taken

    def stop_workers(self) -> None:
        for name in self.workers:
            self._stop(name)
        self.workers = []

    def _stop(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def controller_pids(self) -> dict[str, int]:
        return {name: self.procs[name].pid for name in ["api", *self.workers]}

    # --- jobs -----------------------------------------------------------------------------------------------

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        common = {"bk_app_code": APP_CODE, "bk_app_secret": self.secret, "bk_username": USER}
        answer: dict[str, Any] = self.client.post(path, json=common | body).json()
        if not answer.get("result"):
            raise RuntimeError(f"{path} answered {answer}")
        data: dict[str, Any] = answer["data"]
        return data

    def wait_job(self, job_id: int, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        with self.db.connect() as conn:
            while True:
                status = str(conn.execute(sa.text("SELECT status FROM jobs WHERE id = :j"), {"j": job_id}).scalar_one())
                conn.rollback()
                if status not in ACTIVE:
                    return status
                if time.monotonic() > deadline:
                    raise RuntimeError(f"job {job_id} still {status} after {timeout_s:.0f}s")
                time.sleep(0.05)

    def outcome(self, job_id: int) -> dict[str, Any]:
        with self.db.connect() as conn:
            counts: dict[str, int] = dict(
                conn.execute(
                    sa.text("SELECT status, count(*) FROM instance_records WHERE job_id = :j GROUP BY status"),
                    {"j": job_id},
                ).all()
            )
            owners: dict[str, int] = dict(
                conn.execute(
                    sa.text(
                        "SELECT split_part(worker_id, '.', 1), count(*) FROM instance_records WHERE job_id = :j "
                        "GROUP BY 1"
                    ),
                    {"j": job_id},
                ).all()
            )
            failed = conn.execute(
                sa.text(
                    "SELECT r.id, h.inner_ip FROM instance_records r JOIN hosts h ON h.bk_host_id = r.bk_host_id "
                    "WHERE r.job_id = :j AND r.status != 'SUCCESS' ORDER BY r.id LIMIT 5"
                ),
                {"j": job_id},
            ).all()
            reasons = []
            for record_id, ip in failed:
                logs = conn.execute(
                    sa.text("SELECT text FROM step_logs WHERE record_id = :r ORDER BY id DESC LIMIT 3"),
                    {"r": record_id},
                ).scalars()
                lines = "\n".join(reversed(list(logs))).splitlines()[-6:]
                reasons.append(f"{ip}: " + " | ".join(lines))
            by_version = sa.text("SELECT agent_version, count(*) FROM hosts GROUP BY 1")
            versions: dict[str, int] = dict(conn.execute(by_version).all())
        return {
            "records": counts,
            "owners": owners,
            "failures": reasons,
            "versions": versions,
            "phases": self.phases(job_id, self.homes),
            "pace": self.pace(job_id),
        }

    def pace(self, job_id: int) -> dict[str, float]:
        """How the records filled the time: ``record_s`` the seconds all records ran, summed (over slots x wall:
        how busy the slots were); ``middle_rate`` hosts per second while the middle 80% of them ended (from the
        10th to the 90th percentile of end times), without the ramp-up of the first claims and the drain of
        the last hosts, when slots are idle for want of work."""
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT extract(epoch FROM start_at), extract(epoch FROM finish_at) FROM instance_records "
                    "WHERE job_id = :j AND start_at IS NOT NULL AND finish_at IS NOT NULL"
                ),
                {"j": job_id},
            ).all()
        ends = sorted(float(end) for _, end in rows)
        first, last = len(ends) // 10, len(ends) - 1 - len(ends) // 10
        span = ends[last] - ends[first] if ends and last > first else 0.0
        return {
            "record_s": sum(float(end) - float(start) for start, end in rows),
            "middle_rate": (last - first) / span if span > 0 else 0.0,
        }

    def phases(self, job_id: int, homes: dict[str, str] | None = None) -> dict[str, list[float]]:
        """Where a host's time went, as [p50, p90] seconds: the record, each step, the gaps around the steps; with
        ``homes`` (address -> the host's folder, capacity mode) the restart step split by the stand-in's own
        times: SSH login and Python's start, the sleep, the real agent's restart, its exit reaching the step's
        end."""
        with self.db.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT h.inner_ip, extract(epoch FROM r.start_at), extract(epoch FROM r.finish_at), s.step_index, "
                    "s.name, extract(epoch FROM s.start_at), extract(epoch FROM s.finish_at) "
                    "FROM instance_records r JOIN hosts h ON h.bk_host_id = r.bk_host_id "
                    "JOIN record_steps s ON s.record_id = r.id WHERE r.job_id = :j ORDER BY r.id, s.step_index"
                ),
                {"j": job_id},
            ).all()
        spans: dict[str, list[float]] = {}

        def add(name: str, seconds: float) -> None:
            spans.setdefault(name, []).append(seconds)

        by_record: dict[str, list[Any]] = {}
        for row in rows:
            by_record.setdefault(row[0], []).append(row)
        for ip, steps in by_record.items():
            r_start, r_end = float(steps[0][1]), float(steps[0][2])
            add("record", r_end - r_start)
            add("claim to 1st step", float(steps[0][5]) - r_start)
            for _, _, _, index, name, s_start, s_end in steps:
                add(f"step {index} {name}", float(s_end) - float(s_start))
            add("last step to end", r_end - float(steps[-1][6]))
            restart = [s for s in steps if s[4] == "重启"]
            if homes and restart:
                s_start, s_end = float(restart[0][5]), float(restart[0][6])
                for t0, t1, t2 in _stand_in_times(homes[ip]):
                    if s_start - 1 < t0 < s_end:
                        add("  login, python start", t0 - s_start)
                        add("  the sleep", t1 - t0)
                        add("  real restart", t2 - t1)
                        add("  exit to step end", s_end - t2)
                        break

        def p(values: list[float], q: float) -> float:
            ordered = sorted(values)
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

        return {name: [p(values, 0.5), p(values, 0.9)] for name, values in spans.items()}

    def host_ids(self) -> dict[str, int]:
        with self.db.connect() as conn:
            return {ip: int(i) for i, ip in conn.execute(sa.text("SELECT bk_host_id, inner_ip FROM hosts")).all()}

    def write_known_hosts(self, path: Path) -> str:
        """The host keys the cluster trusts (kept in its database), as an OpenSSH known_hosts file for the floor."""
        with self.db.connect() as conn:
            rows = conn.execute(sa.text("SELECT host, port, algorithm, key FROM host_keys")).all()
        path.write_text("".join(f"[{host}]:{port} {algorithm} {key}\n" for host, port, algorithm, key in rows))
        return str(path)

    def register(self, version: str) -> None:
        db = Database.connect(self.database_url, pool_size=1)
        try:
            packages.register(db, self.root / "packages", version)
        finally:
            db.dispose()

    # --- teardown -------------------------------------------------------------------------------------------

    def close(self) -> None:
        self.client.close()
        for name in reversed(list(self.procs)):
            self._stop(name)
        if hasattr(self, "db"):
            self.db.dispose()
        if self.made_database:
            with self.admin_engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
        self.admin_engine.dispose()


def start_profiles(plan: dict[str, Any], pids: dict[str, int], tag: str) -> list[subprocess.Popen[bytes]]:
    """``py-spy record`` on the API and each worker for the timed window (the plan's ``profile`` prefix)."""
    if not plan.get("profile"):
        return []
    spies = []
    for name, pid in pids.items():
        command = [plan["py_spy"], "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--nonblocking"]
        command += ["--threads", "--gil", "--output", f"{plan['profile']}-{tag}-{name}.txt"]
        spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)  # let them attach before the clock starts
    return spies


def stop_profiles(spies: list[subprocess.Popen[bytes]]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def timed(
    cluster: Cluster, plan: dict[str, Any], job_type: str, body: dict[str, Any], n: int, *, profile: bool = True
) -> dict[str, Any]:
    """One timed job: wall from the call to the job's end, the controller's CPU (API + workers) over it."""
    pids = cluster.controller_pids()
    spies = start_profiles(plan, pids, f"w{len(pids) - 1}") if profile else []
    window = Window(plan["hosts_cgroup"])
    cpu0 = {name: process_cpu_split(pid) for name, pid in pids.items()}
    window.start()
    job_id = int(cluster.call(f"{ESB_JOB}/operate/", {"job_type": job_type, **body})["job_id"])
    status = cluster.wait_job(job_id, timeout_s=300 + 2 * n)
    measured = window.stop()
    split = {name: process_cpu_split(pid) for name, pid in pids.items()}
    cpu = {name: sum(split[name]) - sum(cpu0[name]) for name in pids}
    stop_profiles(spies)
    controller = sum(cpu.values())
    kernel = sum(split[name][1] - cpu0[name][1] for name in pids if name != "api")
    # the bench driver's own CPU (its 50 ms polls) is not the controller's: the machine's rest is recomputed
    hosts = measured["hosts_cpu_s"]
    if hosts is not None and measured["other_cores"] is not None:
        own = measured["cpu_s"] or 0.0
        busy = (measured["machine_busy_cores"] or 0.0) * (measured["wall_s"] or 1.0)
        measured["other_cores"] = max(0.0, busy - hosts - controller - own) / (measured["wall_s"] or 1.0)
    return (
        measured
        | {
            "job_id": job_id,
            "status": status,
            "cpu_s": controller,
            "api_cpu_s": cpu["api"],
            "workers_cpu_s": controller - cpu["api"],
            "workers_sys_s": kernel,
            "driver_cpu_s": measured["cpu_s"],
        }
        | cluster.outcome(job_id)
    )


def run(plan: dict[str, Any]) -> dict[str, Any]:
    n = len(plan["hosts"])
    limit = int(plan["limit"])
    result: dict[str, Any] = {"n": n, "rounds": {}}
    cluster = Cluster(plan)
    try:
        cluster.start()
        hosts = [
            {
                "bk_biz_id": 2,
                "inner_ip": h["ip"],
                "port": h["port"],
                "account": plan["username"],
                "password": plan["password"],
                "setup_path": h["setup_path"],
                "transport": "ssh",
            }
            for h in plan["hosts"]
        ]
        most = max(plan["workers"])
        cluster.use_workers(most, int(plan.get("install_concurrency") or max(1, limit // most)))
        began = time.perf_counter()
        install = int(cluster.call(f"{ESB_JOB}/install/", {"job_type": "INSTALL_AGENT", "hosts": hosts})["job_id"])
        cluster.wait_job(install, timeout_s=300 + 3 * n)
        result["install"] = {"wall_s": time.perf_counter() - began} | cluster.outcome(install)
        if result["install"]["records"] != {"SUCCESS": n}:
            return result
        ids = cluster.host_ids()
        result["hosts"] = [h | {"bk_host_id": ids[h["ip"]]} for h in plan["hosts"]]
        result["known_hosts"] = cluster.write_known_hosts(Path(plan["run_dir"]) / "known_hosts.floor")
        if plan.get("sleep_s"):
            install_sleepers(plan)
        for number, count in enumerate(plan["workers"]):
            concurrency = int(plan.get("concurrency") or max(1, limit // count))
            cluster.use_workers(count, concurrency)
            version = plan["versions"][number]
            if plan.get("sleep_s"):
                job_type, body = "RESTART_AGENT", {}
            else:
                cluster.register(version)
                job_type, body = "UPGRADE_AGENT", {"version": version}
            warmup = None
            if not plan.get("sleep_s"):
                # fresh workers run one upgrade first, as the embedded service ran the install: its first SSH,
                # SFTP and package code paths and its connections are not in the timed window, in either mode
                warm_version = plan["warmup_versions"][number]
                cluster.register(warm_version)
                first = [h["bk_host_id"] for h in result["hosts"][:limit]]
                warm_body = {"bk_host_id": first, "version": warm_version}
                warmup = timed(cluster, plan, "UPGRADE_AGENT", warm_body, len(first), profile=False)
                warmup["hosts"] = len(first)
            time.sleep(plan["settle_s"])
            body |= {"bk_host_id": [h["bk_host_id"] for h in result["hosts"]]}
            round_result = timed(cluster, plan, job_type, body, n)
            round_result["warmup"] = warmup
            round_result["workers"] = count
            round_result["concurrency"] = concurrency
            result["rounds"][str(count)] = round_result
            if round_result["records"] != {"SUCCESS": n}:
                break
        return result
    finally:
        cluster.close()


SLEEPER = """import atexit, os, random, runpy, sys, time
REAL = {real!r}
if sys.argv[1:2] == ["restart"]:
    started, pid = time.time(), os.getpid()
    time.sleep({sleep_s!r} + random.uniform(-{jitter_s!r}, {jitter_s!r}))  # a slow service: the step waits
    slept = time.time()

    def note_times():  # this process's own times (not the daemon's, forked from it)
        if os.getpid() == pid:
            with open({times!r}, "a") as out:
                out.write(f"{{started}} {{slept}} {{time.time()}}\\n")

    atexit.register(note_times)
sys.argv[0] = REAL
runpy.run_path(REAL, run_name="__main__")
"""
TIMES_FILE = "stand-in.times"


def _stand_in_times(home: str) -> list[tuple[float, float, float]]:
    """The stand-in's (started, slept, ended) epoch times on one host, one line per restart."""
    with suppress(OSError):
        lines = (Path(home) / TIMES_FILE).read_text().splitlines()
        return [(float(a), float(b), float(c)) for a, b, c in (line.split() for line in lines if line.count(" ") == 2)]
    return []


def install_sleepers(plan: dict[str, Any]) -> None:
    """Capacity mode: on every host, ``nodeops_agent.py`` becomes a stand-in that sleeps ``sleep_s`` seconds
    before ``restart`` and then runs the real agent script (kept next to it), so RESTART_AGENT's step waits."""
    for host in plan["hosts"]:
        home = Path(host["setup_path"])
        script, real = home / "nodeops_agent.py", home / "nodeops_agent_real.py"
        if not real.exists():
            script.rename(real)
        times = home / TIMES_FILE
        sleep_s, jitter_s = float(plan["sleep_s"]), float(plan.get("jitter_s") or 0)
        script.write_text(SLEEPER.format(real=str(real), sleep_s=sleep_s, jitter_s=jitter_s, times=str(times)))
        script.chmod(0o644)


def main() -> int:
    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    plan = json.loads(Path(sys.argv[1]).read_text())
    result = run(plan)
    Path(sys.argv[2]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
