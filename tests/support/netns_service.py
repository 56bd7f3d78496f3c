"""The real service inside the namespace ``srv`` of the test network (tests/support/netns.py): ``nodeops serve``
(and, in celery mode, ``nodeops worker`` processes) started with ``ip netns exec srv``, listening on port
``SRV_PORT`` of every srv address, so that agents reach it on 198.18.0.1 (through px) and 198.18.2.1 (through jh).

srv has no route to this process's 127.0.0.1, so everything between them goes through unix sockets, which every
namespace finds by their path: the processes in srv reach the test PostgreSQL and Redis on their sockets, and the
tests reach the API through tests/support/uds_forward.py, run inside srv, listening on a socket and connecting to
127.0.0.1:SRV_PORT there.

Fixture ``srv_service`` (imported by tests/conftest.py), once per executor::

    def test_example(srv_service: SrvService) -> None:
        srv_service.api.ok("/api/...", {...})             # a JobApi as the superuser admin of the test app
        srv_service.client.get("/healthz")                # a plain httpx.Client on the API
        srv_service.url_via_px                            # http://198.18.0.1:8000, an area's agents' server URL
        srv_service.network.hosts["c1_a"]                 # the test network's sshd hosts

    @pytest.mark.parametrize("srv_service", ["celery"], indirect=True)   # one executor only
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import pytest
import redis
import sqlalchemy as sa

from tests.support.cluster import Cluster, seed_callers
from tests.support.factories import AppCredentials
from tests.support.jobs import JobApi
from tests.support.netns import ADDRESSES, Network
from tests.support.services import _pg_database

SRV_PORT = 8000  # srv has ports of its own: nothing else listens there
BIND_ALL = "0.0.0.0"  # inside srv: its own addresses only (198.18.0.1, 198.18.2.1 and its loopback)
EXECUTORS = ("embedded", "celery")
FORWARDER = Path(__file__).with_name("uds_forward.py")
API_TIMEOUT_S = 30.0
FORWARDER_START_S = 20.0


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"the service inside srv is unavailable: {reason}")
    pytest.skip(f"the service inside srv is unavailable: {reason}")


def pg_socket_url(database_url: str) -> str:
    """``database_url`` (a PostgreSQL URL over TCP) as the same database on the server's unix socket."""
    url = sa.make_url(database_url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            directories = conn.execute(sa.text("SHOW unix_socket_directories")).scalar_one()
            port = int(conn.execute(sa.text("SHOW port")).scalar_one())
    finally:
        engine.dispose()
    directory = next((d.strip() for d in str(directories).split(",") if d.strip().startswith("/")), None)
    if directory is None:
        _unavailable(f"the test PostgreSQL listens on no unix socket directory ({directories!r})")
    on_socket = sa.URL.create(url.drivername, url.username, url.password, None, port, url.database, {"host": directory})
    return on_socket.render_as_string(hide_password=False)


def redis_socket_url(broker_url: str) -> str:
    """``broker_url`` (a redis:// URL of one database) as the same database on the server's unix socket."""
    with redis.Redis.from_url(broker_url) as client:
        path = str(client.config_get("unixsocket").get("unixsocket", ""))
    if not path:
        _unavailable(
            "the test Redis listens on no unix socket: it was started before scripts/test-redis.sh made one; "
            "restart it from the checkout that started it (scripts/test-redis.sh stop, then start)"
        )
    number = urlsplit(broker_url).path.lstrip("/") or "0"
    return f"redis+socket://{path}?virtual_host={number}"


@dataclass
class SrvService:
    """The service running inside srv, and how to reach it.

    ``api`` calls the job APIs as the superuser ``admin`` of the test ``app`` (tests/support/jobs.py JobApi);
    ``client`` is its httpx.Client (through the unix socket), ``auth`` the superuser's common args for a request
    of one's own; ``url_via_px`` / ``url_via_jh`` are the service's URL as agents behind px / jh reach it;
    ``cluster`` has the processes (``cluster.log("api")``, ``cluster.start_worker(name)``, ``cluster.sql(...)``,
    ``cluster.start_api(**settings)`` to restart the API with other settings).
    """

    executor: str
    network: Network
    cluster: Cluster
    app: AppCredentials
    client: httpx.Client
    api: JobApi

    @property
    def auth(self) -> dict[str, str]:
        return {"bk_app_code": self.app.code, "bk_app_secret": self.app.secret, "bk_username": self.api.username}

    @property
    def url_via_px(self) -> str:
        return f"http://{ADDRESSES.srv_px}:{SRV_PORT}"

    @property
    def url_via_jh(self) -> str:
        return f"http://{ADDRESSES.srv_jh}:{SRV_PORT}"


def _wait_for_listener(cluster: Cluster, path: Path) -> None:
    """Wait until the forwarder accepts on ``path``: httpx leaks the socket of a connection refused there."""

    def accepts() -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                return False
            return True

    cluster.wait_for(accepts, f"the forwarder to listen on {path}", timeout_s=FORWARDER_START_S, log="uds-forward")


@contextmanager
def _short_dir() -> Iterator[Path]:
    """A folder whose path is short enough for a unix socket (pytest's tmp_path may not be)."""
    path = Path(tempfile.mkdtemp(prefix="nodeops-srv-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_in_srv(
    network: Network, root: Path, executor: str, *, env: dict[str, str] | None = None, **fixtures: Any
) -> Iterator[SrvService]:
    """Run the service inside srv on a database of its own, with the settings ``env`` (``NODEOPS_...``
    variables), until the block ends.

    ``executor="embedded"``: a migrated SQLite file under ``root`` (``fixtures["sqlite_template"]``).
    ``executor="celery"``: a PostgreSQL database copied from ``fixtures["pg_template"]`` of
    ``fixtures["pg_admin_url"]`` and the Redis database ``fixtures["broker_url"]``, and one worker ``w1``.
    """
    with ExitStack() as stack:
        if executor == "celery":
            pg_database = contextmanager(_pg_database)(fixtures["pg_admin_url"], template=fixtures["pg_template"])
            database_url = stack.enter_context(pg_database)
            srv_database_url = pg_socket_url(database_url)
            srv_broker_url = redis_socket_url(fixtures["broker_url"])
        else:
            path = root / "nodeops.sqlite3"
            shutil.copyfile(fixtures["sqlite_template"], path)
            database_url = srv_database_url = f"sqlite:///{path}"
            srv_broker_url = ""
        made = Cluster(
            root=root,
            database_url=srv_database_url,
            broker_url=srv_broker_url,
            port=SRV_PORT,
            executor=executor,
            host=BIND_ALL,
            public_url=f"http://{ADDRESSES.srv_px}:{SRV_PORT}",
            command_prefix=network.exec_prefix("srv"),
            uds=stack.enter_context(_short_dir()) / "api.sock",
            extra_env=dict(env or {}),
        )
        app = seed_callers(root, database_url)
        made.db = sa.create_engine(database_url)
        stack.callback(made.db.dispose)
        stack.callback(made.stop)
        made.spawn("uds-forward", [sys.executable, str(FORWARDER), str(made.uds), "127.0.0.1", str(SRV_PORT)])
        _wait_for_listener(made, made.uds)
        made.start_api()
        if executor == "celery":
            made.start_worker("w1")
        client = stack.enter_context(made.http_client(timeout_s=API_TIMEOUT_S))
        made.api = JobApi(client, app)
        yield SrvService(executor=executor, network=network, cluster=made, app=app, client=client, api=made.api)


@pytest.fixture
def srv_env() -> dict[str, str]:
    """Settings (``NODEOPS_...`` variables) the service and its workers inside srv run with, over the defaults;
    a test module overrides this fixture to change them, e.g. a short heartbeat interval."""
    return {}


@pytest.fixture(params=EXECUTORS)
def srv_service(
    request: pytest.FixtureRequest, network: Network, tmp_path: Path, srv_env: dict[str, str]
) -> Iterator[SrvService]:
    """The service inside srv (``SrvService``), once in the embedded mode on SQLite and once in celery mode on
    PostgreSQL and Redis with one worker, with the settings ``srv_env``; a test wanting one mode parametrizes it
    indirectly: ``@pytest.mark.parametrize("srv_service", ["celery"], indirect=True)``."""
    executor = request.param
    names = ("pg_admin_url", "pg_template", "broker_url") if executor == "celery" else ("sqlite_template",)
    fixtures = {name: request.getfixturevalue(name) for name in names}
    with running_in_srv(network, tmp_path, executor, env=srv_env, **fixtures) as service:
        yield service
