"""Manual installs (network spec §16): get_job_commands, and the two agent-API calls its command makes.

- ``commands``: ``GET /api/job/{job_id}/get_job_commands/?bk_host_id=``. ``{"status": "PENDING"}`` until the host's
  安装 step runs, then Node Manager's ``solutions`` with a one-line command holding a new one-time token
  (``store.install_tokens``), valid ``install_token_ttl_s``.
- ``script``: ``POST /api/agent/install/script/`` ``{"token"}``: spends the command's token (exactly once, however
  many try at once) and answers the install script for the host: POSIX sh, the agent package and its config in it,
  and a token of its own to report with.
- ``report``: ``POST /api/agent/install/report/`` ``{"token", "lines", "status", "exit_code"}``: the script's
  output lines appended to the 安装 step's log (masked and cut as every line), and its end (``DONE``/``FAILED``)
  recorded for the step waiting on it (``engine.steps.install_manually``).

Both agent calls are POSTs under ``/api/agent/``, so a proxy's relay forwards them: a host in a cloud area calls
through its proxy (the address ``engine.steps.report_url`` gives its agent). Tokens, the agent's among them,
never reach a log: only their hashes are stored, and the script's lines are masked with its own token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shlex
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from nodeops.domain.contract import Contract, Field, Kind
from nodeops.domain.instance_id import MAX_HOST_ID
from nodeops.domain.plans import StepCode
from nodeops.domain.status import Status
from nodeops.engine import packages
from nodeops.engine.logwriter import MAX_LINE_CHARS, format_lines, line_stamp
from nodeops.engine.steps import AGENT_SCRIPT, agent_config, report_url
from nodeops.errors import HostNotExists, InstallTokenRefused, InvalidInput, JobNotFound, PackageUnavailable
from nodeops.service.auth import Caller
from nodeops.service.job_details import job_access, parse_job_id
from nodeops.service.job_launch import AGENT_VERSION_PARAM
from nodeops.settings import Settings
from nodeops.store import agents as agent_rows
from nodeops.store import install_tokens, job_reads, jobs, proxies
from nodeops.store import packages as package_rows
from nodeops.store.db import Database, Session
from nodeops.store.models import Host
from nodeops.store.pipelines import HostWork, record_work

SCRIPT_PATH = "/api/agent/install/script/"
REPORT_PATH = "/api/agent/install/report/"
MAX_TOKEN_CHARS = 128  # a token is 43 characters; anything much longer is not one
MAX_REPORT_LINES = 200  # lines of one report; the script sends at most REPORT_BATCH_LINES
REPORT_BATCH_LINES = 50  # the script reports every this many lines...
REPORT_BATCH_S = 0.5  # ...or this often, whichever comes first
REPORT_OUTCOMES = ("RUNNING", install_tokens.DONE, install_tokens.FAILED)
PENDING = {"status": "PENDING"}

GET_JOB_COMMANDS = Contract(
    "GetJobCommands",
    "get_job_commands: the command installing a manual host of the job, once its 安装 step runs.",
    (
        Field(name="bk_host_id", kind=Kind.INT, required=True, minimum=1, maximum=MAX_HOST_ID, description="The host."),
        Field(
            name="is_uninstall",
            kind=Kind.BOOL,
            default=False,
            description="Node Manager's uninstall command; nodeops installs manual hosts only (false).",
        ),
    ),
)
SCRIPT_REQUEST = Contract(
    "InstallScriptRequest",
    "The install command's call: its one-time token.",
    (Field(name="token", kind=Kind.TEXT, required=True, description="The token of the command."),),
    documented=(),
)
REPORT_REQUEST = Contract(
    "InstallReportRequest",
    "The install script's report: lines of its output, and at the end its outcome.",
    (
        Field(name="token", kind=Kind.TEXT, required=True, description="The script's own token."),
        Field(name="lines", kind=Kind.VALUE, description=f"Output lines (strings), at most {MAX_REPORT_LINES}."),
        Field(
            name="status",
            kind=Kind.CHOICE,
            default="RUNNING",
            choices=REPORT_OUTCOMES,
            description="RUNNING while it runs; DONE or FAILED once it ended.",
        ),
        Field(name="exit_code", kind=Kind.INT, minimum=0, maximum=255, description="The script's exit status."),
    ),
    documented=(),
)
REFUSALS = {
    install_tokens.Refusal.UNKNOWN: "token 非法: no such install token; get a new command from get_job_commands",
    install_tokens.Refusal.USED: "token 已使用: this install command was already run (a token works once); "
    "get a new command from get_job_commands",
    install_tokens.Refusal.EXPIRED: "token 已过期: the install token has expired; get a new command from "
    "get_job_commands",
}


@dataclass(frozen=True, slots=True)
class _Target:
    """The host's record in the job and its 安装 step."""

    work: HostWork
    step_index: int
    step_status: str


class ManualInstall:
    """get_job_commands and the manual install's agent calls; cheap to build."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.tz: tzinfo = settings.tz

    # --- get_job_commands -----------------------------------------------------------------------------------

    async def commands(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """PENDING until the host's 安装 step runs, then the solutions with a new one-time command."""
        problems: dict[str, str] = {}
        job_id = parse_job_id(params, problems)
        values = GET_JOB_COMMANDS.gather(params, problems)
        if values["is_uninstall"] is True:
            problems["is_uninstall"] = "nodeops gives install commands only; uninstall with operate_job"
        GET_JOB_COMMANDS.check(problems)
        bk_host_id = values.integer("bk_host_id")
        assert bk_host_id is not None
        return await self.db.call(lambda: self._commands(caller, job_id, bk_host_id))

    def _commands(self, caller: Caller, job_id: int, bk_host_id: int) -> dict[str, Any]:
        with self.db.session() as session:
            job = job_reads.find_job(session, job_id)
            if job is None:
                raise JobNotFound(job_id=job_id)
            caller.require_job_view(job_access(job))
            if session.get(Host, bk_host_id) is None:
                raise HostNotExists(f"主机不存在: no host with bk_host_id {bk_host_id}")
            record_id = install_tokens.host_record(session, job_id=job_id, bk_host_id=bk_host_id)
            if record_id is None:
                raise HostNotExists(f"主机不存在: host {bk_host_id} is not in job {job_id}")
            target = _target(session, record_id)
            if not target.work.is_manual:
                raise InvalidInput.field(
                    "bk_host_id", f"host {bk_host_id} is installed over SSH, not by hand (is_manual false)"
                )
            if target.step_status not in (Status.RUNNING.value, Status.SUCCESS.value):
                return dict(PENDING)
            token = install_tokens.mint(
                session,
                record_id=record_id,
                step_index=target.step_index,
                purpose=install_tokens.COMMAND,
                ttl_s=self.settings.install_token_ttl_s,
            )
            url = report_url(target.work, self.settings.proxy_relay_port)
        return {"solutions": [_solution(one_liner(url, token, record_id, as_root=_is_root(target.work)))]}

    # --- the command's calls --------------------------------------------------------------------------------

    async def script(self, body: object) -> str:
        """Spend the command's token and answer the install script; InstallTokenRefused (3800403) says why not."""
        values = SCRIPT_REQUEST.read(_body(body))
        token = _token(values["token"])
        return await self.db.call(lambda: self._script(token))

    def _script(self, token: str) -> str:
        agent_token = secrets.token_urlsafe(install_tokens.TOKEN_BYTES)
        with self.db.session() as session:
            spent = install_tokens.consume(session, token=token, purpose=install_tokens.COMMAND)
            if isinstance(spent, install_tokens.Refusal):
                raise InstallTokenRefused(REFUSALS[spent])
            target = _target(session, spent.record_id)
            if target.step_status != Status.RUNNING.value or target.step_index != spent.step_index:
                raise InstallTokenRefused(f"安装 已结束 (the install step is {target.step_status}); retry the job")
            if install_tokens.script_started(session, spent):
                raise InstallTokenRefused("安装命令已在执行: this host's install script was already handed out")
            install_tokens.retire_commands(session, spent)
            report_token = install_tokens.mint(
                session,
                record_id=spent.record_id,
                step_index=spent.step_index,
                purpose=install_tokens.REPORT,
                ttl_s=self.settings.install_token_ttl_s,
            )
            job = job_reads.find_job(session, target.work.job_id)
            version = None if job is None else job.step_params.get(AGENT_VERSION_PARAM)
            chosen = packages.choose(self.db, version if isinstance(version, str) else None)
            stored = package_rows.content_of(session, chosen.sha256)
            content = b"" if stored is None else bytes(stored.content)
            if hashlib.sha256(content).hexdigest() != chosen.sha256:  # before the token is spent for nothing
                raise PackageUnavailable(
                    f"agent package {chosen.version} has no stored bytes; `nodeops agent build --version "
                    f"{chosen.version}`, then run the command again"
                )
        url = report_url(target.work, self.settings.proxy_relay_port)
        interval_s = self.settings.agent_heartbeat_interval_s
        config = agent_config(target.work, agent_token, url, interval_s, self.settings.proxy_relay_port)
        agent_rows.set_agent(
            self.db,
            bk_host_id=target.work.bk_host_id,
            status="CONFIGURED",
            version=chosen.version,
            token_hash=hashlib.sha256(agent_token.encode()).digest(),
            heartbeat_interval_s=interval_s,
        )
        route = target.work.route
        if route is not None and route.hop is not None:  # as an SSH install records it (engine.steps)
            nodes = [route.hop.inner_address]
            proxies.set_upstream_nodes(self.db, bk_host_id=target.work.bk_host_id, nodes=nodes)
        return install_script(
            work=target.work,
            report_to=_join(url, REPORT_PATH),
            report_token=report_token,
            config=config,
            package=content,
            version=chosen.version,
        )

    async def report(self, body: object) -> dict[str, Any]:
        """Append the script's lines to the step's log, and record its end; refused for a token not usable or
        a step that has ended."""
        values = REPORT_REQUEST.read(_body(body))
        token = _token(values["token"])
        lines = _lines(values["lines"])
        status = values.text("status") or "RUNNING"
        exit_code = values.integer("exit_code")
        return await self.db.call(lambda: self._report(token, lines, status, exit_code))

    def _report(self, token: str, lines: list[str], status: str, exit_code: int | None) -> dict[str, Any]:
        with self.db.session() as session:
            found = install_tokens.active(session, token=token, purpose=install_tokens.REPORT)
            if isinstance(found, install_tokens.Refusal):
                if found is install_tokens.Refusal.USED:
                    raise InstallTokenRefused("安装 已结束: this install script already reported its end")
                raise InstallTokenRefused(REFUSALS[found])
            step_status = install_tokens.step_status(session, found)
            if step_status != Status.RUNNING.value:
                raise InstallTokenRefused(f"安装 已结束 (the install step is {step_status}); its log is closed")
            stamp = line_stamp(self.tz)
            text = [row for line in lines for row in format_lines(line, level="INFO", stamp=stamp, secrets=(token,))]
            if text:
                jobs.write_progress(self.db, session, chunks=[(found.record_id, found.step_index, "\n".join(text))])
            if status != "RUNNING":
                last = next((line for line in reversed(lines) if line.strip()), "")
                detail = f"exit status {exit_code if exit_code is not None else '?'}" + (f": {last}" if last else "")
                install_tokens.finish(session, token=token, outcome=status, detail=detail[:MAX_LINE_CHARS])
        return {"lines": len(text)}


# --- the command and the script -----------------------------------------------------------------------------


def one_liner(url: str, token: str, record_id: int, *, as_root: bool) -> str:
    """The command a person runs on the host: fetch the script (spending the token) into a private file and run
    it; an answer that is not a script (the envelope refusing the token) is shown instead."""
    body = json.dumps({"token": token})
    run = "sh" if as_root else "sudo sh"
    return (
        f"( umask 077; F=$(mktemp /tmp/nodeops-install-{record_id}.XXXXXX) && curl -sS --connect-timeout 5 "
        f"-X POST -H 'Content-Type: application/json' -d {shlex.quote(body)} {shlex.quote(_join(url, SCRIPT_PATH))} "
        f'-o "$F" && if head -n 1 "$F" | grep -q \'^#!/bin/sh\'; then {run} "$F"; '
        f'else cat "$F"; echo; rm -f "$F"; false; fi )'
    )


def install_script(
    *, work: HostWork, report_to: str, report_token: str, config: dict[str, object], package: bytes, version: str
) -> str:
    """The install script: POSIX sh; it deletes itself, unpacks the package into the install path, writes the
    agent's config and starts it, while a python3 reporter (the agent needs python3 anyway) streams each output
    line to the report API in batches and reports the end; it exits with the install's status."""
    home = shlex.quote(work.setup_path)
    encoded = "\n".join(textwrap.wrap(base64.b64encode(package).decode("ascii"), 76))
    return _SCRIPT.format(
        ip=work.ip,
        bk_host_id=work.bk_host_id,
        job_id=work.job_id,
        report_to=shlex.quote(report_to),
        token=shlex.quote(report_token),
        home=home,
        config=json.dumps(config),
        package=encoded,
        version=version,
        agent=AGENT_SCRIPT,
        server_url=config["server_url"],
        batch_lines=REPORT_BATCH_LINES,
        batch_s=REPORT_BATCH_S,
        max_chars=MAX_LINE_CHARS,
    )


_SCRIPT = """#!/bin/sh
# nodeops: manual install of host {ip} (bk_host_id {bk_host_id}, job {job_id}). For one run: it deletes itself.
rm -f "$0"
umask 077
NODEOPS_REPORT_URL={report_to}
NODEOPS_REPORT_TOKEN={token}
export NODEOPS_REPORT_URL NODEOPS_REPORT_TOKEN
if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 is not installed on the host; the agent needs a stock Python 3" >&2
    exit 97
fi
WORK=$(mktemp -d "${{TMPDIR:-/tmp}}/nodeops-install.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/agent.json" <<'NODEOPS_END'
{config}
NODEOPS_END
cat > "$WORK/package.b64" <<'NODEOPS_END'
{package}
NODEOPS_END
cat > "$WORK/install.sh" <<'NODEOPS_END'
set -e
home=$1
work=$2
echo "安装路径 $home"
mkdir -p "$home"
if [ -f "$home/{agent}" ]; then python3 "$home/{agent}" stop --home "$home"; fi
python3 -c 'import base64, sys; sys.stdout.buffer.write(base64.b64decode(open(sys.argv[1], "rb").read()))' \\
    "$work/package.b64" > "$work/package.tgz"
tar -xzf "$work/package.tgz" --strip-components=1 -C "$home"
echo "已解压 nodeops-agent {version} 到 $home"
cp "$work/agent.json" "$home/agent.json"
chmod 600 "$home/agent.json"
echo "已写入 Agent 配置: 上报地址 {server_url}, 主机 {bk_host_id}"
python3 "$home/{agent}" start --home "$home"
NODEOPS_END
python3 - "$WORK" {home} <<'NODEOPS_END'
import json, os, queue, subprocess, sys, threading, time, urllib.request

work, home = sys.argv[1], sys.argv[2]
url, token = os.environ["NODEOPS_REPORT_URL"], os.environ.pop("NODEOPS_REPORT_TOKEN")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))  # straight to the service or relay


def post(lines, status="RUNNING", exit_code=None):
    body = {{"token": token, "lines": lines, "status": status}}
    if exit_code is not None:
        body["exit_code"] = exit_code
    request = urllib.request.Request(
        url, json.dumps(body).encode("utf-8"), {{"Content-Type": "application/json"}}, method="POST"
    )
    error = None
    for _ in range(3):
        try:
            with opener.open(request, timeout=10) as answer:
                reply = json.loads(answer.read(65536) or b"{{}}")
        except (OSError, ValueError) as exc:
            error = exc
            time.sleep(1)
            continue
        if not reply.get("result"):
            print("nodeops: report refused: %s" % reply.get("message"), file=sys.stderr)
        return
    print("nodeops: cannot report to %s: %s" % (url, error), file=sys.stderr)


child = subprocess.Popen(
    ["sh", os.path.join(work, "install.sh"), home, work],
    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
)
lines = queue.Queue()


def read():
    for raw in child.stdout:
        lines.put(raw.decode("utf-8", "replace").rstrip("\\r\\n")[:{max_chars}])
    lines.put(None)


threading.Thread(target=read, daemon=True).start()
pending, sent_at = [], time.monotonic()
while True:
    try:
        line = lines.get(timeout={batch_s})
    except queue.Empty:
        line = ""
    if line is None:
        break
    if line:
        print(line, flush=True)
        pending.append(line)
    if pending and (len(pending) >= {batch_lines} or time.monotonic() - sent_at >= {batch_s}):
        post(pending)
        pending, sent_at = [], time.monotonic()
code = child.wait()
if code:
    pending.append("安装失败: the install exited with status %d" % code)
else:
    pending.append("安装完成, 等待 Agent 心跳")
print(pending[-1], flush=True)
post(pending, "DONE" if code == 0 else "FAILED", code)
sys.exit(code)
NODEOPS_END
"""


def _solution(command: str) -> dict[str, Any]:
    """Node Manager's ``solutions[]`` shape (network spec §16.3): one shell solution, one step, one content."""
    content = {
        "name": "run_cmd",
        "text": command,
        "description": "下载并执行安装脚本",
        "child_dir": None,
        "show_description": False,
        "always_download": False,
    }
    return {
        "type": "shell",
        "description": "通过 sh 进行安装",
        "steps": [{"type": "commands", "description": "执行安装命令", "contents": [content]}],
        "target_host_solutions": [],
    }


def _target(session: Session, record_id: int) -> _Target:
    """The record's host and its 安装 step, as the engine reads them."""
    work = record_work(session, record_id=record_id)
    if not isinstance(work, HostWork):
        raise HostNotExists(f"主机不存在: the host of record {record_id} is gone, or its access point")
    step = next((s for s in work.steps if s.code == StepCode.INSTALL.value), None)
    if step is None:
        raise InvalidInput.field("bk_host_id", "the host's job has no 安装 step")
    return _Target(work=work, step_index=step.index, step_status=step.status)


def _is_root(work: HostWork) -> bool:
    return work.account in (None, "", "root")


def _join(url: str, path: str) -> str:
    return url.rstrip("/") + path


def _body(body: object) -> Mapping[str, object]:
    if not isinstance(body, Mapping):
        raise InvalidInput.field("body", "must be a JSON object")
    return body


def _token(token: object) -> str:
    """The token as sent, when it may be one; anything else is refused as an unknown token."""
    if (
        not isinstance(token, str)
        or not token
        or len(token) > MAX_TOKEN_CHARS
        or not token.isascii()
        or not token.isprintable()
    ):
        raise InstallTokenRefused(REFUSALS[install_tokens.Refusal.UNKNOWN])
    return token


def _lines(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(line, str) for line in value):
        raise InvalidInput.field("lines", "must be a list of strings")
    if len(value) > MAX_REPORT_LINES:
        raise InvalidInput.field("lines", f"at most {MAX_REPORT_LINES} lines per report, not {len(value)}")
    return [line.replace("\x00", "") for line in value]
