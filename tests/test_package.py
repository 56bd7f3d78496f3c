"""The package: a wheel built from the sources holds every file of the package (the viewer's files and the Alembic
migrations included), and installed into a fresh venv outside the repository (the locked dependencies, then the
wheel) it runs on its own: ``nodeops --version``, ``python -m nodeops --version``, ``nodeops db upgrade``, then
``nodeops serve --demo`` from an empty folder with its defaults (on 127.0.0.1, a free port) serves the seed's log
API at its addresses, the viewer and the API's docs.

The locked wheels are downloaded once into a folder kept between runs (``NODEOPS_TEST_WHEELHOUSE``, default
``~/.cache/nodeops-tests``, one subfolder per version of requirements/service.lock) and installed from there
without the network; a CI job caches that folder. Nothing reads stdin.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

import nodeops

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "src" / "nodeops"
SERVICE_LOCK = ROOT / "requirements" / "service.lock"
COMMAND_TIMEOUT_S = 600  # the first download of the locked wheels
DEMO_TIMEOUT_S = 180
# the seed's response example (shared/seed/log_job.md): its steps, in order
SEED_STEPS = ["更新任务状态", "批量下发升级包", "执行升级脚本", "查询Agent状态", "更新任务状态"]
SUCCESS_KEYS = ["result", "code", "message", "data", "request_id"]
STEP_KEYS = ["step", "status", "log", "start_time", "finish_time"]
# the seed's request example as it is written (indentation, field order, trailing comma), with the demo's app,
# user, job and instance, and no bk_token: the demo's app may name its user
SEED_REQUEST = """{
    "bk_app_code": "%(app)s",
    "bk_app_secret": "%(secret)s",
    "bk_username": "admin",
    "job_id": %(job_id)s,
    "instance_id": "%(instance_id)s",
}"""


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would point a command at the repository, its venv or
    the machine's pip configuration (the same files are installed everywhere, as `make venv` does)."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEOPS_") and k not in dropped}
    env.pop("PIP_CONSTRAINT", None)
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return env | extra


def run(command: list[str | Path], *, cwd: Path, env: dict[str, str], timeout_s: float = COMMAND_TIMEOUT_S) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, command))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def base_python() -> str:
    """The interpreter this test's venv was made from: a venv is made from it, not from a venv."""
    return getattr(sys, "_base_executable", sys.executable)


def source_files() -> set[str]:
    """Every file of the package in src/, as a wheel names it."""
    return {
        path.relative_to(SOURCES.parent).as_posix()
        for path in SOURCES.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (so the build leaves nothing in the repository), with this
    venv's setuptools (the locked one), offline."""
    tree = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path_factory.mktemp("dist")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    run([*pip, "-w", dist, tree], cwd=tree, env=clean_env())
    [built] = dist.glob("nodeops-*.whl")
    return built


def locked_wheels(env: dict[str, str]) -> Path:
    """A folder holding the wheels of requirements/service.lock, downloaded (checked against the lock's hashes)
    only when the folder for this lock is not complete yet."""
    digest = hashlib.sha256(SERVICE_LOCK.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("NODEOPS_TEST_WHEELHOUSE") or Path.home() / ".cache" / "nodeops-tests")
    folder = cache / f"service-lock-{digest}"
    complete = folder / ".complete"
    if not complete.exists():
        folder.mkdir(parents=True, exist_ok=True)
        download = [sys.executable, "-m", "pip", "download", "-q", "--require-hashes", "--no-deps"]
        run([*download, "-r", SERVICE_LOCK, "-d", folder], cwd=folder, env=env)
        complete.touch()
    return folder


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the repository with the locked dependencies, then the wheel; its bin folder."""
    home = tmp_path_factory.mktemp("installed")
    assert ROOT not in home.parents
    env = clean_env()
    run([base_python(), "-m", "venv", home / "venv"], cwd=home, env=env)
    python = home / "venv" / "bin" / "python"
    wheels = locked_wheels(env)
    install = [python, "-m", "pip", "install", "-q", "--no-deps"]
    run([*install, "--require-hashes", "--no-index", "--find-links", wheels, "-r", SERVICE_LOCK], cwd=home, env=env)
    run([*install, "--no-index", wheel], cwd=home, env=env)
    return python.parent


def test_the_wheel_holds_every_file_of_the_package(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = source_files() - names
    assert not missing, f"pyproject.toml's package-data leaves these out of the wheel: {sorted(missing)}"
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    # what the running service reads from the package, named so a wrong pattern fails here first
    for needed in (
        "nodeops/web/static/index.html",
        "nodeops/web/static/app.js",
        "nodeops/web/static/swagger-ui/swagger-ui-bundle.js",
        "nodeops/store/migrations/env.py",
        "nodeops/store/migrations/script.py.mako",
        "nodeops/agent/nodeops_agent.py",
        "nodeops/py.typed",
    ):
        assert needed in names, needed
    assert wheel.name == f"nodeops-{nodeops.__version__}-py3-none-any.whl"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty folder outside the repository, where the installed command runs with its defaults (./var)."""
    assert ROOT not in tmp_path.parents
    return tmp_path


def test_the_installed_command_prints_its_version_both_ways(installed, workdir):
    env = clean_env()
    expected = f"nodeops {nodeops.__version__}\n"
    assert run([installed / "nodeops", "--version"], cwd=workdir, env=env) == expected
    assert run([installed / "python", "-m", "nodeops", "--version"], cwd=workdir, env=env) == expected
    where = run([installed / "python", "-c", "import nodeops; print(nodeops.__file__)"], cwd=workdir, env=env)
    assert Path(where.strip()).is_relative_to(installed.parent), where  # the venv's copy, not the repository's


@pytest.fixture
def demo_server(installed: Path, workdir: Path) -> Iterator[tuple[str, Path]]:
    """``nodeops serve --demo`` of the installed package, in ``workdir`` with its defaults but the port; yields
    its base URL and the file it prints to, and stops it (and the demo's agent) afterwards."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = clean_env(NODEOPS_PORT=str(port))
    run([installed / "nodeops", "db", "upgrade"], cwd=workdir, env=env, timeout_s=120)
    out_path, err_path = workdir / "serve.out", workdir / "serve.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            [installed / "nodeops", "serve", "--demo"],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    try:
        yield f"http://127.0.0.1:{port}", out_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)
        agent_home = workdir / "var" / "demo-host" / "nodeops-agent"
        if (agent_home / "nodeops_agent.py").exists():
            subprocess.run(
                [installed / "python", agent_home / "nodeops_agent.py", "stop", "--home", agent_home],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )
    log = err_path.read_text(encoding="utf-8", errors="replace")
    assert process.returncode in (0, -signal.SIGTERM), log
    assert "Traceback" not in log, log


def printed_curl(out_path: Path) -> str:
    """The URL of the curl line ``serve --demo`` prints once its demo jobs are done."""
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in out_path.read_text(encoding="utf-8").splitlines():
            if line.startswith("curl -s "):
                return line.removeprefix("curl -s ").strip("'")
        time.sleep(0.5)
    pytest.fail(f"serve --demo printed no curl line within {DEMO_TIMEOUT_S} s:\n{out_path.read_text()}")


def assert_seed_answer(response: httpx.Response) -> None:
    """The seed's response example, field by field: the envelope (with ESB's request_id), five steps in the
    seed's order, each with the seed's five fields, all SUCCESS, with times."""
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == SUCCESS_KEYS, body
    assert (body["result"], body["code"], body["message"]) == (True, 0, "success")
    assert body["request_id"] == response.headers["x-request-id"]
    assert [step["step"] for step in body["data"]] == SEED_STEPS
    for step in body["data"]:
        assert list(step) == STEP_KEYS, step
        assert step["status"] == "SUCCESS" and step["log"] and step["start_time"] and step["finish_time"], step


def test_the_installed_service_serves_the_seeds_log_api_and_the_viewer(demo_server):
    base, out_path = demo_server
    url = printed_curl(out_path)
    assert urlsplit(url).netloc == urlsplit(base).netloc
    query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    assert "UPGRADE_AGENT job 2 SUCCESS" in out_path.read_text(encoding="utf-8")
    job_id, instance_id = query["job_id"], query["instance_id"]
    common = {key: query[key] for key in ("bk_app_code", "bk_app_secret", "bk_username")}

    with httpx.Client(base_url=base, timeout=10) as http:
        assert_seed_answer(http.get(url))  # ESB, GET: the curl line as printed
        seed_body = SEED_REQUEST % {
            "app": common["bk_app_code"],
            "secret": common["bk_app_secret"],
            "job_id": job_id,
            "instance_id": instance_id,
        }
        assert_seed_answer(http.post("/api/c/compapi/v2/nodeman/api/job/log/", content=seed_body.encode()))
        by_path = {**common, "instance_id": instance_id}
        assert_seed_answer(http.get(f"/api/job/{job_id}/log/?{urlencode(by_path)}"))  # nodeman's own path

        page = http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "/web/static/app.js" in page.text
        script = http.get("/web/static/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert script.content == (SOURCES / "web" / "static" / "app.js").read_bytes()
        docs = http.get("/docs")
        assert docs.status_code == 200 and "swagger-ui" in docs.text
        bundle = http.get("/web/static/swagger-ui/swagger-ui-bundle.js")
        assert bundle.status_code == 200 and len(bundle.content) > 100_000
        schema = http.get("/openapi.json").json()
        assert schema["info"]["version"] == nodeops.__version__ and json.dumps(schema)
