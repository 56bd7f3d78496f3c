"""Demo data for ``make run``: an app, a superuser and one finished UPGRADE_AGENT job to read the log of.

Idempotent: the app's secret is kept in ``data_dir/demo.json`` (mode 0600) so every ``make run`` can print a
ready ``curl``; it is a local convenience, never created unless ``nodeops demo`` runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

from nodeops.domain.instance_id import HostKey, host_instance_id
from nodeops.domain.plans import JobType, plan_steps
from nodeops.domain.status import JobStatistics, Status
from nodeops.service import admin
from nodeops.settings import Settings
from nodeops.store import jobs
from nodeops.store.access import AccessReads
from nodeops.store.db import Database

DEMO_APP = "nodeops-demo"
DEMO_USER = "admin"


@dataclass(frozen=True, slots=True, kw_only=True)
class Demo:
    app_code: str
    app_secret: str
    username: str
    job_id: int
    instance_id: str


def ensure_demo(db: Database, settings: Settings) -> Demo:
    """Create the demo app, user and job unless they exist; return how to call the log API on them."""
    path = settings.data_dir / "demo.json"
    saved = _load(path)
    if saved is None or not _app_exists(db, saved.app_code):
        app = admin.add_app(db, code=f"{DEMO_APP}-{os.urandom(3).hex()}", allow_username=True)
        admin.add_user(db, username=DEMO_USER, is_superuser=True)
        job_id, instance_id = _demo_job(db, settings.tz)
        saved = Demo(
            app_code=app.code,
            app_secret=app.secret,
            username=DEMO_USER,
            job_id=job_id,
            instance_id=instance_id,
        )
        _save(path, saved)
    return saved


def _app_exists(db: Database, code: str) -> bool:
    with db.cursor() as cur:
        return AccessReads(db).fetch_app(cur, code) is not None


def _demo_job(db: Database, tz: tzinfo) -> tuple[int, str]:
    key = HostKey.of("127.0.0.1", 0)
    instance_id = str(host_instance_id(host_key=key))
    steps = plan_steps(JobType.UPGRADE_AGENT)
    with db.session() as session:
        created = jobs.create_job(
            session,
            job_type=JobType.UPGRADE_AGENT,
            created_by=DEMO_USER,
            from_system="nodeops",
            bk_biz_scope=[2],
            instances=[
                jobs.NewInstance(
                    instance_id=instance_id,
                    host_key=str(key),
                    instance_info={"host": {"bk_host_innerip": "127.0.0.1", "bk_cloud_id": 0}},
                )
            ],
            steps=steps,
        )
        record_id = created.record_ids[instance_id]
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
        lines_by_step = [
            ["开始 更新任务状态.", "更新任务状态 成功"],
            [
                "开始 批量下发升级包.",
                "下发 nodeops-agent 0.1.0 到 /usr/local/nodeops-agent",
                "批量下发升级包 成功",
            ],
            ["开始 执行升级脚本.", "停止旧版本 agent", "解压并启动新版本 agent", "执行升级脚本 成功"],
            [
                "开始 查询Agent状态.",
                "期望的 Agent 状态为 RUNNING",
                "Agent 心跳正常, 版本 0.1.0",
                "查询Agent状态 成功",
            ],
            ["开始 更新任务状态.", "更新任务状态 成功"],
        ]
        chunks = []
        for step, lines in zip(steps, lines_by_step, strict=True):
            start = at
            stamp = at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
            text = "\n".join(f"[{stamp} INFO] {line}" for line in lines)
            at += timedelta(seconds=3)
            jobs.set_step(
                session,
                record_id=record_id,
                step_index=step.index,
                status=Status.SUCCESS,
                start_at=start,
                finish_at=at,
            )
            chunks.append((record_id, step.index, text))
        jobs.append_logs(session, chunks)
        jobs.set_record(session, record_id=record_id, status=Status.SUCCESS, start_at=at, finish_at=at)
        stats = JobStatistics.count([Status.SUCCESS])
        jobs.set_job(session, job_id=created.job_id, status=Status.SUCCESS, statistics=stats.as_dict(), end_at=at)
    return created.job_id, instance_id


def _load(path: Path) -> Demo | None:
    try:
        return Demo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _save(path: Path, demo: Demo) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(demo), handle)
