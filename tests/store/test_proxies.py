"""How the work of a host not reached directly gets its route (``store.proxies``): a random alive proxy of its
area with a login, or a jump server of its install channel, with that hop's host keys; and the reasons given when
there is none."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import update

from nodeops.store import host_keys, jobs, packages, pipelines, proxies
from nodeops.store.db import session_cursor
from nodeops.store.models import Host, InstallChannel
from nodeops.store.proxies import RouteChooser
from tests.support.factories import restart_job, ssh_host

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def _host(session, ip, *, area, node_type, status="RUNNING", login=True, **columns):
    host_id = ssh_host(session, ip)
    values = {"bk_cloud_id": area, "node_type": node_type, "agent_status": status, **columns}
    if login:
        values["password_enc"] = b"sealed"
    session.execute(update(Host).where(Host.bk_host_id == host_id).values(**values))
    return host_id


def test_an_agent_of_an_area_goes_through_an_alive_proxy_with_a_login_at_its_outer_address(services):
    with services.db.session() as session:
        first = _host(session, "127.0.41.1", area=1, node_type="PROXY", outer_ip="127.0.41.101")
        second = _host(session, "127.0.41.2", area=1, node_type="PROXY")
        _host(session, "127.0.41.3", area=1, node_type="PROXY", login=False)  # alive, its login forgotten
        _host(session, "127.0.41.4", area=1, node_type="PROXY", status="TERMINATED")
        _host(session, "127.0.41.5", area=2, node_type="PROXY", login=False)
        host_keys.trust_first(session, "127.0.41.101", 22, KEY)
        session.flush()
        cur, p = session_cursor(session)
        chooser = RouteChooser(cur, p, random.Random(3))
        chosen = {chooser.route(bk_cloud_id=1, install_channel_id=None).hop.bk_host_id for _ in range(40)}
        (hop,) = [h for h in proxies.alive_proxies(cur, p, bk_cloud_id=1) if h.bk_host_id == first]
        only_forgotten = chooser.route(bk_cloud_id=2, install_channel_id=None)
        none = chooser.route(bk_cloud_id=3, install_channel_id=None)
    assert chosen == {first, second}
    assert (hop.address, hop.inner_address, hop.host_keys) == ("127.0.41.101", "127.0.41.1", (KEY,))
    assert only_forgotten.hop is None and "均无登录认证信息" in (only_forgotten.missing or "")
    assert none.hop is None and none.missing == "管控区域 -> 3 下无存活的 Proxy"


def test_a_host_of_an_install_channel_goes_through_its_jump_servers_and_needs_no_proxy(services):
    with services.db.session() as session:
        jump = _host(session, "127.0.42.1", area=0, node_type="AGENT")
        session.add(
            InstallChannel(
                id=5,
                name="通道五",
                bk_cloud_id=0,
                jump_servers=["127.0.42.9", "127.0.42.1"],
                upstream_servers={"channel_proxy_address": "http://127.0.42.1:17981"},
            )
        )
        session.add(InstallChannel(id=6, name="empty", bk_cloud_id=0, jump_servers=[], upstream_servers={}))
        session.flush()
        checked = proxies.check_channel(session, channel_id=5, bk_cloud_id=0)
        assert proxies.check_channel(session, channel_id=5, bk_cloud_id=1) is None
        cur, p = session_cursor(session)
        chooser = RouteChooser(cur, p)
        route = chooser.route(bk_cloud_id=0, install_channel_id=5)
        empty = chooser.route(bk_cloud_id=0, install_channel_id=6)
        gone = chooser.route(bk_cloud_id=0, install_channel_id=99)
    assert checked is not None and checked.missing_jump_servers == ("127.0.42.9",)
    assert route.hop is not None and route.hop.bk_host_id == jump and route.hop.kind == "跳板机"
    assert route.channel is not None and route.channel.proxy_address == "http://127.0.42.1:17981"
    assert empty.hop is None and "所选安装通道「empty」 没有可用跳板机" in (empty.missing or "")
    assert gone.hop is None and "主机的安装通道不存在" in (gone.missing or "")


def test_the_work_of_a_host_carries_its_route_and_where_it_is_logged_in_to(services):
    with services.db.session() as session:
        packages.ensure_default_access_point(session, server_url="http://127.0.0.1:1")
        proxy = _host(session, "127.0.43.1", area=1, node_type="PROXY", login_ip="127.0.43.100")
        pagent = _host(session, "127.0.43.2", area=1, node_type="PAGENT", login_ip="127.0.43.200")
        agent = _host(session, "127.0.43.3", area=0, node_type="AGENT")
        proxies.set_node_types(session, [agent], proxy_job=False)
    job = restart_job(
        services,
        [jobs.NewInstance(instance_id=f"host|instance|host|{h}", bk_host_id=h) for h in (proxy, pagent, agent)],
    )
    with services.db.session() as session:
        work = {w.bk_host_id: w for w in pipelines.pending_work(session, task_id=job.task_id).runnable}
    assert work[proxy].route is None and work[proxy].ssh_address == "127.0.43.100"
    assert work[agent].route is None and work[agent].node_type == "AGENT"
    route = work[pagent].route
    assert work[pagent].ssh_address == "127.0.43.200" and work[pagent].ip == "127.0.43.2"
    assert route is not None and route.hop is not None and route.hop.address == "127.0.43.100"
