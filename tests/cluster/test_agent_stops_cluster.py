"""An agent that stops, in the celery executor with real processes: a worker installs a real agent (heartbeat
every second) on a loopback sshd host; killed with SIGKILL, its host is marked TERMINATED within a few intervals
by one of the three API processes (each looks), its last heartbeat kept, and counted so; started again (the
agent's ``start``, as the host's user), it is RUNNING again. Each transition is logged once."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.agent_watch import INTERVAL_S, MISSES, kill_then_restart, wait_until
from tests.support.cluster import Cluster
from tests.support.jobs import AGENT
from tests.support.subscriptions import INVENTORY, topology

INSTALL = "/api/c/compapi/v2/nodeman/api/job/install/"
API_PROCESSES = 3  # each watches for silent agents
FAST = {"NODEOPS_AGENT_HEARTBEAT_INTERVAL_S": str(INTERVAL_S), "NODEOPS_AGENT_MISSED_HEARTBEATS": str(MISSES)}


@pytest.fixture
def home(ssh_hosts) -> Iterator[Path]:
    """This test's install path on the first sshd host; its agent is stopped at the end."""
    path = ssh_hosts(1)[0].setup_path / f"agent-{uuid.uuid4().hex[:8]}"
    yield path
    if (path / AGENT).exists():
        subprocess.run(["python3", str(path / AGENT), "stop", "--home", str(path)], capture_output=True, timeout=20)


def test_a_killed_agent_on_an_ssh_host_is_terminated_then_running_again(cluster: Cluster, ssh_hosts, home: Path):
    cluster.start_api(**FAST, NODEOPS_API_WORKERS=str(API_PROCESSES))
    cluster.start_worker("w1", **FAST)
    host = ssh_hosts(1)[0]
    api = cluster.api
    assert api is not None
    placed = {"bk_biz_id": 2, "inner_ip": host.ip, "modules": [100]}
    api.ok(f"{INVENTORY}/import/", {"inventory": {"topology": topology(2), "hosts": [placed]}})
    login = {"port": host.port, "account": host.username, "password": host.password, "setup_path": str(home)}
    login["owned_path"] = True  # the test user has no sudo: it installs into its own folder
    job = api.ok(INSTALL, {"job_type": "INSTALL_AGENT", "hosts": [{"bk_biz_id": 2, "inner_ip": host.ip, **login}]})
    done = api.wait(int(job["job_id"]), timeout_s=120)
    assert done["status"] == "SUCCESS", done

    def read_host() -> tuple[str, datetime | None]:
        (status, seen, interval), *others = cluster.sql(
            "SELECT agent_status, last_heartbeat_at, heartbeat_interval_s FROM hosts"
        )
        assert not others and interval == INTERVAL_S  # recorded by the worker that wrote the config
        return status, None if seen is None else seen.replace(tzinfo=UTC)

    wait_until(lambda: read_host()[0] == "RUNNING", "the first heartbeat", 20)
    start = ["runuser", "-u", host.username, "--", "python3", str(home / AGENT), "start", "--home", str(home)]
    kill_then_restart(api, read_host, home, start)
    # the API's processes all watch: each transition is logged by exactly one of them
    log = cluster.log("api", 0)
    assert log.count("sent no heartbeat for 3 intervals") == 1, log
    assert log.count("reports again: RUNNING") == 1, log
