"""``nodeops hosts``: the inventory from files (import, export), a quick listing, and forgetting a host's SSH key."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import typer

from nodeops.cli.context import console, fail, state
from nodeops.engine import host_keys
from nodeops.errors import NodeopsError
from nodeops.service.inventory import InventoryService

app = typer.Typer(help="The host inventory: businesses, sets, modules, hosts, service instances.", no_args_is_help=True)


def _inventory(ctx: typer.Context) -> InventoryService:
    services = state(ctx).services
    return InventoryService(services.db, services.settings, services.jobs.box)


@app.command("import")
def import_file(
    ctx: typer.Context,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="A .json or .csv inventory."),
    format: str | None = typer.Option(None, "--format", help="json or csv (default: from the file's extension)."),
) -> None:
    """Create or update the hosts, topology and service instances of FILE (see docs/compatibility.md)."""
    kind = (format or file.suffix.lstrip(".")).lower()
    if kind not in ("json", "csv"):
        raise fail(NodeopsError(f"cannot tell the format of {file.name}: pass --format json or --format csv"))
    text = file.read_text(encoding="utf-8-sig")
    params: dict[str, Any]
    if kind == "csv":
        params = {"csv": text}
    else:
        try:
            params = {"inventory": json.loads(text)}
        except json.JSONDecodeError as exc:
            raise fail(NodeopsError(f"{file.name} is not valid JSON: {exc}")) from None
    try:
        result = asyncio.run(_inventory(ctx).import_inventory(None, params))
    except NodeopsError as exc:
        raise fail(exc) from None
    console.print(
        f"{len(result['created_host_ids'])} hosts created, {len(result['updated_host_ids'])} updated, "
        f"{result['topo_nodes']} topology nodes, {len(result['service_instance_ids'])} service instances",
        highlight=False,
    )


@app.command("export")
def export(
    ctx: typer.Context,
    format: str = typer.Option("json", "--format", help="json or csv."),
    biz: int | None = typer.Option(None, "--biz", help="Only this business."),
) -> None:
    """Print the inventory (never a password or key) in the import's format."""
    try:
        data = asyncio.run(_inventory(ctx).export(None, {"format": format, "bk_biz_id": biz}))
    except NodeopsError as exc:
        raise fail(exc) from None
    print(data["csv"] if format == "csv" else json.dumps(data, ensure_ascii=False, indent=2), end="")


@app.command("list")
def list_hosts(
    ctx: typer.Context,
    biz: int | None = typer.Option(None, "--biz", help="Only this business."),
    module: int | None = typer.Option(None, "--module", help="Only hosts of this module."),
    ip: str | None = typer.Option(None, "--ip", help="Part of an IP."),
) -> None:
    """List hosts with their placement and agent."""
    params = {"bk_biz_id": biz, "bk_module_id": module, "ip": ip, "pagesize": -1}
    try:
        data = asyncio.run(_inventory(ctx).search_hosts(None, params))
    except NodeopsError as exc:
        raise fail(exc) from None
    for host in data["list"]:
        modules = ",".join(f"{t['bk_set_name']}/{t['bk_module_name']}" for t in host["topo"]) or "-"
        console.print(
            f"{host['bk_host_id']}\tbiz {host['bk_biz_id']}\tcloud {host['bk_cloud_id']}\t"
            f"{host['inner_ip'] or host['inner_ipv6']}\t{host['os_type']}\t{modules}\t{host['agent_status']}",
            highlight=False,
        )
    console.print(f"{data['total']} hosts", highlight=False)


@app.command("forget-key")
def forget_key(
    ctx: typer.Context,
    ip: str = typer.Argument(..., help="The host's IP address."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Only this SSH port (default: every port)."),
) -> None:
    """Forget the SSH host key trusted for IP, so the next login trusts the key it shows then (a reinstalled host)."""
    try:
        count = host_keys.forget(state(ctx).services.db, ip, port)
    except NodeopsError as exc:
        raise fail(exc) from None
    where = f"{ip} port {port}" if port is not None else ip
    console.print(f"{count} host key{'s' if count != 1 else ''} forgotten for {where}", highlight=False)
