"""install_job under NODEOPS_EXECUTOR=celery, over real HTTP: a host of transport 'local' would run on whichever
worker took it, so it is refused as an invalid field of that host, saying why and what to do; nothing is created."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.support.jobs import ESB_JOB, local_host


@pytest.fixture
def settings(settings):
    """The shared settings, with jobs run by workers."""
    return settings.model_copy(update={"executor": "celery"})


def test_a_local_host_is_refused_naming_its_transport_field(api, services, tmp_path):
    ssh_host = {"bk_biz_id": 2, "inner_ip": "127.0.20.8", "transport": "ssh", "account": "root", "password": "x"}
    body = {"job_type": "INSTALL_AGENT", "hosts": [ssh_host, local_host(tmp_path, 9)]}
    for path in (f"{ESB_JOB}/install/", "/api/job/install/"):
        answer = api.error(path, body, 3800001)
        message = answer["message"]
        assert message.startswith("hosts[1].transport: 'local' runs on the machine that runs the job"), message
        assert "NODEOPS_EXECUTOR=celery" in message and "transport 'ssh'" in message
        assert "NODEOPS_EXECUTOR=embedded" in message
        assert "hosts[0]" not in message
    with services.db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM hosts")).scalar() == 0
