"""The floor of ``bench/fanout.py``: the same agent upgrade as UPGRADE_AGENT, done by bare asyncssh (no nodeops code).

``python bench/_fanout_floor.py PLAN.json RESULT.json``. With at most ``limit`` hosts at once (the service's job
limit), for each host: connect (password, the same asyncssh options the service passes), then the same remote
actions as the service's steps, one SSH channel each:

    test -f H/nodeops_agent.py                                         (批量下发升级包 checks the agent is there)
    SFTP put the package to H/.nodeops-agent-{version}.tgz
    python3 H/nodeops_agent.py stop --home H
    tar -xzf H/.nodeops-agent-{version}.tgz --strip-components=1 -C H && rm -f H/.nodeops-agent-{version}.tgz
    python3 H/nodeops_agent.py start --home H

then close the connection and wait for the agent's first heartbeat of the new version, all inside the host's slot,
as the service's pipeline holds its slot until 查询Agent状态 passes. Commands run bare (no wrapper shell, no
``command -v python3`` guard) and nothing is logged or stored: the least work that does the job.

Heartbeats: the agents post to ``server_url/api/agent/heartbeat/``, the service's address, so this process listens
on that same port (the service has exited by then) with a minimal asyncio HTTP/1.1 server that reads the JSON body,
wakes the waiter of that ``bk_host_id`` when the version is the new one, and answers the service's success
envelope. Tokens are not checked. Wall time runs from before the first connect to the last host's heartbeat.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import asyncssh
import uvloop
from _fanout_measure import Window, rss_mb

HEARTBEAT_PATH = b"/api/agent/heartbeat/"
OK_BODY = b'{"result":true,"code":0,"message":"success","data":null}'
OK_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(OK_BODY)).encode() + b"\r\n\r\n" + OK_BODY
)
HEARTBEAT_TIMEOUT_S = 60.0
# the service's cipher preference (nodeops.engine.transports.ssh.ENCRYPTION_ALGS), copied: the floor imports no nodeops
ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
COMMAND_TIMEOUT_S = 120.0


class Heartbeats:
    """Waiters for the new version's first heartbeat, by bk_host_id, and the HTTP handler that wakes them."""

    def __init__(self, host_ids: list[int], version: str) -> None:
        self.version = version
        self.seen = {host_id: asyncio.Event() for host_id in host_ids}
        self.count = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            self.count += 1
            if head.split(b" ", 2)[1] == HEARTBEAT_PATH:
                beat = json.loads(body)
                event = self.seen.get(beat.get("bk_host_id"))
                if event is not None and beat.get("version") == self.version:
                    event.set()
            writer.write(OK_RESPONSE)
            await writer.drain()
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def upgrade_host(
    host: dict[str, Any],
    plan: dict[str, Any],
    known_hosts: asyncssh.SSHKnownHosts | None,
    limit: asyncio.Semaphore,
    beats: Heartbeats,
) -> str | None:
    """Upgrade one host; None on success, else why it failed."""
    home = host["setup_path"]
    q_home = shlex.quote(home)
    script = shlex.quote(f"{home}/nodeops_agent.py")
    staged = f"{home}/.nodeops-agent-{plan['version']}.tgz"
    q_staged = shlex.quote(staged)
    step = "connect"
    async with limit:
        try:
            async with asyncssh.connect(
                host["ip"],
                host["port"],
                username=plan["username"],
                password=plan["password"],
                client_keys=None,
                known_hosts=known_hosts,
                connect_timeout=30,
                encryption_algs=ENCRYPTION_ALGS,
                agent_path=None,
                config=[],
                gss_host=None,
                x509_trusted_certs=None,
            ) as conn:
                for step, command in (  # noqa: B007 (step names the failure)
                    ("check", f"test -f {script}"),
                    ("put", None),
                    ("stop", f"python3 {script} stop --home {q_home}"),
                    ("unpack", f"tar -xzf {q_staged} --strip-components=1 -C {q_home} && rm -f {q_staged}"),
                    ("start", f"python3 {script} start --home {q_home}"),
                ):
                    if command is None:
                        async with conn.start_sftp_client() as sftp:
                            await sftp.put(plan["package"], staged)
                    else:
                        await conn.run(command, check=True, timeout=COMMAND_TIMEOUT_S)
            step = "heartbeat"
            await asyncio.wait_for(beats.seen[host["bk_host_id"]].wait(), HEARTBEAT_TIMEOUT_S)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            return f"{host['ip']} {step}: {type(exc).__name__}: {exc}"
    return None


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    hosts = plan["hosts"]
    beats = Heartbeats([h["bk_host_id"] for h in hosts], plan["version"])
    server = await asyncio.start_server(beats.handle, "127.0.0.1", plan["port"], backlog=1024)
    limit = asyncio.Semaphore(plan["limit"])
    # the keys the service trusts (every host was trusted during the install), written out by the service; parsed once
    known_hosts = asyncssh.read_known_hosts(plan["known_hosts"]) if plan["known_hosts"] else None
    await asyncio.sleep(plan["settle_s"])  # agents that failed a heartbeat while no one listened resume their rhythm
    window = Window(plan["hosts_cgroup"])
    try:
        beats0 = beats.count
        window.start()
        outcomes = await asyncio.gather(*(upgrade_host(h, plan, known_hosts, limit, beats) for h in hosts))
        result: dict[str, Any] = window.stop()
        failures = [o for o in outcomes if o is not None]
        return result | {
            "peak_rss_mb": rss_mb("VmHWM"),
            "heartbeats": beats.count - beats0,
            "ok": len(hosts) - len(failures),
            "failures": failures[:5],
        }
    finally:
        server.close()


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    result = uvloop.run(run(plan))
    Path(sys.argv[2]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
