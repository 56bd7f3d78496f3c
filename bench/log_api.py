"""Benchmark of the log API (查询任务实例日志) against its two floors, all measured in one run.

1. Fill a fresh database through the project's store: ``--jobs`` jobs of ``--instances`` host instances, each
   with a 6-step plan and a few KB of log. SQLite in a temp NODEOPS_DATA_DIR by default; ``--database
   postgresql`` fills a database of its own on a throwaway PostgreSQL server the bench starts
   (``bench/_postgres.py``), ``--database postgresql=URL`` on the server at URL, dropped at the end.
2. Start the server as ``make run`` does (``.venv/bin/nodeops serve``, ``--workers N`` API processes if asked)
   on a free 127.0.0.1 port.
3. Drive the ESB GET form with wrk: a random (job, instance) per request, then one instance over and over.
4. Floors: the HTTP floor (``bench/_floor.py``: a fixed body of a typical response's size on the same server
   stack, through ASGI), the lane floor (the same body from the log lane, below ASGI; reported, not judged) and
   the data floor (the same rows read with the sqlite3 module, or with bare psycopg on PostgreSQL, one
   statement per read, and JSON-encoded, in process).
5. Print the table, the targets (SQLite: ≥ 0.5x the HTTP floor; PostgreSQL: ≥ 0.25x the HTTP floor and ≥ 0.5x
   the data floor; p99 ≤ 20 ms on both), and the server's CPU time per request.

Run: ``.venv/bin/python bench/log_api.py [--jobs 1000 --instances 100 --duration 10 --connections 16]
[--database sqlite|postgresql[=URL]] [--workers N]``, ``--quick`` for a smoke run. Everything stays on
127.0.0.1; every process started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import _postgres
import orjson
import sqlalchemy as sa
from _machine import wait_quiet

from nodeops.domain.answer import AnswerRenderer
from nodeops.domain.plans import JobType, PlannedStep, StepCode, plan_steps
from nodeops.domain.status import Status
from nodeops.service import admin
from nodeops.settings import SQLITE_FILE_NAME, Settings
from nodeops.store import answers, migrate, pipelines
from nodeops.store import jobs as store_jobs
from nodeops.store.db import Database
from nodeops.store.log_reads import LogReads

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
FLOOR_SCRIPT = Path(__file__).resolve().parent / "_floor.py"
ESB_PATH = "/api/c/compapi/v2/nodeman/api/job/log/"
HOST = "127.0.0.1"
JOB_TYPE = JobType.REINSTALL_AGENT  # 更新任务状态, 查询主机密码, 选择接入点, 安装, 查询Agent状态, 更新任务状态
STEPS: tuple[PlannedStep, ...] = plan_steps(JOB_TYPE)
assert len(STEPS) == 6, "the bench's plan has 6 steps"
HOST_ID_BASE = 100_001
APP_CODE = "bench"
FORMAT = 3  # of the filled database; a saved fill of another format is filled again
USERNAME = "bench-admin"
MANIFEST = "bench-manifest.json"
TARGET_RATIO = 0.5  # of the HTTP floor's requests/s, on SQLite
TARGET_RATIO_PG = 0.25  # on PostgreSQL, where each read is a round trip to another process...
TARGET_DATA_RATIO_PG = 0.5  # ...and of the data floor's reads/s there
TARGET_P99_MS = 20.0
RANDOM_ROW = "log API (random instance)"
COLD_ROW = "log API (random, first {s:.0f}s)"
LANE_ROW = "lane floor (fixed body)"
NOISY_CORES = 0.2  # CPU of other processes above this during a run makes its figures suspect
T0 = datetime(2025, 3, 1, 2, 0, 0, tzinfo=UTC)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- processes


class Processes:
    """Every child started by the bench, stopped by pid (never by name) on exit, error or signal."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: Sequence[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        """Start ``cmd`` with its output in ``log``; in its own session, so a Ctrl-C in the terminal reaches
        the bench only, which then stops the child itself."""
        with open(log, "wb") as out:
            proc = subprocess.Popen(list(cmd), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc, timeout=5.0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only: ignore any *_proxy


def http_get(url: str, timeout: float = 10.0) -> bytes:
    with _OPENER.open(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}; its output:\n{tail(log)}")
        try:
            http_get(url, timeout=2.0)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"server did not answer {url} within {timeout:.0f}s; its output:\n{tail(log)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) and of its children (``serve --workers``' API processes),
    from /proc."""
    return sum(_own_cpu_seconds(p) for p in family(pid))


def family(pid: int) -> set[int]:
    """A process and its descendants."""
    found = {pid}
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            found |= family(int(child))
    return found


def _own_cpu_seconds(pid: int) -> float:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def all_cpu_seconds() -> dict[int, float]:
    """CPU seconds of every process now, by pid (processes that vanish while being read are skipped)."""
    seconds: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                seconds[int(entry.name)] = _own_cpu_seconds(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return seconds


def other_cpu_seconds(before: dict[int, float], after: dict[int, float], exclude: set[int]) -> float:
    """CPU used between two snapshots by processes not in ``exclude`` (those that exited meanwhile are missed)."""
    return sum(now - before.get(pid, 0.0) for pid, now in after.items() if pid not in exclude)


# ---------------------------------------------------------------------------------------------------- fill


@dataclass(frozen=True, slots=True)
class Dataset:
    """What the bench needs to know about a filled database."""

    data_dir: Path
    database_url: str  # "" for the SQLite file in data_dir
    job_ids: list[int]  # in creation order
    instances: int  # per job; job n's hosts are host_base(n) + 0 .. instances-1
    app_secret: str
    fill_s: float
    reused: bool = False

    def host_base(self, job_index: int) -> int:
        return HOST_ID_BASE + job_index * self.instances


class LogWriter:
    """Varied log text of a host's steps, as ``[YYYY-MM-DD HH:MM:SS LEVEL] text`` lines."""

    def __init__(self, rng: random.Random, tz: tzinfo) -> None:
        self.rng = rng
        self.tz = tz
        self._stamps: dict[int, str] = {}
        self._times: dict[int, datetime] = {}

    def stamp(self, second: int) -> str:
        text = self._stamps.get(second)
        if text is None:
            text = datetime.fromtimestamp(second, self.tz).strftime("%Y-%m-%d %H:%M:%S")
            self._stamps[second] = text
        return text

    def at(self, second: int) -> datetime:
        value = self._times.get(second)
        if value is None:
            value = self._times[second] = datetime.fromtimestamp(second, UTC)
        return value

    def lines(self, code: StepCode, name: str, host: HostFacts, outcome: Status) -> list[tuple[str, str]]:
        """(level, text) lines of one step; a FAILED step ends in an error, a RUNNING one stops midway."""
        r = self.rng.random
        body: list[tuple[str, str]] = [("INFO", f"开始 {name}.")]
        if code is StepCode.UPDATE_JOB_STATUS:
            body.append(
                ("DEBUG", f"job {host.job_id} 主机 {host.ip} 状态 PENDING -> RUNNING, revision {int(r() * 90) + 1}")
            )
        elif code is StepCode.QUERY_PASSWORD:
            body.append(("INFO", f"从凭据库查询主机 {host.ip} 的登录信息 (account=root, auth_type={host.auth})"))
            if r() < 0.3:
                body.append(
                    ("WARNING", f"凭据将在 {int(r() * 30) + 1} 天后过期, 请及时更新 (bk_host_id={host.bk_host_id})")
                )
        elif code is StepCode.CHOOSE_AP:
            ap = host.ap
            body.append(("INFO", f"候选接入点: ap-{ap} (127.200.{ap}.10), ap-{ap + 1} (127.200.{ap + 1}.10)"))
            for attempt in range(1 + int(r() * 3)):
                body.append(
                    ("DEBUG", f"测试 {host.ip} -> 127.200.{ap}.10:{17980 + attempt} 连通, 延迟 {r() * 40:.2f} ms")
                )
            body.append(("INFO", f"选用接入点 ap-{ap}, 下载源 http://127.200.{ap}.10:17980/download"))
        elif code is StepCode.INSTALL:
            body.extend(self._install(host))
        elif code is StepCode.QUERY_AGENT_STATUS:
            body.append(("INFO", "期望的 Agent 状态为 RUNNING"))
            for probe in range(1 + int(r() * 4)):
                body.append(
                    (
                        "DEBUG",
                        f"第 {probe + 1} 次查询: agent pid={host.pid} 心跳间隔 {10 + int(r() * 50)}s, "
                        f"版本 {host.version}, 上次心跳 {int(r() * 9000)} ms 前",
                    )
                )
        if outcome is Status.FAILED:
            body.append(("ERROR", f"{name} 失败: {self.rng.choice(_FAILURES).format(ip=host.ip)}"))
        elif outcome is Status.RUNNING:
            body = body[: max(1, len(body) // 2)]
        else:
            body.append(("INFO", f"{name} 成功"))
        return body

    def _install(self, host: HostFacts) -> list[tuple[str, str]]:
        r = self.rng.random
        sha = f"{self.rng.getrandbits(64):016x}"
        out: list[tuple[str, str]] = [
            ("INFO", f"连接 {host.ip}:22 (user=root, timeout=30s)"),
            ("INFO", f"已连接, 远端系统 Linux 5.{int(r() * 15)}.{int(r() * 200)}-{int(r() * 900)}.el7.x86_64"),
            ("INFO", f"下发 setup_agent.sh (sha256 {sha}...) 到 /tmp/nodeops/{host.bk_host_id}/"),
            (
                "INFO",
                f"执行: bash /tmp/nodeops/{host.bk_host_id}/setup_agent.sh -i 0 -l http://127.200.{host.ap}.10:17980"
                f"/download -r http://127.200.{host.ap}.10:10300 -c {self.rng.getrandbits(40):010x}",
            ),
            ("INFO", f"[setup] 检查磁盘空间: /usr/local 剩余 {r() * 80 + 2:.1f} GB, 需要 0.3 GB"),
            ("INFO", f"[setup] 检查端口 {48668 + int(r() * 4)}, 58625, 10020 未被占用"),
        ]
        size_kb = 18000 + int(r() * 4000)
        got = 0
        while got < size_kb:
            got = min(size_kb, got + int(r() * 6000) + 1500)
            out.append(
                (
                    "DEBUG",
                    f"[setup] 下载 nodeops-agent-{host.version}.tgz: {got}/{size_kb} KB ({got * 100 // size_kb}%)",
                )
            )
        out.append(("INFO", f"[setup] 下载完成, 用时 {r() * 9 + 0.5:.2f}s, md5 {self.rng.getrandbits(64):016x}"))
        out.append(("INFO", f"[setup] 解压到 /usr/local/nodeops-agent, {300 + int(r() * 60)} 个文件"))
        for conf in ("agent.conf", "plugin.conf", "transit.conf")[: 1 + int(r() * 3)]:
            out.append(("INFO", f"[setup] 写入 /usr/local/nodeops-agent/etc/{conf} (server=127.200.{host.ap}.10)"))
        if r() < 0.2:
            out.append(("WARNING", f"[setup] 发现旧进程 pid={host.pid - 17}, 已停止"))
        out.append(("INFO", f"[setup] 启动 agent, pid={host.pid}"))
        for wait in range(1 + int(r() * 5)):
            out.append(("DEBUG", f"[setup] 等待 agent 注册心跳 ({wait + 1}/12), 连接 127.200.{host.ap}.10:10300 ..."))
        out.append(("INFO", f"[setup] agent 心跳正常, 版本 {host.version}, 用时 {r() * 20 + 2:.1f}s"))
        return out


_FAILURES = (
    "ssh {ip}:22 连接超时 (timeout=30s)",
    "认证失败: root@{ip} Permission denied (publickey,password)",
    "[setup] 下载安装包失败: HTTP 502 from download server",
    "[setup] /usr/local 磁盘空间不足",
    "agent 在 120s 内未上报心跳",
)


@dataclass(frozen=True, slots=True)
class HostFacts:
    job_id: int
    bk_host_id: int
    ip: str
    ap: int
    pid: int
    version: str
    auth: str


def host_ip(global_index: int) -> str:
    k = global_index + 1
    return f"127.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}"


def host_outcomes(rng: random.Random, *, recent: bool) -> list[Status]:
    """Per step: SUCCESS for a finished host; a failed or still-running one stops at some step, PENDING after.

    Hosts of old jobs have finished (91% succeeded, 9% failed); those of ``recent`` jobs may still be running.
    """
    n = len(STEPS)
    roll = rng.random()
    if roll < (0.88 if recent else 0.91):
        return [Status.SUCCESS] * n
    stop = rng.choice((1, 2, 3, 3, 3, 4)) if n > 4 else n - 1
    last = Status.RUNNING if recent and roll >= 0.96 else Status.FAILED
    return [Status.SUCCESS] * stop + [last] + [Status.PENDING] * (n - stop - 1)


def fill(data_dir: Path, jobs_n: int, inst_n: int, seed: int, batch_jobs: int = 20, database_url: str = "") -> Dataset:
    """Migrate a fresh database (SQLite in ``data_dir``, or the empty PostgreSQL one at ``database_url``) and
    fill it through the project's store functions."""
    started = time.perf_counter()
    settings = Settings(data_dir=data_dir, database_url=database_url)
    db = Database.connect(settings.database_url)
    try:
        migrate.upgrade(db)
        app = admin.add_app(db, code=APP_CODE, allow_username=True)
        admin.add_user(db, username=USERNAME, is_superuser=True)
        rng = random.Random(seed)
        writer = LogWriter(rng, settings.tz)
        reads, renderer = LogReads(db), AnswerRenderer(settings.tz)
        job_ids: list[int] = []
        t0 = int(T0.timestamp())
        log_bytes = chunk_rows = 0
        for first in range(0, jobs_n, batch_jobs):
            with db.session() as session:
                step_rows: list[store_jobs.StepProgress] = []
                record_rows: list[store_jobs.RecordProgress] = []
                for j in range(first, min(first + batch_jobs, jobs_n)):
                    job_start = t0 + j * 90
                    base = HOST_ID_BASE + j * inst_n
                    instances = [
                        store_jobs.NewInstance(
                            instance_id=f"host|instance|host|{base + i}",
                            bk_host_id=base + i,
                            host_key=f"{host_ip(j * inst_n + i)}-0-0",
                            instance_info={
                                "host": {
                                    "bk_host_id": base + i,
                                    "bk_host_innerip": host_ip(j * inst_n + i),
                                    "bk_cloud_id": 0,
                                    "bk_biz_id": 2 + j % 5,
                                    "os_type": "LINUX",
                                }
                            },
                        )
                        for i in range(inst_n)
                    ]
                    created = store_jobs.create_job(
                        session,
                        job_type=JOB_TYPE,
                        created_by=USERNAME,
                        from_system="bench",
                        bk_biz_scope=[2 + j % 5],
                        instances=instances,
                        steps=STEPS,
                    )
                    job_ids.append(created.job_id)
                    chunks: list[tuple[int, int, str]] = []
                    for i, instance in enumerate(instances):
                        record_id = created.record_ids[instance.instance_id]
                        facts = HostFacts(
                            job_id=created.job_id,
                            bk_host_id=base + i,
                            ip=host_ip(j * inst_n + i),
                            ap=1 + (j * inst_n + i) % 40,
                            pid=2000 + int(rng.random() * 60000),
                            version=f"2.{int(rng.random() * 5)}.{int(rng.random() * 30)}",
                            auth=rng.choice(("PASSWORD", "KEY")),
                        )
                        outcomes = host_outcomes(rng, recent=j >= jobs_n * 0.98)
                        second = job_start + int(rng.random() * 30)
                        record_start = second
                        for step, outcome in zip(STEPS, outcomes, strict=True):
                            if outcome is Status.PENDING:
                                step_rows.append(store_jobs.StepProgress(record_id, step.index, outcome, None, None))
                                continue
                            lines = writer.lines(step.code, step.name, facts, outcome)
                            span = 1 + int(rng.random() * (90 if step.code is StepCode.INSTALL else 4))
                            stamped = [
                                f"[{writer.stamp(second + n * span // len(lines))} {level}] {text}"
                                for n, (level, text) in enumerate(lines)
                            ]
                            finish = None if outcome is Status.RUNNING else writer.at(second + span)
                            step_rows.append(
                                store_jobs.StepProgress(record_id, step.index, outcome, writer.at(second), finish)
                            )
                            # a step's log arrives in a few appends while it runs
                            parts = 1 + int(rng.random() * (4 if len(stamped) > 8 else 2))
                            cut = -(-len(stamped) // parts)
                            for k in range(0, len(stamped), cut):
                                text = "\n".join(stamped[k : k + cut])
                                chunks.append((record_id, step.index, text))
                                log_bytes += len(text.encode())
                            second += span
                        status = Status.SUCCESS
                        if Status.FAILED in outcomes:
                            status = Status.FAILED
                        elif Status.RUNNING in outcomes:
                            status = Status.RUNNING
                        finish = None if status is Status.RUNNING else writer.at(second)
                        record_rows.append(
                            store_jobs.RecordProgress(record_id, status, writer.at(record_start), finish)
                        )
                    store_jobs.write_progress(db, session, chunks=chunks)
                    chunk_rows += len(chunks)
                store_jobs.write_progress(db, session, steps=step_rows, records=record_rows)
                # this batch's jobs get their status and statistics as the engine stores them
                for job_id in job_ids[first:]:
                    pipelines.refresh_job(session, job_id=job_id)
                # the engine's LogWriter seals a record's answer in the transaction that finishes it
                answers.seal(session, reads, renderer, [row.record_id for row in record_rows])
            done = min(first + batch_jobs, jobs_n)
            if done % max(batch_jobs, jobs_n // 10) == 0 or done == jobs_n:
                elapsed = time.perf_counter() - started
                mib = log_bytes / 2**20
                say(f"  fill: {done}/{jobs_n} jobs, {mib:.0f} MiB of log in {chunk_rows} chunks, {elapsed:.1f}s")
        if not db.is_sqlite:
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as pg:
                pg.execute(sa.text("VACUUM ANALYZE"))  # as autovacuum would, soon after a bulk load
    finally:
        db.dispose()
    if not database_url:
        with sqlite3.connect(data_dir / SQLITE_FILE_NAME) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    fill_s = time.perf_counter() - started
    dataset = Dataset(
        data_dir=data_dir,
        database_url=database_url,
        job_ids=job_ids,
        instances=inst_n,
        app_secret=app.secret,
        fill_s=fill_s,
    )
    manifest = {
        "jobs": jobs_n,
        "instances": inst_n,
        "seed": seed,
        "format": FORMAT,
        "job_ids": job_ids,
        "app_secret": app.secret,
    }
    manifest["fill_s"] = round(fill_s, 1)
    (data_dir / MANIFEST).write_text(json.dumps(manifest))
    return dataset


def load_or_fill(data_dir: Path, jobs_n: int, inst_n: int, seed: int) -> Dataset:
    """Reuse a database this bench filled with the same sizes and seed, else fill ``data_dir`` (must be empty)."""
    manifest_path = data_dir / MANIFEST
    if manifest_path.exists() and (data_dir / SQLITE_FILE_NAME).exists():
        saved = json.loads(manifest_path.read_text())
        if (saved["jobs"], saved["instances"], saved["seed"], saved.get("format")) == (jobs_n, inst_n, seed, FORMAT):
            db = Database.connect(Settings(data_dir=data_dir, database_url="").database_url)
            try:
                migrate.upgrade(db)  # a database filled before the latest migration is brought up to date
            finally:
                db.dispose()
            return Dataset(
                data_dir=data_dir,
                database_url="",
                job_ids=saved["job_ids"],
                instances=inst_n,
                app_secret=saved["app_secret"],
                fill_s=float(saved.get("fill_s", 0.0)),
                reused=True,
            )
        raise SystemExit(f"{data_dir} holds a bench database of other sizes; give an empty or new --data-dir")
    if data_dir.exists() and any(data_dir.iterdir()):
        raise SystemExit(f"{data_dir} is not empty and holds no bench database; give an empty or new --data-dir")
    data_dir.mkdir(parents=True, exist_ok=True)
    return fill(data_dir, jobs_n, inst_n, seed)


# ---------------------------------------------------------------------------------------------------- wrk


_DONE_LUA = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f mean_us=%.1f"
      .. " err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def seeded_threads_lua(seed: int) -> str:
    """The part of a wrk script that gives each wrk thread its own random sequence, derived from ``seed``."""
    return f"""local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

function init(args)
  math.randomseed({seed} + 7919 * (tid or 0))
end
"""


def write_random_lua(path: Path, dataset: Dataset, query_prefix: str, seed: int) -> None:
    """A wrk script asking for a random (job, instance) of the whole dataset on every request."""
    job_ids = ",".join(str(j) for j in dataset.job_ids)
    bases = ",".join(str(dataset.host_base(n)) for n in range(len(dataset.job_ids)))
    path.write_text(
        f"""-- generated by bench/log_api.py
local job_ids = {{{job_ids}}}
local host_bases = {{{bases}}}
local per_job = {dataset.instances}
local njobs = #job_ids
local prefix = "{ESB_PATH}?{query_prefix}&job_id="
local random = math.random
"""
        + seeded_threads_lua(seed)
        + """
function request()
  local j = random(njobs)
  local host = host_bases[j] + random(per_job) - 1
  return wrk.format("GET", prefix .. job_ids[j] .. "&instance_id=host%7Cinstance%7Chost%7C" .. host)
end
"""
        + _DONE_LUA
    )


@dataclass(slots=True)
class Run:
    """One measured row of the table."""

    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int = 0
    bytes_per_request: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    server_cpu_us: float | None = None  # server CPU per request
    server_cpu_share: float | None = None  # server CPU seconds / wall seconds
    client_cpu_us: float | None = None  # wrk CPU per request
    other_cores: float | None = None  # CPU of other processes on the machine during the run, in cores


def run_wrk(
    name: str,
    url: str,
    script: Path,
    *,
    duration: float,
    connections: int,
    threads: int,
    server_pid: int | None = None,
) -> Run:
    """One wrk run (killed on any error or interrupt); with ``server_pid``, the server's CPU time during it."""
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    others_before = all_cpu_seconds()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=duration + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wall = time.perf_counter() - started
    others_after = all_cpu_seconds()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after = cpu_seconds(server_pid) if server_pid else 0.0
    text = out.decode(errors="replace")
    match = re.search(r"^BENCH (.*)$", text, re.MULTILINE)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}):\n{text}")
    values = {k: float(v) for k, v in (pair.split("=") for pair in match.group(1).split())}
    requests = int(values["requests"])
    if requests == 0:
        raise RuntimeError(f"wrk completed no request:\n{text}")
    client_cpu = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    run = Run(
        name=name,
        rps=requests / (values["duration_us"] / 1e6),
        p50_ms=values["p50_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
        requests=requests,
        bytes_per_request=values["bytes"] / requests,
        errors={k[4:]: int(v) for k, v in values.items() if k.startswith("err_") and v},
        client_cpu_us=client_cpu / requests * 1e6,
    )
    if server_pid:
        run.server_cpu_us = (cpu_after - cpu_before) / requests * 1e6
        run.server_cpu_share = (cpu_after - cpu_before) / wall
        exclude = {os.getpid(), proc.pid} | family(server_pid)
        run.other_cores = other_cpu_seconds(others_before, others_after, exclude) / wall
    return run


# ---------------------------------------------------------------------------------------------------- floors


_FLOOR_SQL = (
    "SELECT s.step_index, s.name, s.status, s.start_at, s.finish_at, l.text"
    " FROM instance_records r"
    " JOIN record_steps s ON s.record_id = r.id"
    " LEFT JOIN step_logs l ON l.record_id = s.record_id AND l.step_index = s.step_index"
    " WHERE r.job_id = ? AND r.bk_host_id = ?"
    " ORDER BY s.step_index, l.id"
)


def data_floor(dataset: Dataset, duration: float, seed: int) -> tuple[Run, float]:
    """Random instances read by one bare SQL join and JSON-encoded, in process (sqlite3, or psycopg on
    PostgreSQL: one statement and one round trip per read); returns the run and bytes per read."""
    rng = random.Random(seed)
    conn: Any
    sql = _FLOOR_SQL
    if dataset.database_url:
        import psycopg

        from nodeops.store.notices import libpq_url

        conn = psycopg.connect(libpq_url(dataset.database_url), autocommit=True)
        sql = _FLOOR_SQL.replace("?", "%s")
    else:
        conn = sqlite3.connect(dataset.data_dir / SQLITE_FILE_NAME, check_same_thread=False)
    try:
        cur = conn.cursor()
        times: list[int] = []
        encoded = 0
        njobs = len(dataset.job_ids)
        perf = time.perf_counter_ns
        dumps = orjson.dumps
        deadline = perf() + int(duration * 1e9)
        started = perf()
        now = started
        while now < deadline:
            n = int(rng.random() * njobs)
            host = dataset.host_base(n) + int(rng.random() * dataset.instances)
            t = perf()
            cur.execute(sql, (dataset.job_ids[n], host))
            steps: list[dict[str, Any]] = []
            texts: list[str] = []
            current: Any = None
            for row in cur.fetchall():
                if current is None or row[0] != current[0]:
                    if current is not None:
                        steps.append(_floor_step(current, texts))
                    current, texts = row, []
                if row[5] is not None:
                    texts.append(row[5])
            if current is not None:
                steps.append(_floor_step(current, texts))
            body = dumps(steps)
            now = perf()
            times.append(now - t)
            encoded += len(body)
        elapsed = (now - started) / 1e9
    finally:
        conn.close()
    times.sort()
    run = Run(
        name="data floor (psycopg+orjson)" if dataset.database_url else "data floor (sqlite3+orjson)",
        rps=len(times) / elapsed,
        p50_ms=_percentile(times, 50) / 1e6,
        p99_ms=_percentile(times, 99) / 1e6,
        requests=len(times),
    )
    return run, encoded / len(times)


def _floor_step(row: Any, texts: list[str]) -> dict[str, Any]:
    return {"step": row[1], "status": row[2], "log": "\n".join(texts), "start_time": row[3], "finish_time": row[4]}


def _percentile(sorted_values: Sequence[int], pct: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return float(sorted_values[index])


# ---------------------------------------------------------------------------------------------------- main


@contextmanager
def server(
    procs: Processes, cmd: Sequence[str], env: dict[str, str], health_url: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    proc = procs.start(cmd, env=env, log=log)
    try:
        wait_until_up(health_url, proc, log)
        yield proc
    finally:
        procs.stop(proc)


def check_responses(urls: Sequence[str]) -> list[int]:
    """GET each URL; every answer must be a success envelope with one entry per planned step. Returns sizes."""
    sizes = []
    for url in urls:
        body = http_get(url)
        answer = orjson.loads(body)
        if not answer.get("result") or not isinstance(answer.get("data"), list) or len(answer["data"]) != len(STEPS):
            raise RuntimeError(f"the log API did not answer as expected for {url}:\n{body[:600]!r}")
        sizes.append(len(body))
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the log API against the HTTP and data floors.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=1000, help="jobs to create")
    parser.add_argument("--instances", type=int, default=100, help="host instances per job")
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured wrk run (and data floor)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--also-t2", action="store_true", help="also run the random mix and floor with wrk -t2")
    parser.add_argument(
        "--warmup",
        type=float,
        default=10,
        help="seconds of random load right after the server starts, reported as the cold-start row (0 = none)",
    )
    parser.add_argument("--seed", type=int, default=20250301, help="seed of the data and of the request mix")
    parser.add_argument("--data-dir", type=Path, help="keep the database here (reused when sizes and seed match)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke defaults: 20 jobs x 20 instances, 2s runs, 1s warm-up"
    )
    add_wait_quiet(parser)
    parser.add_argument(
        "--database",
        default="sqlite",
        metavar="sqlite|postgresql[=URL]",
        help="the store to fill and serve from: SQLite (a file in the data dir), or PostgreSQL on a throwaway "
        "server the bench starts, or on the server at URL (an admin URL on 127.0.0.0/8); a database of its own, "
        "dropped at the end",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="API processes (nodeops serve --workers N, celery mode: PostgreSQL, and a redis-server the bench starts)",
    )
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    parser.add_argument(
        "--serve-cmd",
        default=f"{BIN / 'nodeops'} serve",
        help="server command (split on spaces), run with NODEOPS_DATA_DIR/NODEOPS_PORT set; for experiments",
    )
    args = parser.parse_args(argv)
    if args.quick:  # smaller defaults; options given explicitly still win
        parser.set_defaults(jobs=20, instances=20, duration=2, warmup=1)
        args = parser.parse_args(argv)
    if min(args.jobs, args.instances, args.connections, args.threads, args.workers) < 1 or args.duration <= 0:
        parser.error("sizes, connections, threads, workers and duration must be positive")
    try:
        args.postgres = _postgres.parse_database(args.database)
    except ValueError as exc:
        parser.error(str(exc))
    if args.postgres is not None and args.data_dir:
        parser.error("--data-dir keeps a SQLite database; PostgreSQL is filled anew each run")
    if args.workers > 1:
        args.serve_cmd += f" --workers {args.workers}"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run_bench(parse_args(argv), "nodeops-bench-", _run)


def run_bench(
    args: argparse.Namespace, prefix: str, run: Callable[[argparse.Namespace, Processes, Path, float], int]
) -> int:
    """Check that wrk is installed, note the load average (``args.loadavg``), then ``run(args, procs, temp,
    began)`` in a ``bench_session`` whose temp dir's name starts with ``prefix``."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed; run: bash scripts/ensure-apt.sh wrk")
    began = time.perf_counter()
    args.loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with bench_session(prefix) as (procs, temp):
        return run(args, procs, temp, began)


@contextmanager
def bench_session(prefix: str) -> Iterator[tuple[Processes, Path]]:
    """The children and the temp dir of a benchmark: on exit, on error, and on Ctrl-C or SIGTERM, every child is
    stopped by pid and the temp dir deleted."""
    procs = Processes()
    temp = Path(tempfile.mkdtemp(prefix=prefix))

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (`cmd &`)
    try:
        yield procs, temp
    finally:
        procs.stop_all()
        shutil.rmtree(temp, ignore_errors=True)


def add_wait_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each measurement, wait up to this long for other load on the machine to stop",
    )


def _run(args: argparse.Namespace, procs: Processes, temp: Path, began: float) -> int:
    if args.postgres is None:
        return _run_on(args, procs, temp, began, "")
    with _postgres.server(args.postgres, temp) as admin_url, _postgres.database(admin_url) as database_url:
        return _run_on(args, procs, temp, began, database_url)


def _run_on(args: argparse.Namespace, procs: Processes, temp: Path, began: float, database_url: str) -> int:
    data_dir = args.data_dir.resolve() if args.data_dir else temp / "data"
    total = args.jobs * args.instances
    where = "PostgreSQL" if database_url else data_dir
    say(f"filling {args.jobs} jobs x {args.instances} instances x {len(STEPS)} steps into {where} ...")
    if database_url:
        data_dir.mkdir(parents=True, exist_ok=True)
        dataset = fill(data_dir, args.jobs, args.instances, args.seed, database_url=database_url)
        db_mib = _postgres.size_mib(database_url)
    else:
        dataset = load_or_fill(data_dir, args.jobs, args.instances, args.seed)
        db_mib = sum(p.stat().st_size for p in data_dir.glob(SQLITE_FILE_NAME + "*")) / 2**20
    say(f"{'reused' if dataset.reused else 'filled'} in {dataset.fill_s:.1f}s; database {db_mib:.0f} MiB")

    query_prefix = urlencode({"bk_app_code": APP_CODE, "bk_app_secret": dataset.app_secret, "bk_username": USERNAME})
    random_lua = temp / "random.lua"
    write_random_lua(random_lua, dataset, query_prefix, args.seed)
    done_lua = temp / "done.lua"
    done_lua.write_text(_DONE_LUA)

    def instance_path(job_index: int, offset: int) -> str:
        instance_id = quote(f"host|instance|host|{dataset.host_base(job_index) + offset}", safe="")
        return f"{ESB_PATH}?{query_prefix}&job_id={dataset.job_ids[job_index]}&instance_id={instance_id}"

    sample_rng = random.Random(args.seed + 1)
    samples = [
        (int(sample_rng.random() * len(dataset.job_ids)), int(sample_rng.random() * args.instances))
        for _ in range(min(300, total))
    ]
    same_path = instance_path(len(dataset.job_ids) // 2, args.instances // 2)

    port = free_port()
    base = f"http://{HOST}:{port}"
    env = {
        **os.environ,
        "NODEOPS_DATA_DIR": str(data_dir),
        "NODEOPS_PORT": str(port),
        "NODEOPS_HOST": HOST,
        "NODEOPS_DATABASE_URL": database_url,
    }
    if args.workers > 1:  # several API processes: the API nodes of a cluster, which needs a broker
        if not database_url:
            raise SystemExit("--workers needs --database postgresql: several API processes serve a cluster")
        broker_port = free_port()
        redis_dir = temp / "redis"
        redis_dir.mkdir()
        redis_cmd = [args.redis_server, "--bind", HOST, "--port", str(broker_port), "--save", "", "--appendonly"]
        procs.start([*redis_cmd, "no", "--dir", str(redis_dir)], env=dict(os.environ), log=redis_dir / "redis.log")
        env |= {
            "NODEOPS_EXECUTOR": "celery",
            "NODEOPS_BROKER_URL": f"redis://{HOST}:{broker_port}/0",
            "NODEOPS_SECRET_KEY": "bench-secret-key-" + "x" * 32,
            "NODEOPS_PUBLIC_URL": f"http://{HOST}:{port}",
        }
    runs: list[Run] = []

    def measure(
        name: str, url: str, script: Path, threads: int, pid: int, *, duration: float, warmup: float = 0
    ) -> None:
        """Wait for a quiet machine if asked, warm up on unmeasured random load if asked, then one wrk run."""
        wait_quiet(args.wait_quiet, say)
        if warmup > 0:
            run_wrk("warm-up", url, random_lua, duration=warmup, connections=args.connections, threads=threads)
        say(f"{name}: wrk -t{threads} -c{args.connections} -d{duration:.0f}s ...")
        runs.append(
            run_wrk(name, url, script, duration=duration, connections=args.connections, threads=threads, server_pid=pid)
        )

    say(f"starting {args.serve_cmd} on {base} ...")
    with server(procs, args.serve_cmd.split(), env, base + "/healthz", temp / "nodeops.log") as api:
        sizes = check_responses([base + instance_path(n, i) for n, i in samples])
        same_size = check_responses([base + same_path])[0]
        typical = int(statistics.median(sizes))
        say(
            f"responses: median {typical} B, mean {statistics.fmean(sizes):.0f} B, "
            f"min {min(sizes)} B, max {max(sizes)} B ({len(sizes)} random instances); same instance {same_size} B"
        )
        if args.warmup > 0:  # the server's first seconds, while its caches fill: measured, but no target
            measure(COLD_ROW.format(s=args.warmup), base, random_lua, args.threads, api.pid, duration=args.warmup)
        measure(RANDOM_ROW, base, random_lua, args.threads, api.pid, duration=args.duration)
        measure("log API (same instance)", base + same_path, done_lua, args.threads, api.pid, duration=args.duration)
        if args.also_t2 and args.threads != 2:
            measure("log API (random, wrk -t2)", base, random_lua, 2, api.pid, duration=args.duration)
    api_log = temp / "nodeops.log"
    if re.search(r"Traceback|ERROR", api_log.read_text(errors="replace")):
        say(f"warning: the server logged errors:\n{tail(api_log)}")

    floor_port = free_port()
    floor_base = f"http://{HOST}:{floor_port}"
    floor_cmd = [str(BIN / "python"), str(FLOOR_SCRIPT), "--port", str(floor_port), "--size", str(typical)]
    say(f"HTTP floor: bench/_floor.py with a {typical} B body on {floor_base} ...")
    with server(procs, floor_cmd, dict(os.environ), floor_base + "/", temp / "floor.log") as floor:
        warmup = min(2.0, args.warmup)  # it has no caches to fill
        measure("HTTP floor", floor_base, random_lua, args.threads, floor.pid, duration=args.duration, warmup=warmup)
        if args.also_t2 and args.threads != 2:
            measure("HTTP floor (wrk -t2)", floor_base, random_lua, 2, floor.pid, duration=args.duration)

    lane_port = free_port()
    lane_base = f"http://{HOST}:{lane_port}"
    say(f"lane floor: bench/_floor.py --lane with a {typical} B body on {lane_base} ...")
    lane_cmd = [*floor_cmd[:3], str(lane_port), *floor_cmd[4:], "--lane"]
    with server(procs, lane_cmd, dict(os.environ), lane_base + "/", temp / "lane-floor.log") as lane:
        measure(LANE_ROW, lane_base, random_lua, args.threads, lane.pid, duration=args.duration, warmup=2.0)

    wait_quiet(args.wait_quiet, say)
    say(f"data floor: {args.duration:.0f}s of in-process reads ...")
    data_run, data_bytes = data_floor(dataset, args.duration, args.seed)
    runs.append(data_run)

    report(args, dataset, db_mib, typical, same_size, data_bytes, runs, time.perf_counter() - began)
    return 0


def report(
    args: argparse.Namespace,
    dataset: Dataset,
    db_mib: float,
    typical: int,
    same_size: int,
    data_bytes: float,
    runs: list[Run],
    runtime_s: float,
) -> None:
    by_name = {run.name: run for run in runs}
    floor = by_name["HTTP floor"]
    floor_t2 = by_name.get("HTTP floor (wrk -t2)")
    random_run = by_name[RANDOM_ROW]
    out: list[str] = []
    w = out.append
    w("")
    w(
        f"log API benchmark ({'PostgreSQL' if dataset.database_url else 'SQLite'}"
        f"{f', {args.workers} API processes' if args.workers > 1 else ''}): "
        f"{args.jobs} jobs x {args.instances} instances x {len(STEPS)} steps "
        f"({args.jobs * args.instances} instances), wrk -t{args.threads} -c{args.connections} -d{args.duration:.0f}s, "
        f"{os.cpu_count()} CPUs"
    )
    w(
        f"fill {dataset.fill_s:.1f}s{' (reused database)' if dataset.reused else ''}, database {db_mib:.0f} MiB; "
        f"typical response {typical} B (median of random instances), same-instance response {same_size} B"
    )
    w("")
    header = f"{'':34} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'x HTTP floor':>13} {'x data floor':>13}"
    w(header)
    w("-" * len(header))
    data_rps = data_run_rps(runs)
    for run in runs:
        reference = floor_t2 if "-t2" in run.name and floor_t2 is not None else floor
        w(
            f"{run.name:34} {run.rps:11.0f} {run.p50_ms:8.2f} {run.p99_ms:8.2f} {run.rps / reference.rps:12.2f}x "
            f"{run.rps / data_rps:12.2f}x"
        )
    w("")
    ratio = random_run.rps / floor.rps
    on_pg = bool(dataset.database_url)
    target = TARGET_RATIO_PG if on_pg else TARGET_RATIO
    w(f"targets (log API, random instance, {'PostgreSQL' if on_pg else 'SQLite'}):")
    w(f"  ≥{target}x HTTP floor requests/s  {ratio:5.2f}x     {'PASS' if ratio >= target else 'MISS'}")
    w(
        f"  p99 ≤ {TARGET_P99_MS:.0f} ms                    {random_run.p99_ms:5.2f} ms  "
        f"{'PASS' if random_run.p99_ms <= TARGET_P99_MS else 'MISS'}"
    )
    if on_pg:
        data_ratio = random_run.rps / data_run_rps(runs)
        w(
            f"  ≥{TARGET_DATA_RATIO_PG}x data floor requests/s   {data_ratio:5.2f}x     "
            f"{'PASS' if data_ratio >= TARGET_DATA_RATIO_PG else 'MISS'}"
        )
    if args.workers > 1:
        w(f"  (the server ran {args.workers} API processes on {os.cpu_count()} CPUs: figures as measured, no target)")
    lane = by_name.get(LANE_ROW)
    if lane is not None:
        w(
            f"  (not a target: the lane floor, the log lane answering a fixed body without the store, did "
            f"{lane.rps / floor.rps:.2f}x; the log API did {random_run.rps / lane.rps:.2f}x of it)"
        )
    cold = by_name.get(COLD_ROW.format(s=args.warmup))
    if cold is not None:
        w(
            f"  (not a target: in its first {args.warmup:.0f}s, while its caches filled, the server did "
            f"{cold.rps / floor.rps:.2f}x at p99 {cold.p99_ms:.2f} ms)"
        )
    w("")
    header = f"{'CPU per request':34} {'server µs':>10} {'server busy':>12} {'wrk µs':>8} {'other':>7} {'B/resp':>7}"
    w(header)
    w("-" * len(header))
    for run in runs:
        if run.server_cpu_us is None:
            continue
        w(
            f"{run.name:34} {run.server_cpu_us:10.0f} {(run.server_cpu_share or 0) * 100:11.0f}% "
            f"{run.client_cpu_us or 0:8.1f} {run.other_cores or 0:7.2f} {run.bytes_per_request:7.0f}"
        )
    per_read = 1e6 / data_run_rps(runs)
    w(f"{'data floor (in process, per read)':34} {per_read:10.0f} {100:11.0f}% {'-':>8} {'-':>7} {data_bytes:7.0f}")
    w("server busy = server CPU s / wall s (100% = one core); other = CPU of other processes on the machine during")
    w("the run, in cores; B/resp = wrk bytes per response, headers included (data floor: bytes of JSON per read).")
    for run in runs:
        if run.errors:
            w(f"wrk errors in {run.name}: {run.errors}")
        if run.server_cpu_us is not None and run.bytes_per_request < 0.5 * typical:
            # error envelopes are HTTP 200 too, but a few hundred bytes: wrk cannot tell them apart otherwise
            w(f"warning: {run.name} averaged {run.bytes_per_request:.0f} B per response; many were likely errors")
    noisy = [run.name for run in runs if (run.other_cores or 0) > NOISY_CORES]
    if noisy:
        w(f"warning: other load on the machine during {', '.join(noisy)} (> {NOISY_CORES} cores): figures are noisy")
    w(f"load average at start: {args.loadavg}")
    w(f"total runtime {runtime_s:.1f}s")
    print("\n".join(out), flush=True)


def data_run_rps(runs: list[Run]) -> float:
    return next(run.rps for run in runs if run.name.startswith("data floor"))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted; stopped every process the bench started")
        sys.exit(130)
