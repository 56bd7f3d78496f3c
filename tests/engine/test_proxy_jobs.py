"""Proxies and P-Agents on loopback sshd hosts with the embedded engine (tests/engine/proxy_scenario.py): a
proxy of area 1 installed, two agents of area 1 installed, upgraded and uninstalled by SSH through it."""

from __future__ import annotations

import pytest

from tests.engine.proxy_scenario import ChannelScenario, Scenario, free_port

PROXY_IP = "127.0.10.1"  # ssh_hosts(3)[0]


@pytest.fixture
def settings(settings):
    """The shared settings, with the relay on a port of its own (tests run side by side)."""
    return settings.model_copy(update={"proxy_relay_port": free_port(PROXY_IP), "step_timeout_s": 90})


def test_a_proxy_and_its_areas_agents_installed_upgraded_and_uninstalled_through_it(api, services, ssh_hosts):
    hosts = ssh_hosts(3)
    assert hosts[0].ip == PROXY_IP
    Scenario(api, services.db.engine, hosts, services.settings.proxy_relay_port).run_all()


def test_a_host_installed_through_an_install_channel_reports_through_its_relay(api, services, ssh_hosts):
    hosts = ssh_hosts(5)[3:]
    assert hosts[0].ip == "127.0.10.4"
    port = free_port(hosts[0].ip)
    ChannelScenario(api, services.db.engine, hosts, port, services.settings.agent_server_url).run_all()
