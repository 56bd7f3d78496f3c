"""The test network itself (tests/support/netns.py): what srv cannot reach, what px and jh can, logins through the
neighbours, the service inside srv in both executors, and a network that leaves nothing behind."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.support.netns import (
    ADDRESSES,
    PREFIX,
    Network,
    existing_namespaces,
    remove_stale_namespaces,
    unreachable,
)
from tests.support.netns_service import SRV_PORT, SrvService
from tests.support.sshd import SSHTestHost

FAST_S = 0.5  # "no route" is answered at once by the kernel; a timeout would take CONNECT_TIMEOUT_S
SSH_PORT = 22

INSTALL = "/api/c/compapi/v2/nodeman/api/job/install/"
INSTALL_TIMEOUT_S = 120.0
HEARTBEAT_INTERVAL_S = 7.0

# Run inside a namespace: GET argv[1] and print its status and body.
HTTP_GET = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
    print(response.status, response.read().decode())
"""


@pytest.mark.parametrize(("area", "neighbour"), [("c1_a", "px"), ("c1_b", "px"), ("c2_a", "jh")])
def test_srv_has_no_route_to_an_area_that_its_neighbour_reaches(network: Network, area: str, neighbour: str) -> None:
    host = network.hosts[area]
    assert host.port == SSH_PORT
    code, seconds = network.tcp_connect_timed("srv", host.ip, SSH_PORT)
    assert unreachable(code), errno.errorcode.get(code, code)
    assert seconds < FAST_S, seconds  # refused by srv's own routing table, nothing waited for an answer
    assert network.tcp_connect(neighbour, host.ip, SSH_PORT) == 0


@pytest.mark.parametrize(("area", "neighbour"), [("c1_a", "px"), ("c2_a", "jh")])
def test_the_test_user_logs_in_to_an_area_host_from_its_neighbour(network: Network, area: str, neighbour: str) -> None:
    host = network.hosts[area]
    result = network.ssh_run(neighbour, host, "id -un; python3 -c 'print(6 * 7)'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [host.username, "42"]


def test_the_proxy_and_the_jump_server_are_logged_in_to_on_their_outer_address_from_srv(network: Network) -> None:
    for name, outer in (("px", ADDRESSES.px_srv), ("jh", ADDRESSES.jh_srv)):
        host = network.hosts[name]
        assert host.ip == outer
        result = network.ssh_run("srv", host, "id -un")
        assert (result.returncode, result.stdout.strip()) == (0, host.username), result.stderr


@pytest.mark.parametrize("area", ["c1", "c2"])
def test_an_area_reaches_nothing_beyond_its_neighbour(network: Network, area: str) -> None:
    for ip in (ADDRESSES.srv_px, ADDRESSES.srv_jh, ADDRESSES.px_srv, ADDRESSES.jh_srv):
        code = network.tcp_connect(area, ip, SSH_PORT)
        assert unreachable(code), (ip, errno.errorcode.get(code, code))


def test_no_namespace_has_a_default_route_and_the_relays_do_not_forward(network: Network) -> None:
    network.assert_isolated()
    assert network.routes("srv") == [
        f"198.18.0.0/24 dev to-px proto kernel scope link src {ADDRESSES.srv_px} ",
        f"198.18.2.0/24 dev to-jh proto kernel scope link src {ADDRESSES.srv_jh} ",
    ]


def test_the_service_inside_srv_answers_through_the_unix_socket(srv_service: SrvService) -> None:
    answer = srv_service.client.get("/healthz")
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == {"status": "ok"}
    # a call that authenticates the superuser of the test app, through the same socket
    assert srv_service.api.error("/api/job/987654/details/", {}, 3801012)["data"] is None
    if srv_service.executor == "celery":
        assert srv_service.cluster.live_workers() == [srv_service.cluster.worker_of("w1")]


def test_agents_reach_the_service_through_the_neighbours_and_an_area_cannot(srv_service: SrvService) -> None:
    network = srv_service.network
    for role, url in (("px", srv_service.url_via_px), ("jh", srv_service.url_via_jh)):
        result = network.run(role, [sys.executable, "-c", HTTP_GET, f"{url}/healthz"], check=True)
        assert result.stdout.startswith("200 "), result.stdout
    for area in ("c1", "c2"):
        for ip in (ADDRESSES.srv_px, ADDRESSES.srv_jh):
            assert unreachable(network.tcp_connect(area, ip, SRV_PORT))


@pytest.fixture
def srv_env() -> dict[str, str]:
    """The service inside srv with a heartbeat interval of its own, to see its settings reach the agents."""
    return {"NODEOPS_AGENT_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_INTERVAL_S)}


@pytest.fixture
def installs(srv_service: SrvService) -> Iterator[str]:
    """A folder name for this test's installs; the agents installed in the network are stopped at the end."""
    yield f"agent-{uuid.uuid4().hex[:8]}"
    srv_service.network.stop_agents()


def install_host(host: SSHTestHost, folder: str) -> dict[str, object]:
    return host.install_spec(folder)


def test_the_service_inside_srv_installs_an_agent_on_the_proxy_host_and_it_reports_back(
    srv_service: SrvService, installs: str
) -> None:
    host = srv_service.network.hosts["px"]
    job_id = srv_service.api.ok(INSTALL, {"job_type": "INSTALL_AGENT", "hosts": [install_host(host, installs)]})[
        "job_id"
    ]
    done = srv_service.api.wait(job_id, timeout_s=INSTALL_TIMEOUT_S)
    assert done["status"] == "SUCCESS", (done, srv_service.cluster.log("api"))
    config = json.loads(next((host.setup_path / installs).glob("**/agent.json")).read_text())
    assert (config["server_url"], config["interval_s"]) == (srv_service.url_via_px, HEARTBEAT_INTERVAL_S)


def test_the_service_inside_srv_cannot_install_a_host_behind_the_proxy_directly(
    srv_service: SrvService, installs: str
) -> None:
    host = srv_service.network.hosts["c1_a"]
    job_id = srv_service.api.ok(INSTALL, {"job_type": "INSTALL_AGENT", "hosts": [install_host(host, installs)]})[
        "job_id"
    ]
    done = srv_service.api.wait(job_id, timeout_s=INSTALL_TIMEOUT_S)
    assert done["status"] == "FAILED", done
    steps = srv_service.api.log(job_id, done["list"][0]["instance_id"])
    assert any(f"cannot reach {host.ip}:{host.port}: Network is unreachable" in step["log"] for step in steps), steps


def root_links() -> set[str]:
    """The names of this namespace's network interfaces."""
    listing = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in listing.splitlines()}


def test_a_network_removes_everything_it_made() -> None:
    made = Network()
    links_before = root_links()
    made.create()
    try:
        present = set(existing_namespaces())
        assert set(made.names.values()) <= present
        # a process left inside (as an installed agent would be) does not keep the namespace alive
        sleeper = made.popen("c1", ["sleep", "600"])
        assert root_links() == links_before  # the veth ends were made inside the namespaces
    finally:
        made.destroy()
    assert sleeper.wait(timeout=10) != 0
    assert [name for name in existing_namespaces() if name.startswith(made.prefix)] == []
    assert root_links() == links_before


def test_namespaces_of_a_run_that_is_gone_are_removed_and_those_of_a_live_one_kept() -> None:
    Network.check_available()
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = f"{PREFIX}-{gone.pid}-0000-srv"
    live = f"{PREFIX}-{os.getpid()}-0000-srv"
    for name in (stale, live):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        removed = remove_stale_namespaces()
        assert stale in removed and live not in removed
        assert live in existing_namespaces() and stale not in existing_namespaces()
    finally:
        for name in set(existing_namespaces()) & {stale, live}:
            subprocess.run(["ip", "netns", "delete", name], check=True)
