"""The proxy and P-Agent scenario on loopback sshd hosts, run by both executors (tests/engine/test_proxy_jobs.py,
tests/cluster/test_proxy_cluster.py): a proxy of cloud area 1 installed, then two agents of area 1 installed,
upgraded and uninstalled by SSH through it (the service could reach them directly on loopback: the log, the
agents' configuration and a proxy that stops answering show the way taken)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from nodeops.service.host_requests import PROXY_OUTER_REQUIRED
from tests.support.jobs import ESB_JOB, JobApi
from tests.support.sshd import SSHTestHost

AREA = 1
AREA_NAME = "idc-loopback-1"
INSTALL = f"{ESB_JOB}/install/"
OPERATE = f"{ESB_JOB}/operate/"
AGENT = "nodeops_agent.py"


def free_port(ip: str) -> int:
    """A port nothing listens on at ``ip`` (bound, then released): where the proxy's relay will listen."""
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


class Scenario:
    """One run: its hosts' install paths are folders of their own, whose agents are stopped at the end."""

    def __init__(
        self, api: JobApi, db: sa.Engine, hosts: Sequence[SSHTestHost], relay_port: int, proxy_inner: str = ""
    ) -> None:
        """``hosts``: the proxy (logged in to at its ``ip``, its outer address) and its area's agents;
        ``proxy_inner``: the proxy's address as its area sees it (default: its ``ip``)."""
        self.api = api
        self.db = db
        self.proxy, *self.agents = hosts
        self.proxy_inner = proxy_inner or self.proxy.ip
        self.relay_port = relay_port
        self.run = uuid.uuid4().hex[:8]

    def home(self, host: SSHTestHost) -> Path:
        return host.setup_path / f"agent-{self.run}"

    def spec(self, host: SSHTestHost, **changes: Any) -> dict[str, Any]:
        return {
            "bk_biz_id": 2,
            "bk_cloud_id": AREA,
            "inner_ip": host.ip,
            "port": host.port,
            "account": host.username,
            "owned_path": True,  # the test user has no sudo: it installs into its own folder
            "password": host.password,
            "setup_path": str(self.home(host)),
            **changes,
        }

    def sql(self, query: str, **params: Any) -> list[Any]:
        with self.db.begin() as conn:
            result = conn.execute(sa.text(query), params)
            return list(result.all()) if result.returns_rows else []

    def host_row(self, host: SSHTestHost) -> Any:
        inner = self.proxy_inner if host is self.proxy else host.ip
        (row,) = self.sql(
            "SELECT bk_host_id, node_type, upstream_nodes, agent_status FROM hosts WHERE inner_ip = :ip", ip=inner
        )
        return row

    def proxy_spec(self, **changes: Any) -> dict[str, Any]:
        return self.spec(self.proxy, inner_ip=self.proxy_inner, outer_ip=self.proxy.ip, **changes)

    def config(self, host: SSHTestHost) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.home(host) / "agent.json").read_text())
        return loaded

    def steps(self, job_id: int, instance_id: object) -> dict[str, dict[str, Any]]:
        return {step["step"]: step for step in self.api.log(job_id, instance_id)}

    @contextmanager
    def cleanup(self) -> Iterator[None]:
        try:
            yield
        finally:
            for host in (self.proxy, *self.agents):
                script = self.home(host) / AGENT
                if script.exists():
                    subprocess.run(
                        [sys.executable, str(script), "stop", "--home", str(script.parent)],
                        check=False,
                        capture_output=True,
                        timeout=20,
                    )

    def finished(self, job_id: int, status: str = "SUCCESS") -> dict[str, Any]:
        data = self.api.wait(job_id, timeout_s=120)
        assert data["status"] == status, data
        return data

    # --- the scenario ---------------------------------------------------------------------------------------

    def refusals_before_any_proxy(self) -> None:
        """What install_job refuses up front: a proxy in the direct area, a proxy without an outer address,
        REPLACE_PROXY without replace_host_id, and agents of an area without an alive proxy."""
        answer = self.api.error(
            INSTALL,
            {"job_type": "INSTALL_PROXY", "hosts": [self.proxy_spec(bk_cloud_id=0)]},
            3801006,
        )
        assert "是「直连区域」，不可以安装PROXY" in answer["message"] and self.proxy_inner in answer["message"]
        no_outer = self.spec(self.proxy, inner_ip=self.proxy_inner)
        answer = self.api.error(INSTALL, {"job_type": "INSTALL_PROXY", "hosts": [no_outer]}, 3800001)
        assert f"hosts[0].outer_ip: {PROXY_OUTER_REQUIRED}" in answer["message"], answer
        answer = self.api.error(INSTALL, {"job_type": "REPLACE_PROXY", "hosts": [self.proxy_spec()]}, 3800001)
        assert "replace_host_id: 替换PROXY必须填写replace_host_id" in answer["message"], answer
        answer = self.api.error(
            INSTALL, {"job_type": "INSTALL_AGENT", "hosts": [self.spec(host) for host in self.agents]}, 3801013
        )
        assert answer["data"]["job_id"] == ""
        filtered = answer["data"]["ip_filter"]
        assert [entry["ip"] for entry in filtered] == [host.ip for host in self.agents]
        for entry in filtered:
            assert entry["status"] == "IGNORED" and entry["exception"] == "no_proxy", entry
            assert entry["msg"] == "该「管控区域」下不存在代理"
            assert entry["bk_cloud_id"] == AREA and entry["bk_cloud_name"] == AREA_NAME and entry["job_id"] == ""
            assert "password" not in entry
        assert self.sql("SELECT count(*) FROM jobs") == [(0,)]

    def install_proxy(self) -> int:
        proxy = self.proxy
        job_id = self.api.ok(INSTALL, {"job_type": "INSTALL_PROXY", "hosts": [self.proxy_spec()]})["job_id"]
        self.finished(job_id)
        row = self.host_row(proxy)
        assert row.node_type == "PROXY" and row.agent_status == "RUNNING", row
        config = self.config(proxy)
        assert config["relay"] == {"listen": f"{self.proxy_inner}:{self.relay_port}"}, config
        names = [step["step"] for step in self.api.log(job_id, row.bk_host_id)]
        assert names[1:-1] == ["注册主机到配置平台", "查询主机密码", "选择接入点", "安装", "查询Proxy状态"], names
        steps = self.steps(job_id, row.bk_host_id)
        assert f"Proxy 转发地址 {self.proxy_inner}:{self.relay_port}" in steps["安装"]["log"]
        return int(row.bk_host_id)

    def install_agents_through_the_proxy(self) -> list[int]:
        proxy = self.proxy
        answer = self.api.ok(INSTALL, {"job_type": "INSTALL_AGENT", "hosts": [self.spec(h) for h in self.agents]})
        assert answer["ip_filter"] == []
        self.finished(answer["job_id"])
        host_ids = []
        for host in self.agents:
            row = self.host_row(host)
            host_ids.append(int(row.bk_host_id))
            assert row.node_type == "PAGENT", row
            assert _json(row.upstream_nodes) == [self.proxy_inner], row
            assert self.config(host)["server_url"] == f"http://{self.proxy_inner}:{self.relay_port}"
            assert "relay" not in self.config(host)
            install = self.steps(answer["job_id"], f"host|instance|host|{host.ip}-{AREA}-0")["安装"]
            assert f"已选择 {proxy.ip} 作为本次安装的跳板机" in install["log"], install["log"]
            assert f"经Proxy {proxy.ip} 连接主机 {host.ip}" in install["log"], install["log"]
            assert host.password not in install["log"] and proxy.password not in install["log"]
        # both hops' keys were checked through the database: the P-Agents' asked through the proxy and recorded
        trusted = {(host, port) for host, port in self.sql("SELECT host, port FROM host_keys")}
        assert {(h.ip, h.port) for h in (proxy, *self.agents)} <= trusted, trusted
        return host_ids

    def operate(self, job_type: str, host_ids: list[int], status: str = "SUCCESS") -> int:
        answer = self.api.ok(OPERATE, {"job_type": job_type, "bk_host_id": host_ids})
        assert answer["ip_filter"] == [], answer
        self.finished(answer["job_id"], status)
        return int(answer["job_id"])

    def upgrade(self, host_ids: list[int]) -> None:
        job_id = self.operate("UPGRADE_AGENT", host_ids)
        for host, host_id in zip(self.agents, host_ids, strict=True):
            steps = self.steps(job_id, host_id)
            for name in ("批量下发升级包", "执行升级脚本"):
                assert f"经Proxy {self.proxy.ip} 连接主机 {host.ip}" in steps[name]["log"], steps[name]

    def a_proxy_that_cannot_be_used_fails_the_step(self, host_ids: list[int], proxy_id: int) -> None:
        """The stored way into the proxy made wrong: the P-Agent's job fails saying it could not reach the proxy,
        though the P-Agent itself is reachable: the service goes through the proxy. A proxy no longer alive
        refuses the agents at launch (3801013), but RESTART_AGENT, which then fails saying why."""
        dead = free_port(self.proxy.ip)
        self.sql("UPDATE hosts SET ssh_port = :port WHERE bk_host_id = :id", port=dead, id=proxy_id)
        job_id = self.operate("RELOAD_AGENT", host_ids[:1], status="FAILED")
        step = self.steps(job_id, host_ids[0])["检查Agent状态"]
        assert step["status"] == "FAILED" and f"{self.proxy.ip}:{dead}" in step["log"], step
        self.sql(
            "UPDATE hosts SET ssh_port = :port, agent_status = 'TERMINATED' WHERE bk_host_id = :id",
            port=self.proxy.port,
            id=proxy_id,
        )
        answer = self.api.error(OPERATE, {"job_type": "UPGRADE_AGENT", "bk_host_id": host_ids}, 3801013)
        for entry in answer["data"]["ip_filter"]:
            assert (entry["exception"], entry["bk_cloud_id"], entry["bk_cloud_name"]) == ("no_proxy", AREA, AREA_NAME)
        restart = self.api.ok(OPERATE, {"job_type": "RESTART_AGENT", "bk_host_id": host_ids[:1]})
        assert restart["ip_filter"] == []  # exempt at launch, as in Node Manager: it fails when it runs
        self.finished(restart["job_id"], "FAILED")
        step = self.steps(restart["job_id"], host_ids[0])["重启"]
        assert f"管控区域 -> {AREA} 下无存活的 Proxy" in step["log"], step
        self.sql("UPDATE hosts SET agent_status = 'RUNNING' WHERE bk_host_id = :id", id=proxy_id)

    def a_changed_host_key_behind_the_proxy_is_refused(self, host_ids: list[int]) -> None:
        """A P-Agent whose SSH host key changed is refused through the proxy as directly, naming the host and
        how to forget its old key; once forgotten, its new key is trusted on first use."""
        host, host_id = self.agents[-1], host_ids[-1]
        host.restart_with_new_host_key()
        job_id = self.operate("RELOAD_AGENT", [host_id], status="FAILED")
        step = self.steps(job_id, host_id)["检查Agent状态"]
        assert f"the host key of {host.ip}:{host.port} has changed" in step["log"], step
        assert f"nodeops hosts forget-key {host.ip} --port {host.port}" in step["log"]
        self.sql("DELETE FROM host_keys WHERE host = :ip AND port = :port", ip=host.ip, port=host.port)
        self.operate("RELOAD_AGENT", [host_id])

    def uninstall(self, host_ids: list[int]) -> None:
        self.operate("UNINSTALL_AGENT", host_ids)
        for host in self.agents:
            assert not (self.home(host) / AGENT).exists()
            assert self.host_row(host).agent_status == "NOT_INSTALLED"

    def add_area(self) -> None:
        self.sql(
            "INSERT INTO cloud_areas (bk_cloud_id, bk_cloud_name, ap_id, creator, is_visible, created_at) "
            "VALUES (:id, :name, -1, '[]', :visible, CURRENT_TIMESTAMP)",
            id=AREA,
            name=AREA_NAME,
            visible=True,
        )

    def run_all(self) -> None:
        self.add_area()
        with self.cleanup():
            self.refusals_before_any_proxy()
            proxy_id = self.install_proxy()
            host_ids = self.install_agents_through_the_proxy()
            self.upgrade(host_ids)
            self.a_proxy_that_cannot_be_used_fails_the_step(host_ids, proxy_id)
            self.a_changed_host_key_behind_the_proxy_is_refused(host_ids)
            self.uninstall(host_ids)


def _quiet_popen(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _json(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else value


BUNDLED_AGENT = Path(__file__).resolve().parents[2] / "src" / "nodeops" / "agent" / AGENT
CHANNEL_NAME = "通道-loopback"


class ChannelScenario(Scenario):
    """A host of the direct area reached through an install channel whose jump server is an agent of the
    inventory; its agent reports through a relay the test runs on the jump server, as an operator would."""

    def __init__(
        self,
        api: JobApi,
        db: sa.Engine,
        hosts: Sequence[SSHTestHost],
        relay_port: int,
        server_url: str,
        *,
        relay_ip: str = "",
        popen: Callable[[list[str]], subprocess.Popen[bytes]] | None = None,
        jump_ap_id: int | None = None,
    ) -> None:
        """``hosts``: the jump server and the host behind it; the relay listens on ``relay_ip`` (default the jump
        server's ``ip``), started by ``popen`` (default here), forwarding to ``server_url``; the jump server is
        installed with the access point ``jump_ap_id`` (default the default one)."""
        super().__init__(api, db, hosts, relay_port)
        self.jump, self.target = self.proxy, self.agents[0]
        self.server_url = server_url
        self.relay_ip = relay_ip or self.jump.ip
        self.popen = popen or _quiet_popen
        self.jump_ap_id = jump_ap_id

    def add_channel(self, name: str, jump_servers: list[str], relay: str | None) -> int:
        upstream: dict[str, Any] = {"taskserver": [], "btfileserver": [], "dataserver": []}
        if relay:
            upstream["channel_proxy_address"] = relay
        (row,) = self.sql(
            "INSERT INTO install_channels (name, bk_cloud_id, jump_servers, upstream_servers, hidden, created_at) "
            "VALUES (:name, 0, :servers, :upstream, :hidden, CURRENT_TIMESTAMP) RETURNING id",
            name=name,
            servers=json.dumps(jump_servers),
            upstream=json.dumps(upstream),
            hidden=False,
        )
        return int(row[0])

    @contextmanager
    def relay_on_jump_server(self) -> Iterator[str]:
        listen = f"{self.relay_ip}:{self.relay_port}"
        relay = self.popen(
            [sys.executable, str(BUNDLED_AGENT), "relay", "--listen", listen, "--upstream", self.server_url]
        )
        try:
            yield f"http://{listen}"
        finally:
            relay.terminate()
            relay.wait(timeout=10)

    def run_all(self) -> None:
        jump, target = self.jump, self.target
        self.add_area()
        with self.cleanup(), self.relay_on_jump_server() as relay:
            unknown = self.api.error(
                INSTALL,
                {"job_type": "INSTALL_AGENT", "hosts": [self.spec(target, bk_cloud_id=0, install_channel_id=999)]},
                3801037,
            )
            assert "主机的安装通道不存在，请重新选择" in unknown["message"], unknown
            channel_id = self.add_channel(CHANNEL_NAME, [jump.ip], relay)
            missing = self.api.error(
                INSTALL,
                {
                    "job_type": "INSTALL_AGENT",
                    "hosts": [self.spec(target, bk_cloud_id=0, install_channel_id=channel_id)],
                },
                3801023,
            )
            assert f"安装节点主机{jump.ip}不存在，请确认是否已安装AGENT" in missing["message"], missing
            elsewhere = self.api.error(
                INSTALL,
                {"job_type": "INSTALL_AGENT", "hosts": [self.spec(target, install_channel_id=channel_id)]},
                3801037,
            )
            assert f"cloud area {AREA}" in elsewhere["message"]
            ap = {} if self.jump_ap_id is None else {"ap_id": self.jump_ap_id}
            job_id = self.api.ok(
                INSTALL, {"job_type": "INSTALL_AGENT", "hosts": [self.spec(jump, bk_cloud_id=0, **ap)]}
            )["job_id"]
            self.finished(job_id)
            answer = self.api.ok(
                INSTALL,
                {
                    "job_type": "INSTALL_AGENT",
                    "hosts": [self.spec(target, bk_cloud_id=0, install_channel_id=channel_id)],
                },
            )
            self.finished(answer["job_id"])
            row = self.host_row(target)
            assert row.node_type == "AGENT" and _json(row.upstream_nodes) == [jump.ip], row
            assert self.config(target)["server_url"] == relay
            install = self.steps(answer["job_id"], row.bk_host_id)["安装"]["log"]
            assert f"选择的安装通道为: {CHANNEL_NAME}" in install, install
            assert (
                f"已选择 {jump.ip} 作为本次安装的跳板机" in install
                and f"经跳板机 {jump.ip} 连接主机 {target.ip}" in install
            )
            job_id = self.operate("UNINSTALL_AGENT", [int(row.bk_host_id)])
            assert f"经跳板机 {jump.ip}" in self.steps(job_id, row.bk_host_id)["卸载Agent"]["log"]
            assert not (self.home(target) / AGENT).exists()
