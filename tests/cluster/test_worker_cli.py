"""``nodeops worker`` refuses what it cannot run, before it takes a lease; the embedded default never loads the
broker's library."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.cluster import NODEOPS
from tests.support.services import TEST_SECRET_KEY


def _nodeops(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NODEOPS_")}
    return subprocess.run([NODEOPS, *args], env=base | env, capture_output=True, text=True, timeout=60, check=False)


def _celery_env(database_url: str, tmp_path) -> dict[str, str]:
    return {
        "NODEOPS_EXECUTOR": "celery",
        "NODEOPS_DATABASE_URL": database_url,
        "NODEOPS_BROKER_URL": "redis://127.0.0.1:1/0",
        "NODEOPS_SECRET_KEY": TEST_SECRET_KEY,
        "NODEOPS_PUBLIC_URL": "http://127.0.0.1:8000",
        "NODEOPS_DATA_DIR": str(tmp_path),
    }


def test_a_worker_needs_the_celery_executor(tmp_path):
    done = _nodeops("worker", NODEOPS_DATA_DIR=str(tmp_path))
    assert done.returncode == 2
    assert "nodeops worker runs in celery mode only: set NODEOPS_EXECUTOR=celery" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_refuses_a_name_it_cannot_write_in_records(tmp_path, fresh_pg_url):
    for name in ("bad name", "w1;rm -rf", "工作", ""):
        done = _nodeops("worker", "--name", name, **_celery_env(fresh_pg_url, tmp_path))
        assert done.returncode == 2, (name, done.stderr)
        assert "--name" in done.stderr and "ASCII letters, digits" in done.stderr, done.stderr


def test_a_worker_refuses_a_database_without_the_current_schema(tmp_path, fresh_pg_url):
    done = _nodeops("worker", "--name", "w1", **_celery_env(fresh_pg_url, tmp_path))
    assert done.returncode == 2
    assert "no nodeops schema yet: run `nodeops db upgrade`" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_embedded_default_never_imports_celery(tmp_path):
    code = (
        "import sys\n"
        "from nodeops.cli.app import app\n"
        "from nodeops.api.app import create_app\n"
        "from nodeops.settings import Settings\n"
        f"create_app(Settings(data_dir={str(tmp_path)!r}))\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in {'celery', 'kombu', 'redis'})\n"
        "print(loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout
