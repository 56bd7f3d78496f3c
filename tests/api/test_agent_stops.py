"""An agent that stops, end to end in the embedded executor, on SQLite and PostgreSQL: a real agent installed with
a heartbeat every second (transport local) is killed with SIGKILL; within a few intervals its host is TERMINATED
with its last heartbeat kept, the counts of its business, set and module say so; started again with the agent's
own ``start`` command, it is RUNNING again and counted so."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import pytest

from nodeops.store.models import Host
from tests.support.agent_watch import INTERVAL_S, MISSES, kill_then_restart, wait_until
from tests.support.jobs import AGENT, ESB_JOB, local_host
from tests.support.subscriptions import INVENTORY, topology


@pytest.fixture
def settings(settings):
    """The shared settings, with agents reporting every second."""
    return settings.model_copy(update={"agent_heartbeat_interval_s": INTERVAL_S, "agent_missed_heartbeats": MISSES})


def test_a_killed_agent_is_terminated_then_running_again_once_started(api, services, tmp_path):
    host = local_host(tmp_path, 1)
    api.ok(
        f"{INVENTORY}/import/",
        {
            "inventory": {
                "topology": topology(2),
                "hosts": [{"bk_biz_id": 2, "inner_ip": host["inner_ip"], "modules": [100]}],
            }
        },
    )
    job = api.ok(f"{ESB_JOB}/install/", {"job_type": "INSTALL_AGENT", "hosts": [host]})
    done = api.wait(job["job_id"])
    assert done["status"] == "SUCCESS", done

    def read_host() -> tuple[str, datetime | None]:
        with services.db.session() as session:
            row = session.query(Host).one()
            assert row.heartbeat_interval_s == INTERVAL_S  # recorded when its config was written
            return row.agent_status, row.last_heartbeat_at

    home = Path(str(host["setup_path"]))
    wait_until(lambda: read_host()[0] == "RUNNING", "the first heartbeat", 10)
    kill_then_restart(api, read_host, home, [sys.executable, str(home / AGENT), "start", "--home", str(home)])
