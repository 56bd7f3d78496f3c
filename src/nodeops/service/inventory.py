"""The inventory's use cases: import (JSON or CSV) and export, host search, topology and service instances.

These APIs are nodeops' own (Node Manager reads its inventory from CMDB). The JSON form is
``{"topology": [{bk_biz_id, bk_biz_name, sets: [{bk_set_id, bk_set_name, set_template_id, modules: [{bk_module_id,
bk_module_name, service_template_id}]}]}], "hosts": [...], "service_instances": [...]}``; a host takes the fields of
install_job's hosts (login included, sealed at once) plus ``bk_supplier_account``, ``bk_host_name``, ``outer_ip``
and ``modules`` (the module ids it is placed in). The CSV form has one row per host and module (``CSV_COLUMNS``).
Importing needs the right to operate agents on every business touched; reads show only permitted businesses.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from nodeops.crypto import SecretBox
from nodeops.domain.contract import Contract, Field, Kind
from nodeops.domain.instance_id import MAX_HOST_ID, HostKey
from nodeops.domain.params import MAX_INT32, int_list, int_param, int_value, is_ascii_digits
from nodeops.domain.scope import TopoObject
from nodeops.errors import InvalidInput
from nodeops.service.auth import Caller
from nodeops.service.host_requests import HostRequest, parse_hosts
from nodeops.service.job_commands import require_biz
from nodeops.service.job_details import MAX_PAGESIZE
from nodeops.service.paging import out_of_range
from nodeops.settings import Settings
from nodeops.store import inventory
from nodeops.store.db import Database
from nodeops.store.inventory import HostQuery, HostRow, ServiceRow, TopoRow

LOGIN_FIELDS = ("account", "password", "key", "auth_type", "port", "transport", "setup_path", "ap_id")
CSV_COLUMNS = (
    "bk_host_id",
    "bk_biz_id",
    "bk_biz_name",
    "bk_cloud_id",
    "bk_supplier_account",
    "inner_ip",
    "inner_ipv6",
    "outer_ip",
    "bk_host_name",
    "os_type",
    "bk_set_id",
    "bk_set_name",
    "set_template_id",
    "bk_module_id",
    "bk_module_name",
    "service_template_id",
    "transport",
    "port",
    "account",
    "auth_type",
    "password",
    "setup_path",
)
MAX_ITEMS = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedInventory:
    topology: list[TopoRow]
    hosts: list[tuple[HostRequest, dict[str, Any], bool]]  # the request, its inventory fields, has a login
    services: list[ServiceRow]
    csv_lines: Mapping[str, int] = field(default_factory=dict)  # of the CSV form: row name -> its first line

    def row_name(self, where: str) -> str:
        """How the caller names this row (``topology[0].sets[1]``, or ``line 3`` in the CSV form)."""
        return _csv_name(where, self.csv_lines) if self.csv_lines else where


def parse_inventory(raw: object) -> ParsedInventory:
    """Validate an inventory object; one InvalidInput names every bad field (``hosts[3].inner_ip``)."""
    if not isinstance(raw, Mapping):
        raise InvalidInput.field("inventory", "must be an object {topology, hosts, service_instances}")
    problems: dict[str, str] = {}
    topology = _topology(raw.get("topology", []), problems)
    raw_hosts = raw.get("hosts", [])
    hosts: list[tuple[HostRequest, dict[str, Any], bool]] = []
    if not isinstance(raw_hosts, list) or len(raw_hosts) > MAX_ITEMS:
        problems["hosts"] = f"must be a list of at most {MAX_ITEMS} hosts"
    elif raw_hosts:
        requests: list[HostRequest] = []
        try:
            requests = parse_hosts(raw_hosts)
        except InvalidInput as exc:
            problems.update(exc.problems)
        for request in requests:
            item = raw_hosts[request.index]
            extra = _host_extra(item, f"hosts[{request.index}]", problems)
            hosts.append((request, extra, any(item.get(name) not in (None, "") for name in LOGIN_FIELDS)))
    services = _services(raw.get("service_instances", []), problems)
    if problems:
        raise InvalidInput(problems)
    return ParsedInventory(topology=topology, hosts=hosts, services=services)


def _topology(raw: object, problems: dict[str, str]) -> list[TopoRow]:
    if not isinstance(raw, list):
        problems["topology"] = "must be a list of businesses {bk_biz_id, bk_biz_name, sets: [...]}"
        return []
    rows: list[TopoRow] = []
    for b, biz in enumerate(raw):
        at = f"topology[{b}]"
        if not isinstance(biz, Mapping):
            problems[at] = "must be an object {bk_biz_id, bk_biz_name, sets}"
            continue
        biz_id = int_value(biz.get("bk_biz_id"), f"{at}.bk_biz_id", problems, maximum=MAX_INT32)
        if biz_id is None:
            continue
        rows.append(_topo_row(at, TopoObject.BIZ, biz_id, biz.get("bk_biz_name"), biz_id, None, None, problems))
        for s, item in enumerate(biz.get("sets") or []):
            where = f"{at}.sets[{s}]"
            if not isinstance(item, Mapping):
                problems[where] = "must be an object {bk_set_id, bk_set_name, modules}"
                continue
            set_id = int_value(item.get("bk_set_id"), f"{where}.bk_set_id", problems, maximum=MAX_HOST_ID)
            template = _optional_int(item.get("set_template_id"), f"{where}.set_template_id", problems)
            if set_id is None:
                continue
            parent = (TopoObject.BIZ.value, biz_id)
            rows.append(
                _topo_row(where, TopoObject.SET, set_id, item.get("bk_set_name"), biz_id, parent, template, problems)
            )
            for m, module in enumerate(item.get("modules") or []):
                mwhere = f"{where}.modules[{m}]"
                if not isinstance(module, Mapping):
                    problems[mwhere] = "must be an object {bk_module_id, bk_module_name}"
                    continue
                module_id = int_value(
                    module.get("bk_module_id"), f"{mwhere}.bk_module_id", problems, maximum=MAX_HOST_ID
                )
                mtemplate = _optional_int(module.get("service_template_id"), f"{mwhere}.service_template_id", problems)
                if module_id is not None:
                    rows.append(
                        _topo_row(
                            mwhere,
                            TopoObject.MODULE,
                            module_id,
                            module.get("bk_module_name"),
                            biz_id,
                            (TopoObject.SET.value, set_id),
                            mtemplate,
                            problems,
                        )
                    )
    return rows


def _topo_row(
    where: str,
    kind: TopoObject,
    inst_id: int,
    name: object,
    biz_id: int,
    parent: tuple[str, int] | None,
    template: int | None,
    problems: dict[str, str],
) -> TopoRow:
    if name is not None and (not isinstance(name, str) or len(name) > 128):
        problems[f"{where}.bk_{kind.value}_name"] = "must be a string of at most 128 characters"
        name = ""
    return TopoRow(
        where=where,
        bk_obj_id=kind.value,
        bk_inst_id=inst_id,
        name=name or "",
        bk_biz_id=biz_id,
        parent=parent,
        template_id=template,
    )


def _optional_int(value: object, name: str, problems: dict[str, str], *, maximum: int = MAX_HOST_ID) -> int | None:
    """An id of the inventory that may be left out (``params.int_param``): at most MAX_HOST_ID unless told."""
    return int_param(value, name, problems, maximum=maximum)


def _text(item: Mapping[str, Any], name: str, where: str, problems: dict[str, str], limit: int) -> str | None:
    value = item.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str | int) or len(str(value)) > limit:
        problems[f"{where}.{name}"] = f"must be a string of at most {limit} characters"
        return None
    return str(value)


def _host_extra(item: Mapping[str, Any], where: str, problems: dict[str, str]) -> dict[str, Any]:
    modules: tuple[int, ...] | None = None
    raw_modules = item.get("modules")
    if raw_modules is not None:
        if not isinstance(raw_modules, list):
            problems[f"{where}.modules"] = "must be a list of bk_module_ids"
        else:
            found = int_list(raw_modules, f"{where}.modules", problems, noun="bk_module_ids", maximum=MAX_HOST_ID)
            modules = tuple(found)
    outer = _text(item, "outer_ip", where, problems, 64)
    if outer is not None:
        try:
            outer = HostKey.of(outer, 0).ip
        except InvalidInput:
            problems[f"{where}.outer_ip"] = f"{outer!r} is not an IP address"
    return {
        "bk_supplier_account": _text(item, "bk_supplier_account", where, problems, 64) or "0",
        "bk_host_name": _text(item, "bk_host_name", where, problems, 128),
        "outer_ip": outer,
        "modules": modules,
    }


def _services(raw: object, problems: dict[str, str]) -> list[ServiceRow]:
    if not isinstance(raw, list) or len(raw) > MAX_ITEMS:
        problems["service_instances"] = f"must be a list of at most {MAX_ITEMS} service instances"
        return []
    rows: list[ServiceRow] = []
    for index, item in enumerate(raw):
        where = f"service_instances[{index}]"
        if not isinstance(item, Mapping):
            problems[where] = "must be an object {id, name, bk_module_id, bk_host_id (or ip, bk_cloud_id)}"
            continue
        bad = len(problems)
        instance_id = _optional_int(item.get("id"), f"{where}.id", problems)
        module_id = int_value(item.get("bk_module_id"), f"{where}.bk_module_id", problems, maximum=MAX_HOST_ID)
        host_id = _optional_int(item.get("bk_host_id"), f"{where}.bk_host_id", problems)
        key = None
        if host_id is None:
            ip = item.get("ip") or item.get("inner_ip")
            cloud = int_value(
                item.get("bk_cloud_id", 0), f"{where}.bk_cloud_id", problems, minimum=0, maximum=MAX_INT32
            )
            try:
                key = HostKey.of(str(ip or ""), cloud or 0)
            except InvalidInput:
                problems[where] = "needs bk_host_id, or ip and bk_cloud_id of a host of the inventory"
        processes = item.get("processes", [])
        if not isinstance(processes, list):
            problems[f"{where}.processes"] = "must be a list of process objects"
        name = _text(item, "name", where, problems, 128) or ""
        if len(problems) == bad and module_id is not None and isinstance(processes, list):
            rows.append(
                ServiceRow(
                    where=where,
                    id=instance_id,
                    name=name,
                    bk_module_id=module_id,
                    bk_host_id=host_id,
                    host_key=key,
                    processes=processes,
                )
            )
    return rows


def parse_inventory_csv(text: str) -> ParsedInventory:
    """The CSV form: a header of ``CSV_COLUMNS`` names (any order, unknown ones refused), one row per host and
    module; a host on several rows is placed in each row's module. Problems name ``line N.field``."""
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        fieldnames = reader.fieldnames
        rows = list(reader)
    except csv.Error as exc:
        raise InvalidInput.field("csv", f"is not valid CSV: {exc}") from None
    unknown = [name for name in fieldnames or () if name not in CSV_COLUMNS]
    if not fieldnames or unknown:
        raise InvalidInput.field(
            "csv", f"unknown column {unknown[0]!r}" if unknown else f"needs a header row of {', '.join(CSV_COLUMNS)}"
        )
    bizs: dict[int, dict[str, Any]] = {}
    hosts: dict[tuple[str, str], dict[str, Any]] = {}
    first_line: dict[tuple[Any, ...], int] = {}  # the line each business, set, module and host first appears on
    for number, row in enumerate(rows, start=2):
        values = {k: (v or "").strip() for k, v in row.items() if k is not None}
        biz_key = _digits(values.get("bk_biz_id"))
        first_line.setdefault(("biz", biz_key), number)
        biz = bizs.setdefault(biz_key, {"bk_biz_id": values.get("bk_biz_id"), "sets": {}})
        if values.get("bk_biz_name"):
            biz["bk_biz_name"] = values["bk_biz_name"]
        if values.get("bk_set_id"):
            first_line.setdefault(("set", biz_key, values["bk_set_id"]), number)
            sets = biz["sets"].setdefault(
                values["bk_set_id"],
                {
                    "bk_set_id": values["bk_set_id"],
                    "bk_set_name": values.get("bk_set_name"),
                    "set_template_id": values.get("set_template_id") or None,
                    "modules": {},
                },
            )
            if values.get("bk_module_id"):
                first_line.setdefault(("module", biz_key, values["bk_set_id"], values["bk_module_id"]), number)
                sets["modules"][values["bk_module_id"]] = {
                    "bk_module_id": values["bk_module_id"],
                    "bk_module_name": values.get("bk_module_name"),
                    "service_template_id": values.get("service_template_id") or None,
                }
        identity = (values.get("bk_cloud_id") or "0", values.get("inner_ip") or values.get("inner_ipv6") or str(number))
        host = hosts.get(identity)
        if host is None:
            host = {k: values[k] for k in CSV_COLUMNS if values.get(k) and k not in _PLACEMENT_COLUMNS}
            host["modules"] = []
            first_line[("host", len(hosts))] = number
            hosts[identity] = host
        if values.get("bk_module_id"):
            host["modules"].append(values["bk_module_id"])
    lines = {f"hosts[{index}]": first_line[("host", index)] for index in range(len(hosts))}
    topology: list[dict[str, Any]] = []
    for biz_key, biz in bizs.items():
        if not biz["sets"] and not biz.get("bk_biz_name"):
            continue
        at = f"topology[{len(topology)}]"
        lines[at] = first_line[("biz", biz_key)]
        for s, (set_id, item) in enumerate(biz["sets"].items()):
            lines[f"{at}.sets[{s}]"] = first_line[("set", biz_key, set_id)]
            for m, module_id in enumerate(item["modules"]):
                lines[f"{at}.sets[{s}].modules[{m}]"] = first_line[("module", biz_key, set_id, module_id)]
        topology.append({**biz, "sets": [{**s, "modules": list(s["modules"].values())} for s in biz["sets"].values()]})
    try:
        parsed = parse_inventory({"topology": topology, "hosts": list(hosts.values())})
    except InvalidInput as exc:
        raise InvalidInput({_csv_name(name, lines): problem for name, problem in exc.problems.items()}) from None
    return replace(parsed, csv_lines=lines)


_PLACEMENT_COLUMNS = frozenset(
    {
        "bk_biz_name",
        "bk_set_id",
        "bk_set_name",
        "set_template_id",
        "bk_module_id",
        "bk_module_name",
        "service_template_id",
    }
)


def _digits(value: str | None) -> int:
    return int(value) if value and is_ascii_digits(value) and len(value) < 12 else -1


def _csv_name(name: str, lines: Mapping[str, int]) -> str:
    """A row's or field's name in the JSON form (``hosts[3].inner_ip``) as the CSV's (``line 5.inner_ip``)."""
    row, rest = name, ""
    while row:  # the longest leading row name it has: hosts[3].modules[1] is line 5.modules[1]
        if row in lines:
            return f"line {lines[row]}{rest}"
        row, dot, tail = row.rpartition(".")
        rest = f"{dot}{tail}{rest}"
    return name


def inventory_csv(exported: Mapping[str, Any]) -> str:
    """The CSV form of an export (no secrets: the password column stays empty)."""
    names: dict[int, tuple[str, Any]] = {}
    modules: dict[int, dict[str, Any]] = {}
    for biz in exported["topology"]:
        for item in biz["sets"]:
            for module in item["modules"]:
                modules[module["bk_module_id"]] = {
                    "bk_biz_name": biz["bk_biz_name"],
                    "bk_set_id": item["bk_set_id"],
                    "bk_set_name": item["bk_set_name"],
                    "set_template_id": item["set_template_id"],
                    "bk_module_id": module["bk_module_id"],
                    "bk_module_name": module["bk_module_name"],
                    "service_template_id": module["service_template_id"],
                }
        names[biz["bk_biz_id"]] = ("bk_biz_name", biz["bk_biz_name"])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for host in exported["hosts"]:
        base = {k: v for k, v in host.items() if k in CSV_COLUMNS and v is not None}
        biz_name = names.get(host["bk_biz_id"], ("", ""))[1]
        for module_id in host["modules"] or [None]:
            writer.writerow({**base, "bk_biz_name": biz_name, **modules.get(module_id, {})} if module_id else base)
    return out.getvalue()


# --- the requests ---------------------------------------------------------------------------------------------

_BIZ_ID = Field(name="bk_biz_id", kind=Kind.INT, maximum=MAX_INT32)
IMPORT = Contract(
    "InventoryImportRequest",
    "Import an inventory: ``inventory`` (JSON form) or ``csv`` (CSV text); see docs/compatibility.md.",
    (
        Field(name="csv", kind=Kind.TEXT, description="CSV text, header row first, one row per host and module."),
        Field(name="inventory", kind=Kind.OBJECT, description="{topology, hosts, service_instances}."),
    ),
)
EXPORT = Contract(
    "InventoryExportRequest",
    "",
    (
        _BIZ_ID,
        Field(
            name="format",
            kind=Kind.TEXT,
            default="json",
            schema={"type": "string", "enum": ["json", "csv"]},
            description="json or csv.",
        ),
    ),
)
HOST_SEARCH = Contract(
    "HostSearchRequest",
    "",
    (
        Field(name="page", kind=Kind.INT, default=1, maximum=MAX_PAGESIZE),
        Field(name="pagesize", kind=Kind.INT, default=20, minimum=-1, maximum=MAX_PAGESIZE),
        _BIZ_ID,
        Field(name="bk_cloud_id", kind=Kind.INT, minimum=0, maximum=MAX_INT32),
        Field(name="ip", kind=Kind.TEXT, description="Part of an inner or outer IP."),
        Field(name="os_type", kind=Kind.TEXT),
        Field(name="bk_set_id", kind=Kind.INT, maximum=MAX_HOST_ID),
        Field(name="bk_module_id", kind=Kind.INT, maximum=MAX_HOST_ID),
        Field(name="bk_host_id", kind=Kind.INT_LIST, noun="bk_host_ids", maximum=MAX_HOST_ID),
    ),
)
BIZ = Contract("BizRequest", "", (_BIZ_ID,))
REQUESTS = (IMPORT, EXPORT, HOST_SEARCH, BIZ)


class InventoryService:
    """The inventory APIs' and the CLI's use cases."""

    def __init__(self, db: Database, settings: Settings, box: SecretBox) -> None:
        self.db = db
        self.settings = settings
        self.box = box

    async def import_inventory(self, caller: Caller | None, params: Mapping[str, object]) -> dict[str, Any]:
        """Import ``inventory`` (the JSON form) or ``csv`` (the CSV form's text); ``caller`` None is the CLI."""
        values = IMPORT.read(params)
        if values["csv"] not in (None, ""):
            text = values["csv"]
            if not isinstance(text, str):
                raise InvalidInput.field("csv", "must be the CSV text, header row first")
            parsed = parse_inventory_csv(text)
        elif values["inventory"] is not None:
            parsed = parse_inventory(values["inventory"])
        else:
            raise InvalidInput.field(
                "inventory", 'give "inventory" (an object {topology, hosts, service_instances}) or "csv"'
            )
        return await self.db.call(lambda: self.apply(caller, parsed))

    def apply(self, caller: Caller | None, parsed: ParsedInventory) -> dict[str, Any]:
        """Store a parsed inventory in one transaction, after checking the caller's right on every business each
        row is in now or would be in (``caller`` None: the CLI, no check). Raises PermissionDenied naming those
        businesses and rows, or InvalidInput; either way nothing is written."""
        rows = [self._host_row(host, extra, has_login) for host, extra, has_login in parsed.hosts]
        with self.db.session() as session:
            if caller is not None and not caller.is_superuser:
                if any(row.login is not None and row.login.transport == "local" for row in rows):
                    raise InvalidInput.field("hosts", "transport 'local' is for superusers only")
                # every row, of every kind, for the business it is in now and the one it would be in
                touched = inventory.businesses_touched(
                    session, topology=parsed.topology, hosts=rows, services=parsed.services
                )
                named = {biz: [parsed.row_name(where) for where in wheres] for biz, wheres in touched.items()}
                require_biz(caller, touched, rows=named)
            result = inventory.apply_inventory(session, topology=parsed.topology, hosts=rows, services=parsed.services)
        return {
            "created_host_ids": result.created_host_ids,
            "updated_host_ids": result.updated_host_ids,
            "topo_nodes": result.topo_nodes,
            "service_instance_ids": result.service_instance_ids,
        }

    def _host_row(self, host: HostRequest, extra: Mapping[str, Any], has_login: bool) -> HostRow:
        return HostRow(
            where=f"hosts[{host.index}]",
            bk_host_id=host.bk_host_id,
            bk_biz_id=host.bk_biz_id,
            bk_cloud_id=host.bk_cloud_id,
            bk_supplier_account=extra["bk_supplier_account"],
            bk_host_name=extra["bk_host_name"],
            inner_ip=host.inner_ip,
            inner_ipv6=host.inner_ipv6,
            outer_ip=extra["outer_ip"],
            os_type=host.os_type,
            modules=extra["modules"],
            login=host.sealed_login(self.box, retention_s=self.settings.credentials_retention_s) if has_login else None,
        )

    @staticmethod
    def _visible(caller: Caller | None, asked: int | None) -> frozenset[int] | None:
        """The businesses a read may show: the one asked, within the caller's (None: all)."""
        allowed = None if caller is None or caller.is_superuser else caller.biz_ids
        if asked is None:
            return allowed
        return frozenset({asked}) if allowed is None or asked in allowed else frozenset()

    async def export(self, caller: Caller | None, params: Mapping[str, object]) -> dict[str, Any]:
        """The inventory of the permitted businesses (``bk_biz_id``: one of them) as ``format`` json or csv."""
        problems: dict[str, str] = {}
        values = EXPORT.gather(params, problems)
        biz = values.integer("bk_biz_id")
        fmt = values["format"] or "json"
        if fmt not in ("json", "csv"):
            problems["format"] = f"{fmt!r} must be json or csv"
        EXPORT.check(problems)

        def read() -> dict[str, Any]:
            with self.db.session() as session:
                return inventory.export_inventory(session, self._visible(caller, biz))

        exported = await self.db.call(read)
        return {"csv": inventory_csv(exported)} if fmt == "csv" else exported

    async def search_hosts(self, caller: Caller | None, params: Mapping[str, object]) -> dict[str, Any]:
        """A page of the hosts matching the filters, in the permitted businesses."""
        problems: dict[str, str] = {}
        values = HOST_SEARCH.gather(params, problems)
        page = values.integer("page") or 1
        size = values.integer("pagesize")
        pagesize = 20 if size is None else size
        if pagesize == 0:
            problems["pagesize"] = f"must be -1 (every host) or from 1 to {MAX_PAGESIZE}"
        ip = values["ip"]
        if ip is not None and (not isinstance(ip, str) or len(ip) > 64):
            problems["ip"] = "must be (part of) an IP address"
        os_type = values["os_type"]
        if os_type is not None and not isinstance(os_type, str):
            problems["os_type"] = "must be an OS type such as LINUX"
        HOST_SEARCH.check(problems)
        query = HostQuery(
            bk_biz_ids=self._visible(caller, values.integer("bk_biz_id")),
            bk_cloud_id=values.integer("bk_cloud_id"),
            ip=ip if isinstance(ip, str) else None,
            os_type=os_type.upper() if isinstance(os_type, str) else None,
            bk_set_id=values.integer("bk_set_id"),
            bk_module_id=values.integer("bk_module_id"),
            bk_host_ids=tuple(values.integers("bk_host_id")),
        )

        def read() -> dict[str, Any]:
            with self.db.session() as session:
                offset = 0 if pagesize == -1 else (page - 1) * pagesize
                total, rows = inventory.search_hosts(
                    session, query, offset=offset, limit=None if pagesize == -1 else pagesize
                )
            if pagesize != -1 and page > 1 and offset >= total:
                raise out_of_range("page", page, total=total, pagesize=pagesize, noun="hosts")
            return {"total": total, "list": rows}

        return await self.db.call(read)

    async def topology(self, caller: Caller | None, params: Mapping[str, object]) -> list[dict[str, Any]]:
        """The business → set → module tree of the permitted businesses, with each module's host count."""
        return await self._biz_read(caller, params, inventory.topology)

    async def service_instances(self, caller: Caller | None, params: Mapping[str, object]) -> list[dict[str, Any]]:
        """The service instances of the permitted businesses."""
        return await self._biz_read(caller, params, inventory.service_instances)

    async def _biz_read(
        self,
        caller: Caller | None,
        params: Mapping[str, object],
        read: Callable[[Any, frozenset[int] | None], list[dict[str, Any]]],
    ) -> list[dict[str, Any]]:
        """``read`` of the businesses the caller may see (``bk_biz_id``: only that one)."""
        biz = BIZ.read(params).integer("bk_biz_id")

        def call() -> list[dict[str, Any]]:
            with self.db.session() as session:
                return read(session, self._visible(caller, biz))

        return await self.db.call(call)
