"""The service under test for ``bench/fanout.py``: one process, as ``nodeops serve`` would run it, driven in-process.

``python bench/_fanout_service.py PLAN.json RESULT.json``. It builds ``Services`` from ``Settings`` (a fresh SQLite
data dir), serves ``create_app`` with uvicorn on the plan's port in this same process and event loop (uvloop,
httptools, no access log: ``nodeops serve``'s options), so agent heartbeats land here, then:

1. INSTALL_AGENT on every host of the plan (account/password, transport ssh) through ``services.jobs.install``,
   waiting for the job to end; every host must succeed. Skipped when the plan says ``install: false`` (a repeat:
   the same data dir, the agents installed by a previous run of this script still report to the same port).
2. Registers the plan's upgrade version (``engine.packages.register``) and measures a quiet period: the agents
   heartbeat at the interval the service configures (``agent_heartbeat_interval_s``), so this is the service's
   CPU cost of a fleet that only reports.
3. Timed: UPGRADE_AGENT on every host through ``services.jobs.operate``, from the call to the end of
   ``engine.wait`` (the job's end). This process's CPU seconds (``getrusage``, all threads) and its peak RSS
   (``VmHWM``, reset just before through ``/proc/self/clear_refs``) over that window are the figures.

Only nodeops' public Python API is used; nothing in src/ is patched. Heartbeats are counted by a pass-through ASGI
wrapper (one integer increment per request). The result, and the hosts' ``bk_host_id``s for the floor, go to
RESULT.json.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import _fanout_measure as measure
import uvicorn
import uvloop
from _fanout_measure import rss_mb
from sqlalchemy import text

from nodeops.api.app import create_app
from nodeops.domain.plans import JobType
from nodeops.engine import packages
from nodeops.process_logging import configure_logging
from nodeops.service.container import Services
from nodeops.service.host_requests import parse_hosts
from nodeops.settings import Settings
from nodeops.store import migrate
from nodeops.store.db import Database

HEARTBEAT_PATH = "/api/agent/heartbeat/"
BENCH_USER = "bench"


class HeartbeatCounter:
    """Pass-through ASGI wrapper counting heartbeat requests."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.count = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == HEARTBEAT_PATH:
            self.count += 1
        await self.app(scope, receive, send)


class Window(measure.Window):
    """``measure.Window`` plus the heartbeats received."""

    def __init__(self, plan: dict[str, Any], counter: HeartbeatCounter) -> None:
        super().__init__(plan["hosts_cgroup"])
        self.counter = counter

    def start(self) -> None:
        self.beats0 = self.counter.count
        super().start()

    def stop(self) -> dict[str, float | None]:
        return super().stop() | {"heartbeats": self.counter.count - self.beats0}


def job_outcome(db: Database, job_id: int) -> dict[str, Any]:
    """The job's status, its records' statuses, and the last log lines of up to 5 failed records."""
    with db.engine.connect() as conn:
        status = conn.execute(text("SELECT status FROM jobs WHERE id = :j"), {"j": job_id}).scalar_one()
        counts = dict(
            conn.execute(
                text("SELECT status, count(*) FROM instance_records WHERE job_id = :j GROUP BY status"), {"j": job_id}
            ).all()
        )
        failed = conn.execute(
            text(
                "SELECT r.id, h.inner_ip FROM instance_records r JOIN hosts h ON h.bk_host_id = r.bk_host_id "
                "WHERE r.job_id = :j AND r.status != 'SUCCESS' ORDER BY r.id LIMIT 5"
            ),
            {"j": job_id},
        ).all()
        reasons = []
        for record_id, ip in failed:
            logs = conn.execute(
                text("SELECT text FROM step_logs WHERE record_id = :r ORDER BY id DESC LIMIT 3"), {"r": record_id}
            ).scalars()
            lines = "\n".join(reversed(list(logs))).splitlines()[-6:]
            reasons.append(f"{ip}: " + " | ".join(lines))
    return {"status": status, "records": counts, "failures": reasons}


def host_ids(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {ip: int(i) for i, ip in conn.execute(text("SELECT bk_host_id, inner_ip FROM hosts")).all()}


def write_known_hosts(db: Database, path: Path) -> str:
    """The host keys the service trusts (kept in its database), as an OpenSSH known_hosts file for the floor."""
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT host, port, algorithm, key FROM host_keys")).all()
    path.write_text("".join(f"[{host}]:{port} {algorithm} {key}\n" for host, port, algorithm, key in rows))
    return str(path)


class Profiler:
    """``py-spy record`` attached to this process for the timed window (``--profile``)."""

    def __init__(self, output: str | None) -> None:
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self, window: str) -> None:
        if not self.output:
            return
        py_spy = Path(sys.executable).with_name("py-spy")
        command = [str(py_spy), "record", "--pid", str(os.getpid()), "--rate", "200", "--format", "raw"]
        command += ["--nonblocking", "--threads", "--output", f"{self.output}-{window}.txt"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(1.0)  # let it attach before the clock starts

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=60)
            self.process = None


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    data_dir = Path(plan["data_dir"])
    settings = Settings(
        data_dir=data_dir,
        database_url="",
        host="127.0.0.1",
        port=plan["port"],
        job_limit=plan["limit"],
        ssh_host_key_policy=plan["host_key_policy"],
        time_zone="UTC",
    )
    setup_db = Database.connect(settings.database_url)
    migrate.upgrade(setup_db)
    setup_db.dispose()

    configure_logging()  # as `nodeops serve`: INFO, through the redacting filter, to stderr (the bench's log file)
    services = Services.build(settings)
    app = create_app(settings, services)
    counter = HeartbeatCounter(app)
    config = uvicorn.Config(
        counter,
        host=settings.host,
        port=settings.port,
        log_config=None,
        loop="none",
        http=app.http_protocol,  # as `nodeops serve`
        access_log=False,
        proxy_headers=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    serving = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.05)
    gc.collect()
    gc.freeze()  # as `nodeops serve` does once built
    result: dict[str, Any] = {"n": len(plan["hosts"]), "port": settings.port}
    try:
        hosts = parse_hosts(
            [
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
        )
        window = Window(plan, counter)
        if plan["install"]:
            window.start()
            install = await services.jobs.install(
                job_type=JobType.INSTALL_AGENT, hosts=hosts, created_by=BENCH_USER, from_system=BENCH_USER
            )
            await services.engine.wait(install.job_id)
            result["install"] = window.stop() | await services.db.call(lambda: job_outcome(services.db, install.job_id))
            if result["install"]["records"] != {"SUCCESS": len(hosts)}:
                return result

        version = plan["version"]
        await services.db.call(lambda: packages.register(services.db, settings.packages_dir, version))
        ids = await services.db.call(lambda: host_ids(services.db))
        result["hosts"] = [h | {"bk_host_id": ids[h["ip"]]} for h in plan["hosts"]]
        result["known_hosts"] = await services.db.call(
            lambda: write_known_hosts(services.db, data_dir / "known_hosts.floor")
        )

        await asyncio.sleep(plan["settle_s"])  # every agent is past its first heartbeat and in its rhythm
        profiler = Profiler(plan.get("profile"))
        await profiler.start("idle")
        window.start()
        await asyncio.sleep(plan["idle_s"])
        result["idle"] = window.stop()
        profiler.stop()

        await profiler.start("upgrade")
        result["pre_upgrade_peak_rss_mb"] = rss_mb("VmHWM")
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS, so the peak is the window's own
        window.start()
        upgrade = await services.jobs.operate(
            job_type=JobType.UPGRADE_AGENT,
            bk_host_ids=[h["bk_host_id"] for h in result["hosts"]],
            created_by=BENCH_USER,
            from_system=BENCH_USER,
            version=version,
        )
        await services.engine.wait(upgrade.job_id)
        result["upgrade"] = window.stop() | {"peak_rss_mb": rss_mb("VmHWM"), "rss_after_mb": rss_mb("VmRSS")}
        profiler.stop()
        result["upgrade"] |= await services.db.call(lambda: job_outcome(services.db, upgrade.job_id))
        with services.db.engine.connect() as conn:
            result["upgrade"]["versions"] = dict(
                conn.execute(text("SELECT agent_version, count(*) FROM hosts GROUP BY agent_version")).all()
            )
        return result
    finally:
        result["lifetime_peak_rss_mb"] = max(rss_mb("VmHWM"), result.get("pre_upgrade_peak_rss_mb", 0.0))
        server.should_exit = True
        await serving


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    result = uvloop.run(run(plan))
    Path(sys.argv[2]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
