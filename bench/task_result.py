"""Benchmark of task_result_subscription (任务执行结果) on one task of many instances.

1. Fill a fresh database through the project's store: one job (its subscription and task) of ``--instances``
   host instances (default 10,000), each with the 7 steps of INSTALL_AGENT, a log chunk per step and a mix of
   statuses (SUCCESS, FAILED at a step, RUNNING, PENDING). SQLite in a temp data dir; ``--database postgresql``
   then runs everything again on PostgreSQL: a throwaway server the bench starts, or ``--database
   postgresql=URL`` on the server at URL (``bench/_postgres.py``), in a database of its own dropped at the end.
2. In process: ``SubscriptionService.task_result`` pages (first, middle, last, need_detail, a status filter, an
   instance filter in the ip form), ``--requests`` calls each, median and p95.
3. Over real HTTP: ``nodeops serve`` on a free 127.0.0.1 port, the same requests with one keep-alive client.
4. ``return_all``: the whole result streamed, in process under ``tracemalloc`` (peak Python memory, against the
   size of the answer it produced) and over HTTP (time to first byte, total, bytes, the server's RSS growth).

Run: ``.venv/bin/python bench/task_result.py [--instances 10000 --requests 50 --database postgresql[=URL]]``.
Targets: HTTP p95 ≤ 50 ms for the page of 500, ≤ 25 ms for the pages of 50. Everything stays on
127.0.0.1; the server is stopped by pid on exit and the temporary data dir deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _postgres
from log_api import BIN, Processes, free_port, wait_until_up

from nodeops.domain.plans import JobType, plan_steps
from nodeops.domain.status import Status
from nodeops.service import admin
from nodeops.service.auth import Caller
from nodeops.service.container import Services
from nodeops.service.subscriptions import ResultStream
from nodeops.settings import Settings
from nodeops.store import jobs, migrate
from nodeops.store.models import utcnow

TARGET_MS = 50.0  # a page of 500
TARGET_PAGE_50_MS = 25.0  # a page of 50
PATH = "/backend/api/subscription/task_result/"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Filled:
    subscription_id: int
    task_id: int
    count: int
    job_id: int


def fill(services: Services, count: int) -> Filled:
    """One job of ``count`` instances through the store, with steps, statuses and a log chunk per step."""
    admin.add_app(services.db, code="bench", secret="bench-secret-0123456789", allow_username=True)
    admin.add_user(services.db, username="admin", is_superuser=True)
    plan = plan_steps(JobType.INSTALL_AGENT)
    instances = [
        jobs.NewInstance(
            instance_id=f"host|instance|host|{n}",
            bk_host_id=n,
            host_key=f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}-0-0",
            instance_info={
                "host": {
                    "bk_host_id": n,
                    "bk_host_innerip": f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
                    "bk_cloud_id": 0,
                    "bk_biz_id": 2,
                }
            },
        )
        for n in range(1, count + 1)
    ]
    now = utcnow()
    with services.db.session() as session:
        created = jobs.create_job(
            session,
            job_type=JobType.INSTALL_AGENT,
            created_by="admin",
            from_system="bench",
            bk_biz_scope=[2],
            instances=instances,
            steps=plan,
        )
    ids = sorted(created.record_ids.values())
    outcome = {Status.SUCCESS: ids[: int(count * 0.85)], Status.FAILED: ids[int(count * 0.85) : int(count * 0.95)]}
    outcome[Status.RUNNING] = ids[int(count * 0.95) : int(count * 0.98)]
    for status, chosen in outcome.items():
        for start in range(0, len(chosen), 2000):
            batch = chosen[start : start + 2000]
            finish = None if status == Status.RUNNING else now
            last = {Status.SUCCESS: len(plan), Status.FAILED: 4, Status.RUNNING: 5}[status]
            ran = plan[: last + (status != Status.SUCCESS)]
            with services.db.session() as session:
                steps = [
                    jobs.StepProgress(record_id, step.index, Status.SUCCESS, now, now)
                    if step.index < last
                    else jobs.StepProgress(record_id, step.index, status, now, finish)
                    for record_id in batch
                    for step in ran
                ]
                chunks = [
                    (
                        record_id,
                        step.index,
                        f"[2026-11-25 10:00:00 INFO] 开始 {step.name}.\n[2026-11-25 10:00:01 INFO] ok",
                    )
                    for record_id in batch
                    for step in ran
                ]
                jobs.write_progress(
                    services.db,
                    session,
                    chunks=chunks,
                    steps=steps,
                    records=[jobs.RecordProgress(record_id, status, now, finish) for record_id in batch],
                )
    return Filled(subscription_id=created.subscription_id, task_id=created.task_id, count=count, job_id=created.job_id)


def cases(count: int) -> list[tuple[str, dict[str, Any]]]:
    """The requests timed, for a task of ``count`` instances."""
    pages = -(-count // 50)
    n = count // 2
    middle_ip = f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
    return [
        ("page 1 of 50", {"page": 1, "pagesize": 50}),
        (f"page {pages // 2} of 50 (middle)", {"page": pages // 2, "pagesize": 50}),
        (f"page {pages} of 50 (last)", {"page": pages, "pagesize": 50}),
        ("page 1 of 50, need_detail (logs)", {"page": 1, "pagesize": 50, "need_detail": True}),
        ("statuses=[FAILED], page 2 of 50", {"page": 2, "pagesize": 50, "statuses": ["FAILED"]}),
        (
            "instance_id_list, ip form",
            {"page": 1, "pagesize": 50, "instance_id_list": [f"host|instance|host|{middle_ip}-0-0"]},
        ),
        ("page 1 of 500", {"page": 1, "pagesize": 500}),
    ]


def other_reads(filled: Filled, middle: str, job: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """The other read APIs on the same job, over HTTP only: (name, method, path, parameters)."""
    return [
        ("details_job, page 1 of 50", "POST", f"{job}/details/", {"page": 1, "pagesize": 50}),
        ("details_job, a middle page of 50", "POST", f"{job}/details/", {"page": filled.count // 100, "pagesize": 50}),
        ("job_list, page 1 of 10", "POST", "/api/job/job_list/", {"page": 1, "pagesize": 10}),
        ("log tail of one instance", "GET", f"{job}/log/tail/", {"instance_id": middle, "cursor": ""}),
        ("log search, one instance", "GET", f"{job}/log/search/", {"instance_id": middle, "q": "ok"}),
        ("log search, whole job, page 1", "GET", f"{job}/log/search/", {"q": "开始"}),
        ("log API, one instance", "GET", f"{job}/log/", {"instance_id": middle}),
    ]


def timings(call: Callable[[], Any], requests: int) -> tuple[float, float]:
    call()  # warm
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def in_process(services: Services, filled: Filled, requests: int) -> tuple[list[tuple[str, float, float]], str]:
    from nodeops.api.deps import subscription_service

    service = subscription_service(services)
    caller = Caller(app_code="bench", username="admin", is_superuser=True, biz_ids=frozenset())
    loop = asyncio.new_event_loop()
    rows = []
    for name, body in cases(filled.count):
        params = {"subscription_id": filled.subscription_id, **body}
        answer = loop.run_until_complete(service.task_result(caller, params))
        assert isinstance(answer, dict) and answer["total"] > 0 and answer["list"], (name, answer)
        median, p95 = timings(lambda p=params: loop.run_until_complete(service.task_result(caller, p)), requests)
        rows.append((name, median, p95))

    async def stream(need_detail: bool) -> tuple[int, int]:
        answer = await service.task_result(
            caller, {"subscription_id": filled.subscription_id, "return_all": True, "need_detail": need_detail}
        )
        assert isinstance(answer, ResultStream)
        size = count = 0
        async for batch in answer.rows:
            size += len(orjson.dumps(batch))
            count += len(batch)
        return count, size

    memory = []
    for need_detail in (False, True):
        tracemalloc.start()
        started = time.perf_counter()
        count, size = loop.run_until_complete(stream(need_detail))
        took = time.perf_counter() - started
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        memory.append(
            f"return_all{', need_detail' if need_detail else ''}: {count} rows, {size / 2**20:.1f} MiB of JSON in "
            f"{took * 1000:.0f} ms, peak traced Python memory {peak / 2**20:.1f} MiB "
            f"({peak / max(size, 1) * 100:.0f}% of the answer)"
        )
    for need_detail in (False, True):  # the same rows as one page held in memory, for contrast
        params = {"subscription_id": filled.subscription_id, "pagesize": filled.count, "need_detail": need_detail}
        tracemalloc.start()
        whole = loop.run_until_complete(service.task_result(caller, params))
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert isinstance(whole, dict)
        size = len(orjson.dumps(whole["list"]))
        del whole
        memory.append(
            f"one page of all {filled.count} rows{', need_detail' if need_detail else ''} (not streamed): "
            f"{size / 2**20:.1f} MiB of JSON, peak traced Python memory {peak / 2**20:.1f} MiB"
        )
    loop.close()
    return rows, "\n".join(memory)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def over_http(
    settings: Settings, filled: Filled, requests: int, procs: Processes, work: Path
) -> tuple[list[tuple[str, float, float]], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEOPS_")}
    env.update(
        NODEOPS_DATA_DIR=str(settings.data_dir),
        NODEOPS_DATABASE_URL=settings.database_url,
        NODEOPS_PORT=str(port),
        NODEOPS_SECRET_KEY="bench-secret-key",
    )
    log = work / f"serve-{port}.log"
    proc = procs.start([str(BIN / "nodeops"), "serve"], env=env, log=log)
    base = f"http://{HOST}:{port}"
    try:
        wait_until_up(f"{base}/healthz", proc, log)
        common = {"bk_app_code": "bench", "bk_app_secret": "bench-secret-0123456789", "bk_username": "admin"}
        rows = []
        with httpx.Client(base_url=base, timeout=60, trust_env=False) as client:

            def post(body: dict[str, Any]) -> dict[str, Any]:
                response = client.post(PATH, json={**common, "subscription_id": filled.subscription_id, **body})
                answer: dict[str, Any] = response.json()
                assert answer["result"], answer
                return answer

            for name, body in cases(filled.count):
                median, p95 = timings(lambda b=body: post(b), requests)
                rows.append((name, median, p95))

            def call(method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
                if method == "GET":
                    response = client.get(path, params={**common, **params})
                else:
                    response = client.post(path, json={**common, **params})
                answer: dict[str, Any] = response.json()
                assert answer["result"], answer
                return answer

            middle = f"host|instance|host|{filled.count // 2}"
            job = f"/api/job/{filled.job_id}"
            for name, method, path, params in other_reads(filled, middle, job):
                median, p95 = timings(lambda m=method, a=path, q=params: call(m, a, q), requests)
                rows.append((name, median, p95))
            streams = []
            for need_detail in (False, True):
                before = rss_kib(proc.pid)
                started = time.perf_counter()
                first = 0.0
                size = 0
                body = {
                    **common,
                    "subscription_id": filled.subscription_id,
                    "return_all": True,
                    "need_detail": need_detail,
                }
                with client.stream("POST", PATH, json=body) as response:
                    for chunk in response.iter_bytes():
                        if not first:
                            first = time.perf_counter() - started
                        size += len(chunk)
                took = time.perf_counter() - started
                growth = max(0, rss_kib(proc.pid) - before)
                streams.append(
                    f"HTTP return_all{', need_detail' if need_detail else ''}: {size / 2**20:.1f} MiB, first byte "
                    f"{first * 1000:.0f} ms, all {took * 1000:.0f} ms, server RSS +{growth / 1024:.1f} MiB"
                )
        return rows, "\n".join(streams)
    finally:
        procs.stop(proc)


def run(backend: str, url: str | None, args: argparse.Namespace, procs: Processes) -> None:
    work = Path(tempfile.mkdtemp(prefix="nodeops-bench-task-result-"))
    try:
        settings = Settings(
            data_dir=work / "data",
            database_url=url or f"sqlite:///{work / 'data' / 'nodeops.sqlite3'}",
            secret_key="bench-secret-key",  # type: ignore[arg-type]
        )
        (work / "data").mkdir()
        services = Services.build(settings)
        migrate.upgrade(services.db)
        started = time.perf_counter()
        filled = fill(services, args.instances)
        if services.db.is_sqlite:  # as a server that has run a while: the fill's WAL folded into the file
            with services.db.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:  # as a server that has run a while: autovacuum analyzes a table within a minute of such a fill
            with services.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        print(f"\n## {backend}: {args.instances} instances filled in {time.perf_counter() - started:.1f} s", flush=True)
        local_rows, local_memory = in_process(services, filled, args.requests)
        services.close()
        http_rows, http_memory = over_http(settings, filled, args.requests, procs, work)
        head = f"| request ({args.requests} each) | in process median / p95 ms | HTTP median / p95 ms |"
        print(f"\n{head} target: HTTP p95 ≤ |")
        print("|---|---|---|---|")
        for (name, median, p95), (_n, http_median, http_p95) in zip(
            local_rows, http_rows[: len(local_rows)], strict=True
        ):
            target = TARGET_MS if "of 500" in name else TARGET_PAGE_50_MS
            verdict = f"{target:.0f} ms {'PASS' if http_p95 <= target else 'MISS'}"
            print(f"| {name} | {median:.1f} / {p95:.1f} | {http_median:.1f} / {http_p95:.1f} | {verdict} |")
        for name, http_median, http_p95 in http_rows[len(local_rows) :]:  # the other read APIs: no target
            print(f"| {name} | - | {http_median:.1f} / {http_p95:.1f} | - |")
        print()
        print(local_memory)
        print(http_memory)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument(
        "--database",
        default="sqlite",
        metavar="sqlite|postgresql[=URL]",
        help="SQLite (default); or SQLite then PostgreSQL, on a throwaway server the bench starts or on the one at URL "
        "(an admin URL on 127.0.0.0/8), in a database of its own dropped at the end",
    )
    args = parser.parse_args()
    try:
        postgres = _postgres.parse_database(args.database)
    except ValueError as exc:
        parser.error(str(exc))
    procs = Processes()
    temp = Path(tempfile.mkdtemp(prefix="nodeops-bench-task-result-pg-"))
    try:
        run("SQLite", None, args, procs)
        if postgres is not None:
            with _postgres.server(postgres, temp) as admin_url, _postgres.database(admin_url) as url:
                run("PostgreSQL", url, args, procs)
    finally:
        procs.stop_all()
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
