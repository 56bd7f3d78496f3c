"""A host's cloud area and access point on install_job and a host import: an area that does not exist refuses the
request (3800001 naming ``hosts[i].bk_cloud_id``) with nothing written, and ``ap_id`` -1 becomes the area's access
point, else the default one. Real jobs on a running server; the hosts' SSH port refuses, so they fail fast."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from nodeops.store.models import Host, Job
from tests.support.jobs import ESB_JOB, dead_port
from tests.support.network_api import NetApi
from tests.support.subscriptions import INVENTORY

VALIDATION = 3800001


def ssh_host(ip: str, area: int, port: int, **fields: Any) -> dict[str, Any]:
    return {
        "bk_biz_id": 2,
        "bk_cloud_id": area,
        "inner_ip": ip,
        "os_type": "LINUX",
        "account": "root",
        "password": "pw",
        "port": port,
        **fields,
    }


def counts(services) -> tuple[int, int]:
    with services.db.session() as session:
        return session.scalar(select(func.count()).select_from(Host)), session.scalar(
            select(func.count()).select_from(Job)
        )


def test_a_host_in_an_unknown_area_refuses_the_install_and_writes_nothing(api, services):
    port = dead_port()
    net = NetApi(api.client, api.app)
    area = net.ok("POST", "/api/cloud/", {"bk_cloud_name": "idc-a"})["bk_cloud_id"]
    body = {
        "job_type": "INSTALL_AGENT",
        "hosts": [ssh_host("127.0.41.1", area, port), ssh_host("127.0.41.2", 77, port)],
    }
    answer = api.error(f"{ESB_JOB}/install/", body, VALIDATION)
    assert answer["message"].startswith("hosts[1].bk_cloud_id: 管控区域 77 不存在")
    assert counts(services) == (0, 0)
    inventory = {"hosts": [ssh_host("127.0.41.1", 0, port), ssh_host("127.0.41.2", 78, port)]}
    answer = api.error(f"{INVENTORY}/import/", {"inventory": inventory}, VALIDATION)
    assert answer["message"].startswith("hosts[1].bk_cloud_id: 管控区域 78 不存在")
    csv = "bk_biz_id,bk_cloud_id,inner_ip\n2,0,127.0.41.1\n2,79,127.0.41.2\n"
    answer = api.error(f"{INVENTORY}/import/", {"csv": csv}, VALIDATION)
    assert answer["message"].startswith("line 3.bk_cloud_id: 管控区域 79 不存在")
    assert counts(services) == (0, 0)


def alive_proxy(services, ip: str, area: int) -> None:
    """A proxy of ``area`` whose agent runs: the area's agents are accepted (else IGNORED, no_proxy)."""
    with services.db.session() as session:
        session.add(
            Host(bk_biz_id=2, bk_cloud_id=area, inner_ip=ip, node_type="PROXY", agent_status="RUNNING", ap_id=1)
        )


def test_ap_id_minus_one_is_the_areas_access_point_else_the_default(api, services):
    port = dead_port()
    net = NetApi(api.client, api.app)
    ap_id = net.ok("POST", "/api/ap/", {"name": "ap-area"})["id"]
    with_ap = net.ok("POST", "/api/cloud/", {"bk_cloud_name": "with-ap", "ap_id": ap_id})["bk_cloud_id"]
    auto = net.ok("POST", "/api/cloud/", {"bk_cloud_name": "auto"})["bk_cloud_id"]
    alive_proxy(services, "127.0.41.101", with_ap)
    alive_proxy(services, "127.0.41.102", auto)
    hosts = [
        ssh_host("127.0.41.1", with_ap, port, ap_id=-1),
        ssh_host("127.0.41.2", with_ap, port),  # ap_id left out: -1
        ssh_host("127.0.41.3", auto, port, ap_id=-1),
        ssh_host("127.0.41.4", 0, port, ap_id=-1),
        ssh_host("127.0.41.5", with_ap, port, ap_id=1),  # given: kept
    ]
    started = api.ok(f"{ESB_JOB}/install/", {"job_type": "INSTALL_AGENT", "hosts": hosts})
    with services.db.session() as session:
        found = {
            ip: ap
            for ip, ap, kind in session.execute(select(Host.inner_ip, Host.ap_id, Host.node_type))
            if kind != "PROXY"
        }
    assert found == {"127.0.41.1": ap_id, "127.0.41.2": ap_id, "127.0.41.3": 1, "127.0.41.4": 1, "127.0.41.5": 1}
    api.wait(started["job_id"])
    imported = api.ok(f"{INVENTORY}/import/", {"inventory": {"hosts": [ssh_host("127.0.41.9", with_ap, port)]}})
    with services.db.session() as session:
        assert session.get(Host, imported["created_host_ids"][0]).ap_id == ap_id
