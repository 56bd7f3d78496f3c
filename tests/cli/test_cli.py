"""The installed ``nodeops`` command end to end, as an operator runs it: subprocesses on a data dir (SQLite) or
a fresh PostgreSQL database, and a real ``nodeops serve`` answering the curl line ``nodeops demo`` prints."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa

from nodeops.domain.plans import JobType, plan_steps
from nodeops.service.security import secret_matches, verify_token
from nodeops.settings import Settings
from nodeops.store.access import AccessReads
from nodeops.store.db import Database
from tests.support.served import wait_until_serving

COMMAND_TIMEOUT_S = 60
SERVER_START_TIMEOUT_S = 20


def _nodeops_executable() -> str:
    found = shutil.which("nodeops") or str(Path(sys.executable).parent / "nodeops")
    assert Path(found).exists(), "the nodeops console script is not installed: pip install -e .[dev]"
    return found


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def out(self) -> str:
        """stdout with Rich's line wrapping undone."""
        return " ".join(self.stdout.split())

    @property
    def err(self) -> str:
        return " ".join(self.stderr.split())


class Cli:
    """Runs ``nodeops`` against one data dir and, for PostgreSQL, one database URL."""

    def __init__(self, data_dir: Path, database_url: str | None) -> None:
        self.executable = _nodeops_executable()
        self.data_dir = data_dir
        self.database_url = database_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NODEOPS_")}
        self.env["NODEOPS_DATA_DIR"] = str(data_dir)
        if database_url is not None:
            self.env["NODEOPS_DATABASE_URL"] = database_url

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        done = subprocess.run(
            [self.executable, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> Result:
        result = self.run(*args, env=env)
        assert result.returncode == 0, f"nodeops {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def refused(self, *args: str) -> Result:
        """Run a command that must fail as a usage error: exit code 2, a message, no traceback."""
        result = self.run(*args)
        assert result.returncode == 2, f"nodeops {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        assert "Traceback" not in result.stderr + result.stdout, result.stderr
        assert result.err.startswith("error:"), result.stderr
        return result

    def settings(self) -> Settings:
        overrides = {} if self.database_url is None else {"database_url": self.database_url}
        return Settings(data_dir=self.data_dir, **overrides)

    def database(self) -> Database:
        return Database.connect(self.settings().database_url)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def cli(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """``nodeops`` on an empty data dir (SQLite) or a new, empty PostgreSQL database, after ``nodeops db upgrade``.

    Shared by the tests of this module (each uses its own app and user names): every command is a new process
    that imports the whole CLI, so one migrated database per backend keeps the suite quick.
    """
    data_dir = tmp_path_factory.mktemp(f"cli-{request.param}") / "data"
    if request.param == "sqlite":
        yield _migrated(Cli(data_dir, None))
        return
    admin = sa.create_engine(request.getfixturevalue("pg_admin_url"), isolation_level="AUTOCOMMIT")
    name = f"nodeops_cli_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield _migrated(Cli(data_dir, admin.url.set(database=name).render_as_string(hide_password=False)))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _migrated(runner: Cli) -> Cli:
    result = runner.ok("db", "upgrade")
    assert "is at head" in result.out
    return runner


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- apps ----------------------------------------------------------------------------------------------------


def test_app_add_prints_a_working_secret_once(cli):
    result = cli.ok("app", "add", "esb_one")
    secret = result.stdout.strip().splitlines()[-1]
    assert len(secret) >= 32
    assert result.stdout.count(secret) == 1
    assert "shown only now" in result.out

    db = cli.database()
    try:
        with db.cursor() as cur:
            row = AccessReads(db).fetch_app(cur, "esb_one")
    finally:
        db.dispose()
    assert row is not None
    assert secret_matches(secret, row.secret_salt, row.secret_hash)
    assert secret.encode() not in row.secret_hash  # stored hashed, never in clear


def test_app_add_of_an_existing_code_fails_clearly(cli):
    cli.ok("app", "add", "esb_twice")
    result = cli.refused("app", "add", "esb_twice")
    assert "esb_twice" in result.err
    assert "already exists" in result.err
    assert result.stdout.strip() == ""  # no new secret printed


def test_app_add_refuses_a_short_secret_and_accepts_a_long_one(cli):
    result = cli.refused("app", "add", "esb_short", "--secret", "short")
    assert "at least 16 characters" in result.err
    assert "short" not in result.stdout

    chosen = "a-chosen-secret-of-enough-length"
    assert cli.ok("app", "add", "esb_long", "--secret", chosen).stdout.strip().splitlines()[-1] == chosen


def test_app_add_refuses_a_bad_code(cli):
    result = cli.refused("app", "add", "bad code!")
    assert "code" in result.err


# --- users and grants ---------------------------------------------------------------------------------------


def test_user_add_and_grant_are_stored(cli):
    assert "as superuser" in cli.ok("user", "add", "alice", "--superuser").out
    cli.ok("user", "add", "bob")
    result = cli.ok("user", "grant", "bob", "--biz", "2", "--biz", "3")
    assert "bob" in result.out
    assert "2, 3" in result.out

    db = cli.database()
    try:
        with db.cursor() as cur:
            users = {name: AccessReads(db).fetch_user(cur, name) for name in ("alice", "bob")}
    finally:
        db.dispose()
    assert (users["alice"].is_superuser, users["alice"].biz_ids) == (True, frozenset())
    assert (users["bob"].is_superuser, users["bob"].biz_ids) == (False, frozenset({2, 3}))


def test_grant_to_an_unknown_user_fails_clearly(cli):
    result = cli.refused("user", "grant", "nobody", "--biz", "2")
    assert "no user 'nobody'" in result.err
    assert "nodeops user add" in result.err


# --- tokens --------------------------------------------------------------------------------------------------


def test_token_issue_prints_a_token_the_service_verifies(cli):
    cli.ok("user", "add", "carol")
    before = datetime.now(UTC).timestamp()
    token = cli.ok("token", "issue", "carol", "--ttl", "1h").stdout.strip()

    claims = verify_token(cli.settings().resolved_secret_key(), token)
    assert claims.username == "carol"
    assert before + 3600 - 5 <= claims.expires_at <= datetime.now(UTC).timestamp() + 3600 + 5
    assert (cli.data_dir / "secret_key").exists()


def test_token_issue_refuses_a_bad_ttl(cli):
    cli.ok("user", "add", "dave")
    for ttl in ["soon", "1y", "-5m", "0"]:
        result = cli.refused("token", "issue", "dave", f"--ttl={ttl}")
        assert "ttl" in result.err, ttl
        assert result.stdout.strip() == "", ttl


def test_token_issue_for_an_unknown_user_fails_clearly(cli):
    result = cli.refused("token", "issue", "nobody")
    assert "no user 'nobody'" in result.err


# --- demo and serve ------------------------------------------------------------------------------------------


def _curl_url(demo_stdout: str) -> str:
    lines = [line for line in demo_stdout.splitlines() if line.startswith("curl ")]
    assert len(lines) == 1, demo_stdout
    words = shlex.split(lines[0])
    assert words[:2] == ["curl", "-s"]
    return words[2]


@pytest.fixture
def server(cli, tmp_path):
    """``nodeops serve --demo`` on a free port of 127.0.0.1; yields its base URL, terminated afterwards."""
    port = _free_port()
    out = (tmp_path / "serve.out").open("w")
    err = (tmp_path / "serve.err").open("w")
    process = subprocess.Popen(
        [cli.executable, "serve", "--demo"], env={**cli.env, "NODEOPS_PORT": str(port)}, stdout=out, stderr=err
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, base, tmp_path / "serve.err", SERVER_START_TIMEOUT_S)
        yield base
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        out.close()
        err.close()
        _stop_demo_agent(cli)
    log = (tmp_path / "serve.err").read_text()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells how it ended
    assert process.returncode in (0, -signal.SIGTERM), log
    assert "Finished server process" in log
    assert "Traceback" not in log


def _stop_demo_agent(cli) -> None:
    home = Path(cli.env["NODEOPS_DATA_DIR"]) / "demo-host" / "nodeops-agent"
    if (home / "nodeops_agent.py").exists():
        subprocess.run(
            [sys.executable, str(home / "nodeops_agent.py"), "stop", "--home", str(home)],
            capture_output=True,
            timeout=30,
            check=False,
        )


def _printed_curl(tmp_path: Path) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = (tmp_path / "serve.out").read_text()
        if any(line.startswith("curl ") for line in text.splitlines()):
            return _curl_url(text)
        time.sleep(0.2)
    pytest.fail(f"serve --demo printed no curl line within 90 s:\n{(tmp_path / 'serve.out').read_text()}")


def test_serve_demo_installs_then_upgrades_the_agent_and_prints_a_curl_that_reads_the_log(cli, server, tmp_path):
    health = httpx.get(f"{server}/healthz", timeout=5).json()
    assert (health["result"], health["data"]) == (True, {"status": "ok"})

    url = _printed_curl(tmp_path)
    assert urlsplit(url).netloc == urlsplit(server).netloc
    printed = (tmp_path / "serve.out").read_text()
    assert "INSTALL_AGENT job 1 SUCCESS, UPGRADE_AGENT job 2 SUCCESS" in printed
    assert "bk_app_code=nodeops-demo-" in printed

    response = httpx.get(url, timeout=10)
    body = response.json()
    assert response.status_code == 200, body
    assert (body["result"], body["code"], body["message"]) == (True, 0, "success")
    assert [step["step"] for step in body["data"]] == [s.name for s in plan_steps(JobType.UPGRADE_AGENT)]
    assert all(step["status"] == "SUCCESS" and step["log"] for step in body["data"])
    assert all(step["start_time"] and step["finish_time"] for step in body["data"])
    assert "Agent 心跳正常, 版本 0.1.1" in body["data"][3]["log"]


# --- configuration errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["db", "upgrade"], ["serve", "--demo"], ["serve"], ["token", "issue", "alice"]], ids=lambda a: "-".join(a)
)
def test_a_bad_time_zone_is_refused_with_a_message_not_a_traceback(tmp_path, args):
    runner = Cli(tmp_path / "data", None)
    result = runner.run(*args, env={"NODEOPS_TIME_ZONE": "Mars/Olympus_Mons"})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "time zone" in result.err
    assert "Mars/Olympus_Mons" in result.err
    assert "IANA" in result.err
    assert not (tmp_path / "data").exists()  # refused before touching anything


def test_a_bad_database_url_is_refused_with_a_message_not_a_traceback(tmp_path):
    runner = Cli(tmp_path / "data", "mysql://root@localhost/nodeops")
    result = runner.run("db", "upgrade")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "database_url" in result.err
    assert "postgresql+psycopg://" in result.err


CELERY_ENV = {
    "NODEOPS_EXECUTOR": "celery",
    "NODEOPS_BROKER_URL": "redis://127.0.0.1:63799/0",
    "NODEOPS_SECRET_KEY": "a-cluster-wide-secret-key-for-this-test",
    "NODEOPS_PUBLIC_URL": "http://127.0.0.1:8000",
}
POSTGRESQL_URL = "postgresql+psycopg://nodeops@127.0.0.1:1/nodeops"  # never connected to: refused before


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"NODEOPS_DATABASE_URL": ""}, "NODEOPS_DATABASE_URL is SQLite (empty means a SQLite file in the data dir)"),
        ({"NODEOPS_DATABASE_URL": "sqlite:///x.sqlite3"}, "must share one PostgreSQL database"),
        ({"NODEOPS_BROKER_URL": ""}, "NODEOPS_BROKER_URL is empty: set it to redis://"),
        ({"NODEOPS_BROKER_URL": "kafka://user:broker-pw-1@127.0.0.1/"}, "NODEOPS_BROKER_URL has the scheme 'kafka'"),
        ({"NODEOPS_BROKER_URL": "127.0.0.1:6379"}, "NODEOPS_BROKER_URL is not a URL: it must start with redis://"),
        ({"NODEOPS_SECRET_KEY": ""}, "NODEOPS_SECRET_KEY is empty: the API and every worker"),
        ({"NODEOPS_PUBLIC_URL": ""}, "NODEOPS_PUBLIC_URL is empty: agents on the hosts report to the API"),
    ],
    ids=["no-database", "sqlite", "no-broker", "other-broker", "broker-not-a-url", "no-secret-key", "no-public-url"],
)
def test_celery_mode_refuses_each_missing_cluster_setting_with_how_to_fix_it(tmp_path, changes, expected):
    runner = Cli(tmp_path / "data", POSTGRESQL_URL)
    result = runner.run("serve", env={**CELERY_ENV, **changes})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.err.startswith("error: bad configuration: NODEOPS_EXECUTOR=celery needs: - "), result.stderr
    assert expected in result.err
    assert result.err.count(" - NODEOPS_") == 1  # only the one problem
    assert "broker-pw-1" not in result.err
    assert not (tmp_path / "data").exists()  # refused before touching anything


def test_celery_mode_lists_every_problem_in_one_message(tmp_path):
    """Any command is refused, not only serve: they all build the settings first."""
    runner = Cli(tmp_path / "data", None)
    result = runner.run("db", "upgrade", env={"NODEOPS_EXECUTOR": "celery"})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    problems = [line for line in result.stderr.splitlines() if line.startswith("- ")]
    named = [line.split()[1] for line in problems]
    assert named == ["NODEOPS_DATABASE_URL", "NODEOPS_BROKER_URL", "NODEOPS_SECRET_KEY", "NODEOPS_PUBLIC_URL"]


def test_an_unknown_executor_is_refused_naming_the_choices(tmp_path):
    result = Cli(tmp_path / "data", None).run("db", "upgrade", env={"NODEOPS_EXECUTOR": "threads"})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "executor: Input should be 'embedded' or 'celery'" in result.err


@pytest.mark.parametrize("broker_url", ["redis://127.0.0.1:63799/0", "amqp://guest:guest@127.0.0.1:5672//"])
def test_a_complete_celery_configuration_is_accepted(fresh_pg_url, tmp_path, broker_url):
    """The same command the refusals stop runs through: the settings are accepted and the database migrated."""
    runner = Cli(tmp_path / "data", fresh_pg_url)
    result = runner.ok("db", "upgrade", env={**CELERY_ENV, "NODEOPS_BROKER_URL": broker_url})
    assert "is at head" in result.out


def test_embedded_mode_ignores_the_broker_url(tmp_path):
    runner = Cli(tmp_path / "data", None)
    result = runner.ok("db", "upgrade", env={"NODEOPS_BROKER_URL": "not a broker"})
    assert "is at head" in result.out


# --- hosts ---------------------------------------------------------------------------------------------------


def test_hosts_import_export_and_list(cli, tmp_path):
    inventory = {
        "topology": [
            {
                "bk_biz_id": 7,
                "bk_biz_name": "shop",
                "sets": [
                    {
                        "bk_set_id": 70,
                        "bk_set_name": "web",
                        "modules": [{"bk_module_id": 700, "bk_module_name": "nginx"}],
                    }
                ],
            }
        ],
        "hosts": [
            {
                "bk_biz_id": 7,
                "inner_ip": "127.10.7.1",
                "modules": [700],
                "account": "root",
                "password": "cli-import-pw-1",
            }
        ],
    }
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(inventory))
    result = cli.ok("hosts", "import", str(path))
    assert "1 hosts created" in result.out
    listed = cli.ok("hosts", "list", "--biz", "7").out
    assert "127.10.7.1" in listed and "web/nginx" in listed and "1 hosts" in listed
    exported = cli.ok("hosts", "export", "--format", "csv", "--biz", "7").stdout
    assert "127.10.7.1" in exported and "cli-import-pw-1" not in exported
    csv_path = tmp_path / "inventory.csv"
    csv_path.write_text(exported)
    assert "1 updated" in cli.ok("hosts", "import", str(csv_path)).out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hosts": [{"bk_biz_id": 7, "inner_ip": "127.10.7.2", "modules": [999]}]}))
    assert "hosts[0].modules: module 999 is not in the inventory" in cli.refused("hosts", "import", str(bad)).err


def test_serve_refuses_a_database_whose_schema_is_not_this_codes(tmp_path):
    """No schema yet, an older one, or a file that is no database: `nodeops serve` says what is wrong (and what to
    run) and exits 2 before it listens; only the store's own log of a driver error carries a traceback."""
    runner = Cli(tmp_path / "data", None)
    port = {"NODEOPS_PORT": str(_free_port())}
    assert "no nodeops schema yet: run `nodeops db upgrade`" in runner.refused("serve").err
    runner.ok("db", "upgrade", "0006_access_revocation")
    older = runner.run("serve", env=port)
    assert older.returncode == 2 and "Traceback" not in older.stderr, older.stderr
    assert older.err.startswith("error: the database schema is at revision 0006_access_revocation and this nodeops")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "nodeops.sqlite3").write_bytes(b"\x00not a database\xff" * 100)
    junk = Cli(tmp_path / "junk", None).run("serve", env=port)
    last = junk.stderr.strip().splitlines()[-1]
    assert junk.returncode == 2 and last.startswith("error: The database failed to answer"), junk.stderr


def test_agent_build_stores_the_package_bytes_in_the_database(cli):
    result = cli.ok("agent", "build", "--version", "0.7.1")
    assert "agent 0.7.1 registered" in result.out
    db = cli.database()
    try:
        with db.engine.connect() as conn:
            sha256, path = conn.execute(
                sa.text("SELECT sha256, path FROM agent_packages WHERE version = '0.7.1'")
            ).one()
            stored = conn.execute(
                sa.text("SELECT content FROM package_contents WHERE sha256 = :sha"), {"sha": sha256}
            ).scalar()
    finally:
        db.dispose()
    assert bytes(stored) == Path(path).read_bytes()


def test_hosts_forget_key_forgets_the_trusted_key_of_an_address(cli):
    db = cli.database()
    try:
        with db.engine.begin() as conn:
            for port in (22, 2222):
                conn.execute(
                    sa.text(
                        "INSERT INTO host_keys (host, port, algorithm, key, added_at) "
                        "VALUES ('127.10.8.1', :port, 'ssh-ed25519', 'AAAAC3NzaC1lZDI1NTE5', :now)"
                    ),
                    {"port": port, "now": datetime.now(UTC).replace(tzinfo=None)},
                )
        assert (
            "1 host key forgotten for 127.10.8.1 port 2222"
            in cli.ok("hosts", "forget-key", "127.10.8.1", "--port", "2222").out
        )
        assert "1 host key forgotten for 127.10.8.1" in cli.ok("hosts", "forget-key", "127.10.8.1").out
        assert "0 host keys forgotten" in cli.ok("hosts", "forget-key", "127.10.8.1").out
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM host_keys")).scalar() == 0
    finally:
        db.dispose()
    assert "'127.10.8' is not an IPv4 or IPv6 address" in cli.refused("hosts", "forget-key", "127.10.8").err
