"""Installs the service cannot make directly, in the test network (tests/support/netns.py), in both executors: a
proxy on px, then c1's two hosts of cloud area 1 installed, upgraded and uninstalled by SSH through it, their
heartbeats reaching the service through the proxy's relay, and the area's installs refused once the proxy's agent
stops (until it runs again); and c2's host installed through an install channel whose
jump server is jh, reporting through a relay an operator runs on jh. Each test first shows that srv cannot reach the
hosts it then installs."""

from __future__ import annotations

import errno
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.engine.proxy_scenario import AGENT, AREA, INSTALL, ChannelScenario, Scenario
from tests.support.netns import ADDRESSES, unreachable
from tests.support.netns_service import SRV_PORT, SrvService

RELAY_PORT = 17981  # the setting's default: every namespace has ports of its own
JH_ACCESS_POINT = 2  # the access point of agents that reach the service through jh
HEARTBEAT_INTERVAL_S = 1  # the agents' rhythm here, so a stopped proxy is seen silent within seconds
MISSED_HEARTBEATS = 3
STATUS_WAIT_S = 20.0
NO_PROXY = "该「管控区域」下不存在代理"


@pytest.fixture
def srv_env() -> dict[str, str]:
    return {
        "NODEOPS_AGENT_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_INTERVAL_S),
        "NODEOPS_AGENT_MISSED_HEARTBEATS": str(MISSED_HEARTBEATS),
    }


def _no_route(service: SrvService, role: str, ip: str, port: int) -> None:
    code = service.network.tcp_connect(role, ip, port)
    assert unreachable(code), f"{role} reaches {ip}:{port} ({errno.errorcode.get(code, code)})"


def test_a_proxy_on_px_then_the_agents_of_its_area_installed_upgraded_and_uninstalled_through_it(
    srv_service: SrvService,
) -> None:
    network = srv_service.network
    px, c1_a, c1_b = (network.hosts[name] for name in ("px", "c1_a", "c1_b"))
    for host in (c1_a, c1_b):
        _no_route(srv_service, "srv", host.ip, host.port)
    _no_route(srv_service, "c1", ADDRESSES.srv_px, SRV_PORT)  # their heartbeats can only come through px
    assert srv_service.cluster.db is not None
    with srv_service.cluster.db.begin() as conn:  # the proxy must report to the outer URL: px cannot reach the other
        conn.exec_driver_sql(
            f"UPDATE access_points SET server_url = '{srv_service.url_via_jh}', "
            f"outer_server_url = '{srv_service.url_via_px}' WHERE id = 1"
        )
    _no_route(srv_service, "px", ADDRESSES.srv_jh, SRV_PORT)
    scenario = Scenario(srv_service.api, srv_service.cluster.db, [px, c1_a, c1_b], RELAY_PORT, ADDRESSES.px_c1)
    scenario.add_area()
    try:
        scenario.refusals_before_any_proxy()
        scenario.install_proxy()
        assert scenario.config(px)["server_url"] == srv_service.url_via_px
        host_ids = scenario.install_agents_through_the_proxy()  # their heartbeats came through px's relay
        scenario.upgrade(host_ids)
        scenario.uninstall(host_ids)
        _a_stopped_proxy_refuses_its_area_until_it_runs_again(srv_service, scenario)
    finally:
        network.stop_agents()


def _a_stopped_proxy_refuses_its_area_until_it_runs_again(service: SrvService, scenario: Scenario) -> None:
    """The proxy's agent stopped on px: the service, hearing nothing for MISSED_HEARTBEATS intervals, marks it
    TERMINATED, and a new install in its area is refused up front (IGNORED, no_proxy; 3801013 as every host is);
    started again, it is RUNNING and the area's hosts are accepted."""
    px = scenario.proxy
    script = scenario.home(px) / AGENT
    agents = {"job_type": "INSTALL_AGENT", "hosts": [scenario.spec(host) for host in scenario.agents]}
    service.network.run("px", [sys.executable, str(script), "stop", "--home", str(script.parent)], check=True)
    stopped_at = time.monotonic()
    row = _wait_for_status(scenario, px, "TERMINATED")
    assert time.monotonic() - stopped_at < STATUS_WAIT_S and row.agent_status == "TERMINATED"
    answer = service.api.error(INSTALL, agents, 3801013)
    assert answer["data"]["job_id"] == ""
    filtered = answer["data"]["ip_filter"]
    assert sorted(entry["ip"] for entry in filtered) == sorted(host.ip for host in scenario.agents), filtered
    for entry in filtered:
        assert (entry["status"], entry["exception"]) == ("IGNORED", "no_proxy") and entry["msg"] == NO_PROXY, entry
        assert entry["bk_cloud_id"] == AREA
    service.network.run("px", [sys.executable, str(script), "start", "--home", str(script.parent)], check=True)
    _wait_for_status(scenario, px, "RUNNING")
    accepted = service.api.ok(INSTALL, agents)
    assert accepted["ip_filter"] == [], accepted
    scenario.finished(accepted["job_id"])


def _wait_for_status(scenario: Scenario, host: Any, status: str) -> Any:
    deadline = time.monotonic() + STATUS_WAIT_S
    while (row := scenario.host_row(host)).agent_status != status:
        assert time.monotonic() < deadline, f"{host.ip} still {row.agent_status}, not {status}, after {STATUS_WAIT_S} s"
        time.sleep(0.2)
    return row


def test_a_host_behind_jh_installed_through_an_install_channel(srv_service: SrvService) -> None:
    network = srv_service.network
    jh, c2_a = network.hosts["jh"], network.hosts["c2_a"]
    _no_route(srv_service, "srv", c2_a.ip, c2_a.port)
    _no_route(srv_service, "c2", ADDRESSES.srv_jh, SRV_PORT)
    assert srv_service.cluster.db is not None
    with srv_service.cluster.db.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO access_points (id, name, server_url, linux_setup_path, description, is_enabled, created_at) "
            f"VALUES ({JH_ACCESS_POINT}, 'via jh', '{srv_service.url_via_jh}', '/usr/local/nodeops-agent', '', "
            "true, CURRENT_TIMESTAMP)"
        )

    def in_jh(argv: list[str]) -> subprocess.Popen[bytes]:
        return network.popen("jh", argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    scenario = ChannelScenario(
        srv_service.api,
        srv_service.cluster.db,
        [jh, c2_a],
        RELAY_PORT,
        srv_service.url_via_jh,
        relay_ip=ADDRESSES.jh_c2,
        popen=in_jh,
        jump_ap_id=JH_ACCESS_POINT,
    )
    try:
        scenario.run_all()
    finally:
        network.stop_agents()
