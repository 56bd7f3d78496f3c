"""What each step of a plan does on a host (``StepCode`` -> coroutine), and the context it runs in.

A step logs what it does through ``StepContext.log`` and signals failure by raising a ``NodeopsError`` whose
message says why (the runner writes it into the step's log). Commands' output is streamed into the log
line by line as it arrives. Credentials are opened only here, when a transport connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shlex
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from nodeops.crypto import SecretBox
from nodeops.domain.plans import StepCode, hook_name_of
from nodeops.engine import diagnoses, privilege
from nodeops.engine.heartbeats import HeartbeatWaiters
from nodeops.engine.logwriter import LogWriter
from nodeops.engine.packages import ChosenPackage, LocalPackages
from nodeops.engine.privilege import Privilege
from nodeops.engine.transports.base import CommandResult, Transport
from nodeops.errors import AccessPointUnreachable, AuthFailed, CommandFailed, TransportError
from nodeops.settings import PING_PATH, RELAY_PORT
from nodeops.store import agents as agent_rows
from nodeops.store import install_tokens, pipelines, proxies
from nodeops.store.db import Database, ReadHandle
from nodeops.store.models import utcnow
from nodeops.store.pipelines import HostWork, PlannedRun

AGENT_SCRIPT = "nodeops_agent.py"
HOOK_FILE = "hook.sh"
MISSING_PYTHON_EXIT = 97
# The agent reports once when it starts, which is what 查询Agent状态 waits for; the steady rhythm after that only
# says it is still alive, so it can be slow: each heartbeat costs the service a request and a write.
DEFAULT_HEARTBEAT_INTERVAL_S = 30.0
UPLOAD_DIR_TEMPLATE = "/tmp/nodeops-upload.XXXXXXXX"


@dataclass(frozen=True, slots=True, kw_only=True)
class StepTimeouts:
    """How long a step may take (named defaults, as Node Manager's §9.3 values)."""

    connect_s: float = 30.0
    command_s: float = 120.0
    upload_s: float = 300.0
    heartbeat_s: float = 60.0
    # 查询Agent状态 is woken by the heartbeat API of this process, or by a notice of another's; it reads the store
    # this often in case the heartbeat went to another process and no notice reached this one
    poll_interval_s: float = 3.0
    # a manual host's 安装 waits this long for its install command to be run and to end (Node Manager's 360 s),
    # reading the store this often for the end the command reported (the report may reach any process)
    manual_install_s: float = 360.0
    manual_poll_s: float = 2.0


TransportFactory = Callable[[HostWork, SecretBox, LogWriter], Transport]


class StepContext:
    """One host's pipeline state: its work item, the log, a lazily connected transport, the package (whose local
    file ``package_file`` gives, from the process's ``LocalPackages``), and the relay port of proxies."""

    def __init__(
        self,
        *,
        work: HostWork,
        db: Database,
        writer: LogWriter,
        box: SecretBox,
        package: ChosenPackage,
        packages: LocalPackages,
        timeouts: StepTimeouts,
        connect: TransportFactory,
        heartbeats: HeartbeatWaiters | None = None,
        heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S,
        worker_id: str | None = None,
        relay_port: int = RELAY_PORT,
    ) -> None:
        self.work = work
        self.db = db
        self.writer = writer
        self.box = box
        self.package = package
        self.packages = packages
        self.timeouts = timeouts
        self._connect = connect
        self.heartbeats = HeartbeatWaiters() if heartbeats is None else heartbeats
        self.heartbeat_interval_s = heartbeat_interval_s
        self.worker_id = worker_id
        self.relay_port = relay_port
        self._transport: Transport | None = None
        self._privilege: Privilege | None = None  # None until the first command decides (``_privileged``)
        self._hop_named_in: int | None = None  # the step whose log last said which hop the host is reached through
        self.step: PlannedRun | None = None
        self.step_started_at: datetime = utcnow()

    def log(self, level: str, message: str) -> None:
        assert self.step is not None
        for part in message.splitlines() or [""]:
            self.writer.line(self.work.record_id, self.step.index, level, part)

    def transport(self) -> Transport:
        """The host's transport, connected on first use; each step that uses it through a hop says which."""
        assert self.step is not None
        route = self.work.route
        if route is not None and route.hop is not None and self._hop_named_in != self.step.index:
            self._hop_named_in = self.step.index
            hop = route.hop
            self.log("INFO", f"经{hop.kind} {hop.address} 连接主机 {self.work.ip} (through {hop.kind} {hop.address})")
        if self._transport is None:
            self._transport = self._connect(self.work, self.box, self.writer)
        return self._transport

    @property
    def report_url(self) -> str:
        """Where the host's agent reports: through its proxy's relay (a P-Agent), to its install channel's relay
        when it has one, to the access point's outer URL (a proxy), else to the access point."""
        return report_url(self.work, self.relay_port)

    async def run(self, command: str, *, what: str, timeout_s: float | None = None) -> CommandResult:
        """Run a command, streaming its output into the log; raise CommandFailed (naming ``what``) on non-zero.
        It runs with the rights the install needs (``_privileged``: through ``sudo -n`` for an account allowed to)."""
        if await self._privileged():
            command = privilege.wrap(command, Privilege.SUDO)
        result = await self.transport().run(
            command, timeout_s=timeout_s or self.timeouts.command_s, on_line=lambda line: self.log("INFO", line)
        )
        if result.exit_status == MISSING_PYTHON_EXIT:
            raise CommandFailed(
                exit_status=result.exit_status,
                detail="python3 is not installed on the host; the agent needs a stock Python 3",
            )
        if not result.ok:
            raise CommandFailed(exit_status=result.exit_status, detail=f"{what} failed")
        return result

    async def put_text(self, text: str, dest: str) -> None:
        """Write ``text`` to ``dest`` on the host through a private local temp file (never a command line)."""
        fd, name = tempfile.mkstemp(prefix="nodeops-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            await self.put(Path(name), dest)
        finally:
            os.unlink(name)

    async def put(self, src: Path, dest: str) -> None:
        """Copy ``src`` to ``dest`` on the host. Through sudo, the account cannot write there: the file goes to a
        folder of its own under /tmp (mode 700), then ``sudo -n`` moves it in and gives it to root."""
        if not await self._privileged():
            await self.transport().put(src, dest, timeout_s=self.timeouts.upload_s)
            return
        made = await self.transport().run(
            f"umask 077; mktemp -d {UPLOAD_DIR_TEMPLATE}", timeout_s=self.timeouts.command_s
        )
        if not made.ok or not made.tail:
            raise CommandFailed(exit_status=made.exit_status, detail="creating an upload folder under /tmp failed")
        folder = made.tail[-1]
        staged = f"{folder}/{PurePosixPath(dest).name}"
        try:
            await self.transport().put(src, staged, timeout_s=self.timeouts.upload_s)
            await self.run(
                f"mv -f {shlex.quote(staged)} {shlex.quote(dest)} && chown 0:0 {shlex.quote(dest)}",
                what=f"moving the upload into {dest}",
            )
        finally:
            await self.transport().run(
                f"rm -f {shlex.quote(staged)}; rmdir {shlex.quote(folder)}", timeout_s=self.timeouts.command_s
            )

    async def _privileged(self) -> bool:
        """Whether commands go through ``sudo -n``: decided by the first command that reaches the host
        (``engine.privilege``), which raises PrivilegeRefused naming what is missing."""
        if self._privilege is None:
            self._privilege = await privilege.decide(self.transport(), self.work, timeout_s=self.timeouts.command_s)
            if self._privilege is not Privilege.AS_ACCOUNT:
                work = self.work
                self.log("INFO", f"账户 {work.account} 以 {self._privilege} 执行命令 (install path {work.setup_path})")
        return self._privilege is Privilege.SUDO

    async def package_file(self) -> Path:
        """The local file of the package this job pushes; raises PackageUnavailable if it cannot be had."""
        return (await self.packages.get(self.package)).path

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    @property
    def expected_version(self) -> str:
        """The agent version the host should report: the pushed package's when this job installs or
        upgrades, else the version installed before the job."""
        pushes = {StepCode.INSTALL.value, StepCode.RUN_UPGRADE_SCRIPT.value}
        if any(step.code in pushes for step in self.work.steps) or not self.work.agent_version:
            return self.package.version
        return self.work.agent_version

    @property
    def home(self) -> str:
        return shlex.quote(self.work.setup_path)

    def agent(self, command: str) -> str:
        """The shell command running the installed agent's ``command``."""
        script = shlex.quote(f"{self.work.setup_path}/{AGENT_SCRIPT}")
        return f"{_REQUIRE_PYTHON} python3 {script} {command} --home {self.home}"


_REQUIRE_PYTHON = f"command -v python3 >/dev/null 2>&1 || exit {MISSING_PYTHON_EXIT};"


def report_url(work: HostWork, relay_port: int) -> str:
    """Where a host's agent reports (``StepContext.report_url``); a manual host's install command calls there
    too, so one in a cloud area goes through its proxy's relay."""
    route = work.route
    if route is not None and route.channel is not None:
        return route.channel.proxy_address or work.server_url
    if route is not None and route.hop is not None:
        return f"http://{_host_port(route.hop.inner_address, relay_port)}"
    if work.node_type == proxies.PROXY:
        return work.outer_server_url or work.server_url
    return work.server_url


Step = Callable[[StepContext], Awaitable[None]]


async def update_job_status(ctx: StepContext) -> None:
    ctx.log("INFO", f"任务 {ctx.work.job_id} 主机 {ctx.work.ip} 状态已更新")


async def register_host(ctx: StepContext) -> None:
    w = ctx.work
    ctx.log("INFO", f"主机 {w.ip} (bk_host_id {w.bk_host_id}, bk_cloud_id {w.bk_cloud_id}, {w.os_type}) 已登记")


async def query_password(ctx: StepContext) -> None:
    w = ctx.work
    if w.is_manual and any(step.code == StepCode.INSTALL.value for step in w.steps):
        ctx.log("INFO", "手动安装 (is_manual): 无需登录信息, 安装命令由用户在主机上执行")
        return
    if w.transport == "local":
        ctx.log("INFO", "本机执行 (transport local), 无需登录信息")
        return
    if w.password_enc is None and w.key_enc is None:
        raise AuthFailed("登录认证信息已被清空 (no password or key kept for this host); start a new job with them")
    if w.credentials_expire_at is not None and w.credentials_expire_at <= utcnow():
        raise AuthFailed("登录认证信息已过期 (credentials past their retention); start a new job with them")
    ctx.log("INFO", f"已获取 {w.account}@{w.ip}:{w.ssh_port} 的登录信息 ({w.auth_type})")


async def choose_ap(ctx: StepContext) -> None:
    ctx.log("INFO", f"已选择接入点 {ctx.work.server_url} 作为本次安装的接入点, 安装路径 {ctx.work.setup_path}")
    if ctx.report_url != ctx.work.server_url:
        ctx.log("INFO", f"Agent 上报地址为 {ctx.report_url}")


async def install(ctx: StepContext) -> None:
    """Push the package, unpack it into the install path, write the config, start the daemon; a host not
    reached directly says first which proxy or jump server (and install channel) it is reached through."""
    if ctx.work.is_manual:
        await install_manually(ctx)
        return
    route = ctx.work.route
    if route is not None:
        if route.channel is not None:
            ctx.log("INFO", f"选择的安装通道为: {route.channel.name}")
        if route.hop is not None:
            ctx.log("INFO", f"主机的上游节点为: {route.hop.inner_address}")
            ctx.log("INFO", f"已选择 {route.hop.address} 作为本次安装的跳板机")
    await _set_agent(ctx, status="INSTALLING", clear_heartbeat=True)
    await ctx.run(f"{_REQUIRE_PYTHON} mkdir -p {ctx.home}", what="creating the install path")
    await ctx.run(  # a reinstall replaces a running agent: stop it first, or the old one keeps reporting
        f"if [ -f {ctx.home}/{AGENT_SCRIPT} ]; then {ctx.agent('stop')}; fi", what="stopping the previous agent"
    )
    await _push_and_unpack(ctx)
    await _write_config(ctx)
    await _check_access_point(ctx)
    await _start_agent(ctx, "start", what="starting the agent")


async def install_manually(ctx: StepContext) -> None:
    """A manual host: wait until someone runs the command get_job_commands gives and it reports its end.

    The command's lines reach this step's log through the report API in whichever process takes them; that API
    records the script's end with its token (``store.install_tokens``), which this step reads every
    ``manual_poll_s``: no notice is needed, a wait of seconds for a person is no cost. A reported failure fails the
    step with the script's reason; nobody running it within ``manual_install_s`` fails it with 安装超时.
    """
    route = ctx.work.route
    channel = route.channel.name if route is not None and route.channel is not None else "默认通道"
    ctx.log("INFO", f"选择的安装通道为: {channel}")
    await _set_agent(ctx, status="INSTALLING", clear_heartbeat=True)
    ctx.log("INFO", "等待手动执行安装命令")
    ctx.log("INFO", f"(get_job_commands gives the command; waiting at most {ctx.timeouts.manual_install_s:g} s)")
    assert ctx.step is not None
    record_id, step_index = ctx.work.record_id, ctx.step.index

    def read_outcome() -> tuple[str, str | None] | None:
        with ctx.db.session() as session:
            return install_tokens.outcome_of(session, record_id=record_id, step_index=step_index)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.timeouts.manual_install_s
    while (outcome := await ctx.db.call(read_outcome)) is None:
        remaining_s = deadline - loop.time()
        if remaining_s <= 0:
            raise TransportError(
                f"安装超时: the install command was not run, or did not report its end, within "
                f"{ctx.timeouts.manual_install_s:g} s; run the command from get_job_commands on the host, then retry"
            )
        await asyncio.sleep(min(ctx.timeouts.manual_poll_s, remaining_s))
    status, detail = outcome
    if status != install_tokens.DONE:
        raise TransportError(f"手动安装失败: {detail or 'the install command failed'}")


async def push_upgrade_package(ctx: StepContext) -> None:
    await ctx.run(f"test -f {ctx.home}/{AGENT_SCRIPT}", what="finding the installed agent")
    await ctx.put(await ctx.package_file(), _staged(ctx))
    ctx.log("INFO", f"已下发 nodeops-agent {ctx.package.version} ({ctx.package.sha256[:12]})")


async def run_upgrade_script(ctx: StepContext) -> None:
    await _set_agent(ctx, status="UPGRADING", clear_heartbeat=True)
    await ctx.run(ctx.agent("stop"), what="stopping the agent")
    await _unpack(ctx)
    await _start_agent(ctx, "start", what="starting the new agent")


async def check_agent_status(ctx: StepContext) -> None:
    await ctx.run(ctx.agent("status"), what="the agent is not running (Agent 状态【异常】)")
    ctx.log("INFO", "Agent 状态【正常】")


async def render_and_push_config(ctx: StepContext) -> None:
    await _write_config(ctx)


async def reload_agent(ctx: StepContext) -> None:
    await _set_agent(ctx, status="RELOADING", clear_heartbeat=True)
    await _start_agent(ctx, "restart", what="reloading the agent")


async def restart_agent(ctx: StepContext) -> None:
    await _set_agent(ctx, status="RESTARTING", clear_heartbeat=True)
    await _start_agent(ctx, "restart", what="restarting the agent")


AGENT_FILES = (AGENT_SCRIPT, "VERSION", "agent.json", "agent.pid", "agent.log", "agent.log.1")


async def uninstall_agent(ctx: StepContext) -> None:
    """Stop the agent and remove the files it owns, then its folder if nothing else is left in it.

    Never ``rm -rf`` the install path: it is the caller's choice, and may hold other things.
    """
    files = " ".join(AGENT_FILES) + " .nodeops-agent-*.tgz"
    await ctx.run(
        f"if [ -f {ctx.home}/{AGENT_SCRIPT} ]; then {ctx.agent('stop')}; fi; "
        f"cd {ctx.home} 2>/dev/null || exit 0; rm -f {files}; cd / && rmdir {ctx.home} 2>/dev/null; true",
        what="removing the agent",
    )
    ctx.log("INFO", f"已卸载 Agent 并删除其文件 ({ctx.work.setup_path})")


async def update_process_status(ctx: StepContext) -> None:
    await _set_agent(ctx, status="NOT_INSTALLED", clear_heartbeat=True)
    ctx.log("INFO", "主机进程状态已更新为 NOT_INSTALLED")


async def query_agent_status(ctx: StepContext) -> None:
    """Wait for a heartbeat of the expected version sent after the agent was (re)started.

    The steps that (re)start the agent clear the host's last heartbeat first, so any heartbeat in the store is
    new. The heartbeat API of this process wakes the step at once, and so does a heartbeat notice from another
    process where a listener routes them (``engine.notices``); the store is read when the listener may have
    missed some, and every ``poll_interval_s`` whatever happens.
    """
    expected = ctx.expected_version
    ctx.log("INFO", f"期望的 Agent 状态为 RUNNING, 版本 {expected}; 等待心跳 (最长 {ctx.timeouts.heartbeat_s:g} 秒)")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.timeouts.heartbeat_s
    host_id, paramstyle = ctx.work.bk_host_id, ctx.db.paramstyle

    def read_state(cur: ReadHandle) -> tuple[str | None, bool]:
        return agent_rows.heartbeat_state(cur, paramstyle, bk_host_id=host_id)

    with ctx.heartbeats.watch(host_id) as watch:  # before the read: a heartbeat between the two is not missed
        version, seen = await ctx.db.read(read_state)
        while not (seen and version == expected):
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                got = f"last heartbeat version {version}" if seen else "no heartbeat"
                await _log_agent_tail(ctx)
                raise TransportError(f"查询 Agent 状态超时: {got} within {ctx.timeouts.heartbeat_s:g} s")
            woken = await watch.wait(min(ctx.timeouts.poll_interval_s, remaining_s))
            if woken and not watch.take_missed():
                version, seen = (expected if expected in watch.versions else watch.versions[-1]), True
            else:  # the backstop, or heartbeats may have been missed: the store knows
                version, seen = await ctx.db.read(read_state)
    ctx.log("INFO", f"Agent 心跳正常, 版本 {version}")


async def run_script_hook(ctx: StepContext) -> None:
    """Run one of the job's script hooks (the step's name says which): its script pushed into a private folder
    made for it (never on a command line), run by ``sh`` with the login account's rights, its output streamed into
    the log; a non-zero exit fails the step, hence the host. The folder is removed whatever happens."""
    assert ctx.step is not None
    name = hook_name_of(ctx.step.name)
    script = await ctx.db.call(lambda: _hook_script(ctx.db, job_id=ctx.work.job_id, name=name))
    if script is None:
        raise CommandFailed(exit_status=-1, detail=f"the job has no script hook named {name}")
    made = await ctx.transport().run(
        "umask 077 && mktemp -d /tmp/nodeops-hook.XXXXXXXX", timeout_s=ctx.timeouts.command_s
    )
    folder = made.tail[-1].strip() if made.ok and made.tail else ""
    if not folder.startswith("/tmp/nodeops-hook."):
        raise CommandFailed(exit_status=made.exit_status, detail="creating a private folder for the hook failed")
    quoted = shlex.quote(folder)
    try:
        await ctx.put_text(script, f"{folder}/{HOOK_FILE}")
        ctx.log(
            "INFO", f"执行脚本钩子 {name} ({len(script.encode())} bytes, sh, as {ctx.work.account or 'this account'})"
        )
        result = await ctx.transport().run(
            f"cd {quoted} && NODEOPS_HOOK_NAME={shlex.quote(name)} NODEOPS_SETUP_PATH={ctx.home} sh ./{HOOK_FILE}",
            timeout_s=ctx.timeouts.command_s,
            on_line=lambda line: ctx.log("INFO", line),
        )
        if not result.ok:
            raise CommandFailed(exit_status=result.exit_status, detail=f"script hook {name} failed")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(ctx.transport().run(f"rm -rf {quoted}", timeout_s=ctx.timeouts.command_s))


def _hook_script(db: Database, *, job_id: int, name: str) -> str | None:
    with db.session() as session:
        return pipelines.script_hook(session, job_id=job_id, name=name)


STEPS: dict[StepCode, Step] = {
    StepCode.UPDATE_JOB_STATUS: update_job_status,
    StepCode.REGISTER_HOST: register_host,
    StepCode.QUERY_PASSWORD: query_password,
    StepCode.CHOOSE_AP: choose_ap,
    StepCode.INSTALL: install,
    StepCode.PUSH_UPGRADE_PACKAGE: push_upgrade_package,
    StepCode.RUN_UPGRADE_SCRIPT: run_upgrade_script,
    StepCode.CHECK_AGENT_STATUS: check_agent_status,
    StepCode.RENDER_AND_PUSH_CONFIG: render_and_push_config,
    StepCode.RELOAD_AGENT: reload_agent,
    StepCode.RESTART_AGENT: restart_agent,
    StepCode.UNINSTALL_AGENT: uninstall_agent,
    StepCode.UNINSTALL_PROXY: uninstall_agent,
    StepCode.QUERY_AGENT_STATUS: query_agent_status,
    StepCode.QUERY_PROXY_STATUS: query_agent_status,
    StepCode.UPDATE_PROCESS_STATUS: update_process_status,
    StepCode.RUN_SCRIPT_HOOK: run_script_hook,
}


async def _check_access_point(ctx: StepContext) -> None:
    """From the host, as the login account (its environment is what a person checking by hand has), POST to the
    URL the agent will report to; fail at once, naming the URL and the error, rather than after the heartbeat's
    timeout (``engine.diagnoses``)."""
    url = ctx.report_url.rstrip("/") + PING_PATH
    ctx.log("INFO", f"检查主机到接入点的连通性 (checking from the host that POST {url} answers)")
    lines: list[str] = []

    def seen(line: str) -> None:
        lines.append(line)
        ctx.log("INFO" if line == diagnoses.AP_CHECK_OK else "WARNING", line)

    timeout_s = diagnoses.AP_CHECK_TIMEOUT_S
    command = f"{_REQUIRE_PYTHON} python3 -c {shlex.quote(diagnoses.AP_CHECK_SCRIPT)} {shlex.quote(url)} {timeout_s:g}"
    result = await ctx.transport().run(command, timeout_s=timeout_s + ctx.timeouts.command_s, on_line=seen)
    if result.exit_status == MISSING_PYTHON_EXIT:
        raise CommandFailed(exit_status=result.exit_status, detail="python3 is not installed on the host")
    if not result.ok:
        failed = [
            line.removeprefix(diagnoses.AP_CHECK_FAILED) for line in lines if line.startswith(diagnoses.AP_CHECK_FAILED)
        ]
        error = failed[-1] if failed else f"the check exited {result.exit_status}"
        raise AccessPointUnreachable(
            f"主机无法访问接入点 (the host cannot reach the access point): POST {url}: {error}"
        )


async def _start_agent(ctx: StepContext, command: str, *, what: str) -> None:
    """(Re)start the agent; if it does not come up, its own log's tail says why."""
    try:
        await ctx.run(ctx.agent(command), what=what)
    except CommandFailed:
        await _log_agent_tail(ctx)
        raise


async def _log_agent_tail(ctx: StepContext) -> None:
    """Append the last lines of the agent's own log on the host (the agent masks its token there itself)."""
    lines = diagnoses.AGENT_LOG_TAIL_LINES
    ctx.log(
        "WARNING", f"Agent 日志 {ctx.work.setup_path}/agent.log 的最后 {lines} 行 (the tail of the agent's own log):"
    )
    try:
        await ctx.run(
            f"tail -n {lines} {ctx.home}/agent.log 2>/dev/null || echo '(no agent.log)'", what="reading agent.log"
        )
    except TransportError as exc:
        ctx.log("WARNING", f"无法读取 agent.log (the agent's log could not be read): {exc}")


def _staged(ctx: StepContext) -> str:
    return f"{ctx.work.setup_path}/.nodeops-agent-{ctx.package.version}.tgz"


async def _push_and_unpack(ctx: StepContext) -> None:
    await ctx.put(await ctx.package_file(), _staged(ctx))
    ctx.log("INFO", f"已下发 nodeops-agent {ctx.package.version} 到 {ctx.work.setup_path}")
    await _unpack(ctx)


async def _unpack(ctx: StepContext) -> None:
    staged = shlex.quote(_staged(ctx))
    await ctx.run(
        f"tar -xzf {staged} --strip-components=1 -C {ctx.home} && rm -f {staged}", what="unpacking the package"
    )
    # the new version is recorded now, before the new agent reports it: a heartbeat the old agent sent before it
    # stopped must not pass for the new one, so the last heartbeat is cleared again
    await _set_agent(ctx, status="INSTALLED", version=ctx.package.version, clear_heartbeat=True)


async def _write_config(ctx: StepContext) -> None:
    """A fresh per-host token each time: its hash is stored, the token itself only reaches the host. A proxy's
    agent also relays its area's agents (``relay``, on its inner address); a host reached through a hop has it
    recorded as its upstream node."""
    token = secrets.token_urlsafe(32)
    ctx.writer.add_secret(token)
    server_url = ctx.report_url
    config = agent_config(ctx.work, token, server_url, ctx.heartbeat_interval_s, ctx.relay_port)
    await ctx.put_text(json.dumps(config), f"{ctx.work.setup_path}/agent.json")
    await ctx.run(f"chmod 600 {ctx.home}/agent.json", what="protecting the config")
    await _set_agent(
        ctx,
        status="CONFIGURED",
        token_hash=hashlib.sha256(token.encode()).digest(),
        heartbeat_interval_s=ctx.heartbeat_interval_s,
    )
    ctx.log("INFO", f"已写入 Agent 配置: 上报地址 {server_url}, 主机 {ctx.work.bk_host_id}")
    if "relay" in config:
        ctx.log("INFO", f"Proxy 转发地址 {_host_port(ctx.work.ip, ctx.relay_port)} (relay for the area's agents)")
    route = ctx.work.route
    if route is not None and route.hop is not None:
        nodes = [route.hop.inner_address]
        await ctx.db.call(lambda: proxies.set_upstream_nodes(ctx.db, bk_host_id=ctx.work.bk_host_id, nodes=nodes))


def agent_config(work: HostWork, token: str, server_url: str, interval_s: float, relay_port: int) -> dict[str, object]:
    """The host's agent.json: where and as whom it reports, how often; a proxy's agent also relays its area's."""
    config: dict[str, object] = {
        "server_url": server_url,
        "bk_host_id": work.bk_host_id,
        "instance_id": work.instance_id,
        "token": token,
        "interval_s": interval_s,
    }
    if work.node_type == proxies.PROXY:
        config["relay"] = {"listen": _host_port(work.ip, relay_port)}
    return config


def _host_port(address: str, port: int) -> str:
    """``address:port``, an IPv6 address in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


async def _set_agent(
    ctx: StepContext,
    *,
    status: str,
    version: str | None = None,
    token_hash: bytes | None = None,
    heartbeat_interval_s: float | None = None,
    clear_heartbeat: bool = False,
) -> None:
    await ctx.db.call(
        lambda: agent_rows.set_agent(
            ctx.db,
            bk_host_id=ctx.work.bk_host_id,
            status=status,
            version=version,
            token_hash=token_hash,
            heartbeat_interval_s=heartbeat_interval_s,
            clear_heartbeat=clear_heartbeat,
            worker_id=ctx.worker_id,
        )
    )
