"""Proxies and P-Agents on loopback sshd hosts with celery workers (tests/engine/proxy_scenario.py): the routes
through the proxy are chosen when a worker reads its work, as the embedded engine does."""

from __future__ import annotations

from tests.engine.proxy_scenario import ChannelScenario, Scenario, free_port

PROXY_IP = "127.0.10.1"  # ssh_hosts(3)[0]


def test_a_proxy_and_its_areas_agents_installed_upgraded_and_uninstalled_through_it_by_workers(cluster, ssh_hosts):
    hosts = ssh_hosts(3)
    assert hosts[0].ip == PROXY_IP
    relay_port = free_port(PROXY_IP)
    for name in ("w1", "w2"):
        cluster.start_worker(name, concurrency=4, NODEOPS_PROXY_RELAY_PORT=str(relay_port))
    assert cluster.api is not None and cluster.db is not None
    Scenario(cluster.api, cluster.db, hosts, relay_port).run_all()


def test_a_host_installed_through_an_install_channel_by_workers(cluster, ssh_hosts):
    hosts = ssh_hosts(5)[3:]
    cluster.start_worker("w1", concurrency=4)
    assert cluster.api is not None and cluster.db is not None
    ChannelScenario(cluster.api, cluster.db, hosts, free_port(hosts[0].ip), cluster.url).run_all()
