"""The log API answers byte for byte alike on SQLite and on PostgreSQL for the same data: sealed and rendered
records, a running one with non-ASCII text past the step's cap, both instance_id forms, tail cursors, and every
error (unknown job or instance, a missing attempt, bad input, a caller without rights, a wrong secret), through
the single read (``LogService.answer``, the ASGI path's) and through the batch (``answer_batch``, the lane's: on
PostgreSQL its lookups are read ahead in one statement)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from nodeops.api.fastpath.log import envelope, prepare
from nodeops.domain.answer import DEFAULT_STEP_MAX_BYTES
from nodeops.domain.plans import JobType, plan_steps
from nodeops.domain.status import Status
from nodeops.request_context import serving
from nodeops.service.container import Services
from nodeops.settings import Settings
from tests.support.factories import StepRun, make_app, make_job, make_seed_job, make_user
from tests.support.services import TEST_SECRET_KEY, TEST_TIME_ZONE

BIG_LINE = "[2021-09-16 15:06:39 INFO] 安装进度 ünïcödé ✓ " + "x" * 200


def _services(tmp: Path, url: str) -> Services:
    settings = Settings(
        data_dir=tmp,
        database_url=url,
        secret_key=TEST_SECRET_KEY,  # type: ignore[arg-type]
        time_zone=TEST_TIME_ZONE,
    )
    return Services.build(settings)


def _fill(services: Services) -> str:
    """The same jobs on either store; returns the app's secret (each store draws its own)."""
    app = make_app(services)
    make_user(services, "admin", superuser=True)
    make_user(services, "viewer", biz=[3])
    make_seed_job(services, sealed=True)  # job 1
    make_seed_job(services, sealed=False)  # job 2: rendered from its steps on each read
    plan = plan_steps(JobType.REINSTALL_AGENT)
    running = [
        StepRun(status=Status.SUCCESS, start="2021-09-16 15:06:04", finish="2021-09-16 15:06:05", log="开始"),
        StepRun(status=Status.SUCCESS, start="2021-09-16 15:06:05", finish="2021-09-16 15:06:06", log="ok"),
        StepRun(status=Status.SUCCESS, start="2021-09-16 15:06:06", finish="2021-09-16 15:06:07", log="接入点"),
        StepRun(status=Status.RUNNING, start="2021-09-16 15:06:07", finish=None, log="\n".join([BIG_LINE] * 12000)),
    ]
    make_job(services, runs=running, steps=plan, keyed_by="host_key", ip="127.0.0.2", bk_host_id=2)  # job 3
    return app.secret


@pytest.fixture
def stores(tmp_path: Path, sqlite_template: Path, pg_database_url: str) -> Iterator[list[tuple[Services, str]]]:
    path = tmp_path / "nodeops.sqlite3"
    shutil.copyfile(sqlite_template, path)
    built = [_services(tmp_path / "sqlite", f"sqlite:///{path}"), _services(tmp_path / "pg", pg_database_url)]
    try:
        yield [(services, _fill(services)) for services in built]
    finally:
        for services in built:
            services.close()


REQUESTS: list[dict[str, object]] = [
    {"job_id": 1, "instance_id": 1},
    {"job_id": 1, "instance_id": "host|instance|host|1"},
    {"job_id": 1, "instance_id": "host|instance|host|127.0.0.1-0-0"},
    {"job_id": 1, "instance_id": 1, "attempt": 1},
    {"job_id": 1, "instance_id": 1, "attempt": 9},  # no such attempt
    {"job_id": 2, "instance_id": 1},
    {"job_id": 3, "instance_id": "host|instance|host|127.0.0.2-0-0"},
    {"job_id": 3, "instance_id": 2},
    {"job_id": 3, "instance_id": "host|instance|host|127.0.0.2-0-0", "cursor": ""},
    {"job_id": 1, "instance_id": 1, "cursor": "not-a-cursor"},
    {"job_id": 4, "instance_id": 1},  # no such job
    {"job_id": 1, "instance_id": 7},  # no such instance
    {"job_id": "x", "instance_id": "host|instance|bad"},
    {"job_id": 1, "instance_id": 1, "bk_username": "viewer"},  # no right on business 2
    {"job_id": 1, "instance_id": 1, "bk_app_secret": "wrong"},
    {"job_id": 1, "instance_id": "主机|实例"},
]


def _prepared(secret: str, request: dict[str, object]) -> tuple[str, object]:
    query = urlencode({"bk_app_code": "esb_test", "bk_app_secret": secret, "bk_username": "admin", **request})
    path = "/api/c/compapi/v2/nodeman/api/job/log/"
    try:
        return path, prepare("GET", query.encode(), [], None, None, client="127.0.0.1")
    except Exception as exc:
        return path, exc


def _answers_one_by_one(services: Services, secret: str) -> list[bytes]:
    async def run() -> list[bytes]:
        bodies = []
        for request in REQUESTS:
            path, prepared = _prepared(secret, request)
            outcome: bytes | Exception
            if isinstance(prepared, Exception):
                outcome = prepared
            else:
                try:
                    outcome = await services.logs.answer(*prepared)  # type: ignore[misc]
                except Exception as exc:
                    outcome = exc
            bodies.append(envelope(outcome, "GET", path))
        return bodies

    return asyncio.run(run())


def _answers_batched(services: Services, secret: str) -> list[bytes]:
    prepared = [_prepared(secret, request) for request in REQUESTS]
    outcomes = services.logs.answer_batch([p for _path, p in prepared])  # type: ignore[misc]
    return [envelope(outcome, "GET", path) for (path, _p), outcome in zip(prepared, outcomes, strict=True)]


def test_both_stores_answer_byte_for_byte_alike_one_by_one_and_batched(stores):
    (sqlite, sqlite_secret), (pg, pg_secret) = stores
    assert sqlite.db.is_sqlite and not pg.db.is_sqlite
    with serving("across-stores"):  # every envelope's request_id: one id for all, as if one request
        on_sqlite = _answers_one_by_one(sqlite, sqlite_secret)
        on_pg = _answers_one_by_one(pg, pg_secret)
        for request, a, b in zip(REQUESTS, on_sqlite, on_pg, strict=True):
            assert a == b, request
        assert _answers_batched(sqlite, sqlite_secret) == on_sqlite
        assert _answers_batched(pg, pg_secret) == on_pg
    # the answers are what they should be, not merely alike: a success, a capped running step, each error
    assert on_sqlite[0].startswith(b'{"result":true,"code":0') and "开始更新任务状态".encode() in on_sqlite[0]
    assert on_sqlite[0] == on_sqlite[1] == on_sqlite[2] == on_sqlite[3] == on_sqlite[5]
    assert "ünïcödé".encode() in on_sqlite[6] and b'"RUNNING"' in on_sqlite[6]
    assert len(on_sqlite[6]) < DEFAULT_STEP_MAX_BYTES * 1.1 < len(BIG_LINE.encode()) * 12000  # capped
    expected = {4: 3800007, 10: 3801012, 11: 3800007, 12: 3800001, 13: 9900403}
    for index, code in expected.items():
        assert f'"code":{code}'.encode() in on_sqlite[index], on_sqlite[index][:200]
    assert b'"result":false' in on_sqlite[14]
