"""``nodeops job install|operate|list|show|revoke|retry``: Node Manager's job APIs, from the command line.

A client of a running service over HTTP (see ``nodeops.cli.remote`` for the URL and identity), printing with
Rich: coloured statuses, a table of instances, and with ``--follow`` a live bar of the job's hosts until it ends.
Imports nothing from service/engine/store.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from nodeops.cli.context import console, err_console, state
from nodeops.cli.log import remote_failure
from nodeops.cli.remote import NotServed, Remote, RemoteError, resolve_identity, resolve_url
from nodeops.cli.render import ACTIVE, STATUS_STYLE, HostProgress, duration, statistics_summary, status_text

app = typer.Typer(help="Jobs: install, operate, list, show, revoke, retry, commands (a client of a running service).")
PENDING_EXIT = 2  # `job commands`: the host is not waiting for its command yet

ESB_JOB = "/api/c/compapi/v2/nodeman/api/job"
FOLLOW_POLL_S = 1.0
INSTALL_TYPES = ("INSTALL_AGENT", "REINSTALL_AGENT", "INSTALL_PROXY", "REINSTALL_PROXY", "REPLACE_PROXY")
OPERATE_TYPES = (
    "UPGRADE_AGENT",
    "RESTART_AGENT",
    "RELOAD_AGENT",
    "UNINSTALL_AGENT",
    "UPGRADE_PROXY",
    "RESTART_PROXY",
    "RELOAD_PROXY",
    "UNINSTALL_PROXY",
)
PASSWORD_ENV = "NODEOPS_HOST_PASSWORD"

UrlOption = typer.Option(None, "--url", envvar="NODEOPS_URL", help="The service (default: its own address).")
FollowOption = typer.Option(False, "--follow", "-f", help="Show the hosts' progress until the job ends.")


@contextmanager
def connected(ctx: typer.Context, url: str | None) -> Iterator[Remote]:
    """A Remote for this command; a RemoteError anywhere inside is printed and exits 1."""
    settings = state(ctx).settings
    try:
        remote = Remote(resolve_url(url, settings), resolve_identity(settings))
    except RemoteError as exc:
        raise remote_failure(exc) from None
    try:
        with remote:
            yield remote
    except RemoteError as exc:
        raise remote_failure(exc) from None


BatchSizeOption = typer.Option(None, "--batch-size", help="Hosts per rolling batch, in the order given.")
MaxFailOption = typer.Option(
    None, "--max-fail-percentage", help="Start no more hosts once more than this % of those started failed."
)
BatchIntervalOption = typer.Option(None, "--batch-interval", help="Seconds between one batch's end and the next.")


@app.command()
def install(
    ctx: typer.Context,
    host: list[str] = typer.Option([], "--host", help="Host IP (inner_ip); repeat for several."),
    biz: int | None = typer.Option(None, "--biz", help="bk_biz_id of the hosts."),
    cloud: int = typer.Option(0, "--cloud", help="bk_cloud_id of the hosts."),
    job_type: str = typer.Option("INSTALL_AGENT", "--job-type", help=f"One of {', '.join(INSTALL_TYPES)}."),
    outer_ip: str | None = typer.Option(None, "--outer-ip", help="Outer IP of a proxy (the service logs in there)."),
    replace_host_id: int | None = typer.Option(None, "--replace-host-id", help="REPLACE_PROXY: the proxy replaced."),
    install_channel: int | None = typer.Option(
        None, "--install-channel", help="install_channel_id: reach the hosts through this channel's jump servers."
    ),
    os_type: str = typer.Option("LINUX", "--os-type", help="os_type of the hosts."),
    local: bool = typer.Option(False, "--local", help="Run on the service's own machine (transport local)."),
    setup_path: str | None = typer.Option(None, "--setup-path", help="Where the agent goes on the host."),
    owned_path: bool = typer.Option(
        False, "--owned-path", help="An account without root or NOPASSWD sudo installs as itself into --setup-path."
    ),
    account: str | None = typer.Option(None, "--account", help="SSH user."),
    port: int | None = typer.Option(None, "--port", help="SSH port."),
    key_file: Path | None = typer.Option(None, "--key-file", help="SSH private key file (auth_type KEY)."),
    hosts_file: Path | None = typer.Option(None, "--hosts-file", help="JSON list of host objects, as install_job."),
    hooks_file: Path | None = typer.Option(
        None, "--hooks-file", help='JSON list of script hooks [{"name", "script", "when"}], as install_job.'
    ),
    batch_size: int | None = BatchSizeOption,
    max_fail_percentage: float | None = MaxFailOption,
    batch_interval: float | None = BatchIntervalOption,
    follow: bool = FollowOption,
    url: str | None = UrlOption,
) -> None:
    """Install (or reinstall, or replace) the agent or proxy of hosts. An SSH password is read from
    $NODEOPS_HOST_PASSWORD."""
    if job_type not in INSTALL_TYPES:
        raise usage_error(f"--job-type {job_type!r} must be one of {', '.join(INSTALL_TYPES)}")
    hosts: list[dict[str, Any]] = _hosts_from_file(hosts_file) if hosts_file else []
    common: dict[str, Any] = {"bk_cloud_id": cloud, "os_type": os_type}
    if outer_ip:
        common["outer_ip"] = outer_ip
    if install_channel is not None:
        common["install_channel_id"] = install_channel
    if biz is not None:
        common["bk_biz_id"] = biz
    if local:
        common["transport"] = "local"
    if setup_path:
        common["setup_path"] = setup_path
    if owned_path:
        common["owned_path"] = True
    if account:
        common["account"] = account
    if port is not None:
        common["port"] = port
    if key_file is not None:
        try:
            common.update(auth_type="KEY", key=key_file.read_text())
        except OSError as exc:
            raise usage_error(f"--key-file {key_file}: {exc.strerror}") from None
    elif os.environ.get(PASSWORD_ENV):
        common.update(auth_type="PASSWORD", password=os.environ[PASSWORD_ENV])
    hosts.extend({"inner_ip": ip, **common} for ip in host)
    if not hosts:
        raise usage_error("no host: give --host IP (repeatable) or --hosts-file FILE")
    with connected(ctx, url) as remote:
        body: dict[str, Any] = {
            "job_type": job_type,
            "hosts": hosts,
            **_rollout(batch_size, max_fail_percentage, batch_interval),
        }
        if replace_host_id is not None:
            body["replace_host_id"] = replace_host_id
        if hooks_file is not None:
            body["script_hooks"] = _json_list(hooks_file, "--hooks-file", "script hook objects")
        data = remote.post("/api/job/install/", body)
        _started(data, job_type, len(hosts))
        if follow:
            _follow_and_exit(remote, int(data["job_id"]))


@app.command()
def operate(
    ctx: typer.Context,
    job_type: str = typer.Argument(..., help=f"One of {', '.join(OPERATE_TYPES)}."),
    host_id: list[int] = typer.Option(..., "--host-id", help="bk_host_id; repeat for several."),
    version: str | None = typer.Option(None, "--version", help="Agent version for UPGRADE_* (default newest)."),
    batch_size: int | None = BatchSizeOption,
    max_fail_percentage: float | None = MaxFailOption,
    batch_interval: float | None = BatchIntervalOption,
    follow: bool = FollowOption,
    url: str | None = UrlOption,
) -> None:
    """Upgrade, restart, reload or uninstall the agent (or proxy) of hosts already installed."""
    if job_type not in OPERATE_TYPES:
        raise usage_error(f"JOB_TYPE {job_type!r} must be one of {', '.join(OPERATE_TYPES)}")
    body: dict[str, Any] = {
        "job_type": job_type,
        "bk_host_id": host_id,
        **_rollout(batch_size, max_fail_percentage, batch_interval),
    }
    if version:
        body["version"] = version
    with connected(ctx, url) as remote:
        data = remote.post("/api/job/operate/", body)
        _started(data, job_type, len(host_id))
        if follow:
            _follow_and_exit(remote, int(data["job_id"]))


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    status: list[str] = typer.Option([], "--status", help="Only jobs with this status; repeatable."),
    job_type: list[str] = typer.Option([], "--job-type", help="Only jobs of this type; repeatable."),
    created_by: list[str] = typer.Option([], "--created-by", help="Only jobs created by this user; repeatable."),
    page: int = typer.Option(1, "--page", min=1),
    pagesize: int = typer.Option(20, "--pagesize", min=1, max=500),
    url: str | None = UrlOption,
) -> None:
    """The newest jobs first (job_list)."""
    body: dict[str, Any] = {"page": page, "pagesize": pagesize, "sort": {"head": "id", "sort_type": "DEC"}}
    for key, values in (("status", status), ("job_type", job_type), ("created_by", created_by)):
        if values:
            body[key] = values
    with connected(ctx, url) as remote:
        data = remote.post("/api/job/job_list/", body)
    table = Table(title=f"{data.get('total', 0)} jobs (page {page})", title_justify="left", expand=False)
    for column in ("job", "type", "status", "hosts", "created by", "started", "took"):
        table.add_column(column, no_wrap=column in ("job", "status"))
    for job in data.get("list") or []:
        table.add_row(
            str(job.get("id")),
            str(job.get("job_type") or ""),
            status_text(str(job.get("status"))),
            statistics_summary(job.get("statistics") or {}),
            str(job.get("created_by") or ""),
            str(job.get("start_time") or "-"),
            duration(job.get("cost_time")),
        )
    console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    job_id: int = typer.Argument(..., help="The job's id."),
    status: list[str] = typer.Option([], "--status", help="Only instances with this status; repeatable."),
    ip: str | None = typer.Option(None, "--ip", help="Only instances whose IP contains this."),
    page: int = typer.Option(1, "--page", min=1),
    pagesize: int = typer.Option(50, "--pagesize", min=-1, max=1000, help="-1: every instance."),
    follow: bool = FollowOption,
    url: str | None = UrlOption,
) -> None:
    """A job: status, times, statistics and its instances (details_job)."""
    conditions: list[dict[str, Any]] = []
    if status:
        conditions.append({"key": "status", "value": status})
    if ip:
        conditions.append({"key": "ip", "value": ip})
    body = {"page": page, "pagesize": pagesize, "conditions": conditions}
    with connected(ctx, url) as remote:
        if follow:
            _follow(remote, job_id)
        data = remote.post(f"/api/job/{job_id}/details/", body)
    _print_details(data)
    if follow and data.get("status") not in ("SUCCESS",):
        raise typer.Exit(code=1)


@app.command()
def revoke(
    ctx: typer.Context,
    job_id: int = typer.Argument(..., help="The job's id."),
    instance: list[str] = typer.Option([], "--instance", help="Only this instance_id; repeatable (default all)."),
    url: str | None = UrlOption,
) -> None:
    """Stop a job's pending and running instances; the job ends TERMINATED."""
    body = {"instance_id_list": instance} if instance else {}
    with connected(ctx, url) as remote:
        data = remote.post(f"/api/job/{job_id}/revoke/", body)
    console.print(Text.assemble("job ", (str(job_id), "bold"), " revoked ", _tasks(data)))


@app.command()
def retry(
    ctx: typer.Context,
    job_id: int = typer.Argument(..., help="The job's id."),
    instance: list[str] = typer.Option([], "--instance", help="Only this instance_id; repeatable (default: FAILED)."),
    follow: bool = FollowOption,
    url: str | None = UrlOption,
) -> None:
    """Run a job's failed instances again, as a new attempt."""
    body = {"instance_id_list": instance} if instance else {}
    with connected(ctx, url) as remote:
        data = remote.post(f"/api/job/{job_id}/retry/", body)
        console.print(Text.assemble("job ", (str(job_id), "bold"), " retried ", _tasks(data)))
        if follow:
            _follow_and_exit(remote, job_id)


@app.command("commands")
def job_commands(
    ctx: typer.Context,
    job_id: int = typer.Argument(..., help="The job's id."),
    bk_host_id: int = typer.Argument(..., help="The manual host's bk_host_id."),
    url: str | None = UrlOption,
) -> None:
    """The command installing a manual host (get_job_commands): run it on the host. Each call gives a new
    one-time command; until the host's 安装 step runs, it says PENDING (exit 2)."""
    with connected(ctx, url) as remote:
        data = remote.get(f"/api/job/{job_id}/get_job_commands/", {"bk_host_id": bk_host_id})
    solutions = data.get("solutions") if isinstance(data, dict) else None
    if not solutions:
        console.print(f"PENDING: host {bk_host_id} has not reached 安装 yet; ask again in a moment")
        raise typer.Exit(code=PENDING_EXIT)
    for solution in solutions:
        for step in solution.get("steps") or []:
            for content in step.get("contents") or []:
                print(content.get("text") or "")


def usage_error(message: str) -> typer.Exit:
    err_console.print(Text.assemble(("error: ", "bold red"), message))
    return typer.Exit(code=2)


def _hosts_from_file(path: Path) -> list[dict[str, Any]]:
    return _json_list(path, "--hosts-file", "host objects")


def _json_list(path: Path, option: str, what: str) -> list[dict[str, Any]]:
    """The JSON list of objects in the file an option names, or a usage error saying what is wrong with it."""
    try:
        items = json.loads(path.read_text())
    except OSError as exc:
        raise usage_error(f"{option} {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise usage_error(f"{option} {path} is not JSON: {exc}") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise usage_error(f"{option} {path} must hold a JSON list of {what}")
    return items


def _rollout(batch_size: int | None, max_fail_percentage: float | None, batch_interval: float | None) -> dict[str, Any]:
    """The rolling-batch parameters given on the command line (the service validates them)."""
    given = {
        "batch_size": batch_size,
        "max_fail_percentage": max_fail_percentage,
        "batch_interval_s": batch_interval,
    }
    return {key: value for key, value in given.items() if value is not None}


def _tasks(data: Any) -> str:
    tasks = data.get("task_id_list") if isinstance(data, dict) else data
    return f"(task {', '.join(map(str, tasks))})" if tasks else ""


def _started(data: dict[str, Any], job_type: str, hosts: int) -> None:
    job_id = data["job_id"]
    console.print(
        Text.assemble("job ", (str(job_id), "bold"), f" started: {job_type} on {hosts} host{'' if hosts == 1 else 's'}")
    )
    refused = data.get("ip_filter") or []
    if refused:
        table = Table(title="refused hosts", title_justify="left")
        for column in ("ip", "status", "reason"):
            table.add_column(column)
        for entry in refused:
            table.add_row(
                str(entry.get("ip") or entry.get("inner_ip") or ""),
                status_text(str(entry.get("status"))),
                str(entry.get("msg") or entry.get("exception") or ""),
            )
        console.print(table)
    console.print(Text(f"see it with: nodeops job show {job_id}", style="dim"))


def _follow(remote: Remote, job_id: int) -> str:
    """Redraw the hosts' bar until the job ends, printing each instance whose status changed, from the job's event
    stream (a service without it, Node Manager itself say, is polled). Returns the job's status."""
    with HostProgress(console, job_id) as bar:
        try:
            for event, data in remote.events(f"/api/job/{job_id}/events/"):
                if event == "instance":
                    _print_change(bar, data, str(data.get("step") or ""))
                elif event == "job":
                    bar.update(str(data.get("status")), data.get("statistics") or {})
                elif event == "end":
                    return str(data.get("status"))
        except NotServed:
            pass
        return _poll_details(remote, job_id, bar)


def _poll_details(remote: Remote, job_id: int, bar: HostProgress) -> str:
    """``_follow`` by reading the job's details every FOLLOW_POLL_S."""
    seen: dict[str, str] = {}
    while True:
        data = remote.post(f"/api/job/{job_id}/details/", {"pagesize": -1})
        for row in data.get("list") or []:
            key = str(row.get("instance_id") or row.get("ip"))
            if seen.get(key) != row.get("status") and not row.get("filter_host"):
                seen[key] = str(row.get("status"))
                _print_change(bar, row, str(row.get("status_display") or row.get("step") or ""))
        bar.update(str(data.get("status")), data.get("statistics") or {})
        if data.get("status") not in ACTIVE:
            return str(data.get("status"))
        time.sleep(FOLLOW_POLL_S)


def _print_change(bar: HostProgress, instance: dict[str, Any], where: str) -> None:
    """One line for an instance whose status changed: status, IP, instance_id, and where it is."""
    key = str(instance.get("instance_id") or instance.get("ip"))
    bar.console.print(
        Text.assemble(
            "  ",
            status_text(str(instance.get("status"))),
            "  ",
            (str(instance.get("ip") or ""), "bold"),
            "  ",
            (key, "dim"),
            "  ",
            where,
        )
    )


def _follow_and_exit(remote: Remote, job_id: int) -> None:
    status = _follow(remote, job_id)
    console.print(Text.assemble("job ", (str(job_id), "bold"), " ended ", status_text(status)))
    if status != "SUCCESS":
        raise typer.Exit(code=1)


def _print_details(data: dict[str, Any]) -> None:
    status = str(data.get("status"))
    console.print(
        Text.assemble(
            ("job ", "bold"),
            (str(data.get("job_id")), "bold"),
            "  ",
            str(data.get("job_type") or ""),
            f" ({data.get('job_type_display') or ''})  ",
            status_text(status),
        )
    )
    console.print(
        Text(
            f"created by {data.get('created_by') or '-'} · started {data.get('start_time') or '-'} · "
            f"ended {data.get('end_time') or '-'} · took {duration(data.get('cost_time'))}",
            style="dim",
        )
    )
    console.print(statistics_summary(data.get("statistics") or {}), highlight=False)
    table = Table(title=f"{data.get('total', 0)} instances", title_justify="left")
    for column in ("instance_id", "ip", "status", "step", "started", "took", "attempt"):
        table.add_column(column, no_wrap=column in ("instance_id", "ip", "status", "took"), overflow="fold")
    for row in data.get("list") or []:
        row_status = str(row.get("status"))
        table.add_row(
            str(row.get("instance_id") or "-"),
            str(row.get("ip") or "-"),
            status_text(row_status),
            Text(str(row.get("status_display") or row.get("step") or ""), style=STATUS_STYLE.get(row_status, "")),
            str(row.get("start_time") or "-"),
            duration(row.get("cost_time")),
            str(row.get("attempt") or "-"),
        )
    console.print(table)
    first = next((r for r in data.get("list") or [] if not r.get("filter_host")), None)
    if first is not None:
        console.print(
            Text(f"read a log with: nodeops log {data.get('job_id')} '{first.get('instance_id')}'", style="dim")
        )
