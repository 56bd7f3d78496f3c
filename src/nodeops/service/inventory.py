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
from nodeops.domain.agent_status import AgentStatus, agent_status_count
from nodeops.domain.contract import Contract, Field, Kind, one_object
from nodeops.domain.instance_id import MAX_HOST_ID, HostKey
from nodeops.domain.params import MAX_INT32, is_ascii_digits
from nodeops.domain.scope import TopoObject
from nodeops.errors import InvalidInput
from nodeops.service import cloud_areas
from nodeops.service.auth import Caller
from nodeops.service.host_requests import INSTALL_HOST, HostRequest, read_hosts
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


# --- the inventory's objects, each read by its contract ---------------------------------------------------------

_NAME_CHARS = 128  # the name columns
_TEXT_CHARS = 64  # bk_supplier_account and outer_ip


def _topology_level(kind: TopoObject, maximum: int, template: str | None, below: Field | None) -> Contract:
    """The contract of a business, set or module of ``topology``: its id, name, template and what is below it."""
    fields = [
        Field(name=f"bk_{kind.value}_id", kind=Kind.INT, required=True, maximum=maximum),
        Field(name=f"bk_{kind.value}_name", kind=Kind.TEXT, description=f"At most {_NAME_CHARS} characters."),
    ]
    if template is not None:
        fields.append(Field(name=template, kind=Kind.INT, maximum=MAX_HOST_ID))
    if below is not None:
        fields.append(below)
    return Contract(f"Inventory{kind.value.title()}", "", tuple(fields), documented=())


TOPO_MODULE = _topology_level(TopoObject.MODULE, MAX_HOST_ID, "service_template_id", None)
TOPO_SET = _topology_level(
    TopoObject.SET,
    MAX_HOST_ID,
    "set_template_id",
    Field(name="modules", kind=Kind.OBJECTS, noun="modules", item=TOPO_MODULE),
)
TOPO_BIZ = _topology_level(
    TopoObject.BIZ, MAX_INT32, None, Field(name="sets", kind=Kind.OBJECTS, noun="sets", item=TOPO_SET)
)
# what a host of the inventory has besides install_job's fields (``INSTALL_HOST``, which reads those)
HOST_EXTRA = Contract(
    "InventoryHostExtra",
    "",
    (
        Field(name="bk_supplier_account", kind=Kind.TEXT, default="0", description="At most 64 characters."),
        Field(name="bk_host_name", kind=Kind.TEXT, description="At most 128 characters."),
        Field(name="outer_ip", kind=Kind.TEXT, description="An IPv4 or IPv6 address."),
        Field(
            name="modules",
            kind=Kind.INT_LIST,
            noun="bk_module_ids",
            maximum=MAX_HOST_ID,
            description="The bk_module_ids it is placed in; left out, its placement is kept.",
        ),
    ),
    documented=(),
)
INVENTORY_HOST = Contract(
    "InventoryHost",
    "A host: install_job's fields (its login is optional), and where it is placed.",
    (*INSTALL_HOST.fields, *HOST_EXTRA.fields),
    documented=(),
)
SERVICE_INSTANCE = Contract(
    "InventoryServiceInstance",
    "A service instance, on a host given by bk_host_id, or by ip and bk_cloud_id.",
    (
        Field(name="id", kind=Kind.INT, maximum=MAX_HOST_ID),
        Field(name="name", kind=Kind.TEXT, description="At most 128 characters."),
        Field(name="bk_module_id", kind=Kind.INT, required=True, maximum=MAX_HOST_ID),
        Field(name="bk_host_id", kind=Kind.INT, maximum=MAX_HOST_ID),
        Field(name="ip", kind=Kind.TEXT, description="The host's inner IP (also as inner_ip)."),
        Field(name="inner_ip", kind=Kind.TEXT),
        Field(name="bk_cloud_id", kind=Kind.INT, default=0, minimum=0, maximum=MAX_INT32),
        Field(name="processes", kind=Kind.OBJECTS, noun="process objects", default=[]),
    ),
    documented=(),
)
INVENTORY = Contract(
    "Inventory",
    "The JSON form of an inventory.",
    (
        Field(name="topology", kind=Kind.OBJECTS, noun="businesses", item=TOPO_BIZ),
        Field(name="hosts", kind=Kind.OBJECTS, noun="hosts", max_items=MAX_ITEMS, item=INVENTORY_HOST),
        Field(
            name="service_instances",
            kind=Kind.OBJECTS,
            noun="service instances",
            max_items=MAX_ITEMS,
            item=SERVICE_INSTANCE,
        ),
    ),
    documented=(),
)


def parse_inventory(raw: object) -> ParsedInventory:
    """Validate an inventory object; one InvalidInput names every bad field (``hosts[3].inner_ip``)."""
    problems: dict[str, str] = {}
    inventory_object = one_object(raw, "inventory", problems, required=True)
    if inventory_object is None:
        raise InvalidInput(problems)
    values = INVENTORY.gather(inventory_object, problems)
    topology = _topology(values.objects("topology"), problems)
    items = values.objects("hosts")
    sent = {index: (where, item) for index, where, item in items}
    hosts: list[tuple[HostRequest, dict[str, Any], bool]] = []
    for request in read_hosts(items, problems):
        where, item = sent[request.index]
        extra = _host_extra(item, where, problems)
        hosts.append((request, extra, any(item.get(name) not in (None, "") for name in LOGIN_FIELDS)))
    services = _services(values.objects("service_instances"), problems)
    if problems:
        raise InvalidInput(problems)
    return ParsedInventory(topology=topology, hosts=hosts, services=services)


Objects = list[tuple[int, str, Mapping[str, object]]]


def _topology(businesses: Objects, problems: dict[str, str]) -> list[TopoRow]:
    """The rows of the businesses, then of each one's sets and modules, each read by its contract."""
    rows: list[TopoRow] = []
    _topology_rows(TopoObject.BIZ, businesses, None, None, rows, problems)
    return rows


# each level of the topology: its contract, its template field, and the field of the level below it
_LEVELS: dict[TopoObject, tuple[Contract, str | None, TopoObject | None]] = {
    TopoObject.BIZ: (TOPO_BIZ, None, TopoObject.SET),
    TopoObject.SET: (TOPO_SET, "set_template_id", TopoObject.MODULE),
    TopoObject.MODULE: (TOPO_MODULE, "service_template_id", None),
}


def _topology_rows(
    kind: TopoObject,
    items: Objects,
    biz_id: int | None,
    parent: tuple[str, int] | None,
    rows: list[TopoRow],
    problems: dict[str, str],
) -> None:
    """Append the rows of ``items`` (of level ``kind``, under ``parent``), each followed by those below it."""
    contract, template, below = _LEVELS[kind]
    for _index, where, item in items:
        values = contract.gather(item, problems, prefix=where)
        inst_id = values.integer(f"bk_{kind.value}_id")
        if inst_id is None:
            continue
        biz = inst_id if biz_id is None else biz_id
        name = _text(values[f"bk_{kind.value}_name"], f"{where}.bk_{kind.value}_name", problems, _NAME_CHARS)
        rows.append(
            TopoRow(
                where=where,
                bk_obj_id=kind.value,
                bk_inst_id=inst_id,
                name=name or "",
                bk_biz_id=biz,
                parent=parent,
                template_id=None if template is None else values.integer(template),
            )
        )
        if below is not None:
            below_items = values.objects(f"{below.value}s")
            _topology_rows(below, below_items, biz, (kind.value, inst_id), rows, problems)


def _text(value: object, name: str, problems: dict[str, str], limit: int) -> str | None:
    """A name of at most ``limit`` characters (a number is taken as its text); None when absent or bad."""
    if value in (None, ""):
        return None
    if not isinstance(value, str | int) or len(str(value)) > limit:
        problems[name] = f"must be a string of at most {limit} characters"
        return None
    return str(value)


def _host_extra(item: Mapping[str, object], where: str, problems: dict[str, str]) -> dict[str, Any]:
    """What the inventory keeps of a host besides its ``HostRequest``: ``HOST_EXTRA``'s fields."""
    values = HOST_EXTRA.gather(item, problems, prefix=where)
    # modules left out keep the host's placement; [] takes it out of every module
    modules = None if item.get("modules") is None else tuple(values.integers("modules"))
    outer = _text(values["outer_ip"], f"{where}.outer_ip", problems, _TEXT_CHARS)
    if outer is not None:
        try:
            outer = HostKey.of(outer, 0).ip
        except InvalidInput:
            problems[f"{where}.outer_ip"] = f"{outer!r} is not an IP address"
    return {
        "bk_supplier_account": _text(
            values["bk_supplier_account"], f"{where}.bk_supplier_account", problems, _TEXT_CHARS
        )
        or "0",
        "bk_host_name": _text(values["bk_host_name"], f"{where}.bk_host_name", problems, _NAME_CHARS),
        "outer_ip": outer,
        "modules": modules,
    }


def _services(items: Objects, problems: dict[str, str]) -> list[ServiceRow]:
    """Each service instance read by ``SERVICE_INSTANCE``; its host by bk_host_id, or by ip and bk_cloud_id."""
    rows: list[ServiceRow] = []
    for _index, where, item in items:
        bad = len(problems)
        values = SERVICE_INSTANCE.gather(item, problems, prefix=where)
        module_id, host_id = values.integer("bk_module_id"), values.integer("bk_host_id")
        key = None
        if host_id is None:
            ip = values["ip"] or values["inner_ip"]
            try:
                key = HostKey.of(str(ip or ""), values.integer("bk_cloud_id") or 0)
            except InvalidInput:
                problems[where] = "needs bk_host_id, or ip and bk_cloud_id of a host of the inventory"
        name = _text(values["name"], f"{where}.name", problems, _NAME_CHARS) or ""
        if len(problems) == bad and module_id is not None:
            rows.append(
                ServiceRow(
                    where=where,
                    id=values.integer("id"),
                    name=name,
                    bk_module_id=module_id,
                    bk_host_id=host_id,
                    host_key=key,
                    processes=[dict(process) for _i, _where, process in values.objects("processes")],
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
        Field(name="inventory", kind=Kind.OBJECT, item=INVENTORY, description="{topology, hosts, service_instances}."),
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
        Field(
            name="status",
            kind=Kind.LIST,
            noun="agent statuses",
            max_items=len(AgentStatus),
            description="Only hosts whose agent has one of these statuses (RUNNING, TERMINATED, NOT_INSTALLED...).",
        ),
        Field(
            name="agent_status_count",
            kind=Kind.BOOL,
            default=False,
            description="Also answer agent_status_count {total, RUNNING, NOT_INSTALLED, TERMINATED} of every "
            "matching host.",
        ),
    ),
)
BIZ = Contract("BizRequest", "", (_BIZ_ID,))
MAX_NODES = 500
NODE_COMBINATION = "查询节点属性组合必须为(bk_biz_id, bk_inst_id, bk_obj_id)"
TOPO_NODE = Contract(
    "TopoNodeRef",
    "A business, set or module of the inventory; a business may leave bk_inst_id out.",
    (
        Field(name="bk_biz_id", kind=Kind.INT, required=True, maximum=MAX_INT32),
        Field(name="bk_inst_id", kind=Kind.INT, maximum=MAX_HOST_ID),
        Field(name="bk_obj_id", kind=Kind.CHOICE, choices=tuple(kind.value for kind in TopoObject)),
    ),
    documented=(),
)
NODE_COUNTS = Contract(
    "NodeCountsRequest",
    "",
    (Field(name="nodes", kind=Kind.OBJECTS, required=True, noun="nodes", max_items=MAX_NODES, item=TOPO_NODE),),
)
REQUESTS = (IMPORT, EXPORT, HOST_SEARCH, BIZ, NODE_COUNTS)
AGENT_STATUSES = frozenset(AgentStatus)
AGENT_VIEW_ACTION = "agent_view"  # the IAM action the status counts need, on the business of every node


def _read_nodes(params: Mapping[str, object]) -> list[tuple[str, HostQuery, dict[str, Any]]]:
    """Each node of a counts request: its name, the query of its hosts and how the answer names it. A node is
    ``(bk_biz_id, bk_inst_id, bk_obj_id)``, a business's bk_inst_id (its bk_biz_id) may be left out."""
    problems: dict[str, str] = {}
    found: list[tuple[str, HostQuery, dict[str, Any]]] = []
    for _index, where, item in NODE_COUNTS.gather(params, problems).objects("nodes"):
        bad = len(problems)
        values = TOPO_NODE.gather(item, problems, prefix=where)
        biz, inst, kind = values.integer("bk_biz_id"), values.integer("bk_inst_id"), values.text("bk_obj_id")
        if len(problems) > bad or biz is None:
            continue
        if kind is None or (kind != TopoObject.BIZ.value and inst is None):
            problems[where] = NODE_COMBINATION
            continue
        if kind == TopoObject.BIZ.value and inst not in (None, biz):
            problems[f"{where}.bk_inst_id"] = f"a business node's bk_inst_id is its bk_biz_id ({biz}), not {inst}"
            continue
        query = HostQuery(
            bk_biz_ids=frozenset({biz}),
            bk_set_id=inst if kind == TopoObject.SET.value else None,
            bk_module_id=inst if kind == TopoObject.MODULE.value else None,
        )
        found.append((where, query, {"bk_biz_id": biz, "bk_inst_id": biz if inst is None else inst, "bk_obj_id": kind}))
    NODE_COUNTS.check(problems)
    return found


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
        with self.db.session() as session:
            sent = [host for host, _extra, _login in parsed.hosts]
            settled = cloud_areas.settle_hosts(session, sent, row_name=parsed.row_name)
            rows = [
                self._host_row(host, extra, has_login)
                for host, (_sent, extra, has_login) in zip(settled, parsed.hosts, strict=True)
            ]
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
        statuses: list[str] = []
        for name, status in values.items("status"):
            if isinstance(status, str) and status in AGENT_STATUSES:
                statuses.append(status)
            else:
                problems[name] = f"{str(status)[:40]!r} is not an agent status: one of {', '.join(AgentStatus)}"
        HOST_SEARCH.check(problems)
        query = HostQuery(
            bk_biz_ids=self._visible(caller, values.integer("bk_biz_id")),
            bk_cloud_id=values.integer("bk_cloud_id"),
            ip=ip if isinstance(ip, str) else None,
            os_type=os_type.upper() if isinstance(os_type, str) else None,
            bk_set_id=values.integer("bk_set_id"),
            bk_module_id=values.integer("bk_module_id"),
            bk_host_ids=tuple(values.integers("bk_host_id")),
            agent_statuses=tuple(statuses),
        )
        counted = values.flag("agent_status_count")

        def read() -> dict[str, Any]:
            with self.db.session() as session:
                offset = 0 if pagesize == -1 else (page - 1) * pagesize
                total, rows = inventory.search_hosts(
                    session, query, offset=offset, limit=None if pagesize == -1 else pagesize
                )
                by_status = inventory.count_by_status(session, query) if counted else None
            if pagesize != -1 and page > 1 and offset >= total:
                raise out_of_range("page", page, total=total, pagesize=pagesize, noun="hosts")
            found: dict[str, Any] = {"total": total, "list": rows}
            if by_status is not None:
                found["agent_status_count"] = agent_status_count(by_status)
            return found

        return await self.db.call(read)

    async def agent_status(self, caller: Caller, params: Mapping[str, object]) -> list[dict[str, Any]]:
        """``POST /api/v2/host/agent_status/``: each node with the agent statuses of its hosts counted."""
        return await self._node_counts(
            caller, params, lambda by_status: {"agent_status_count": agent_status_count(by_status)}
        )

    async def node_statistic(self, caller: Caller, params: Mapping[str, object]) -> list[dict[str, Any]]:
        """``POST /api/v2/host/node_statistic/``: each node with how many hosts it holds."""
        return await self._node_counts(caller, params, lambda by_status: {"host_count": sum(by_status.values())})

    async def _node_counts(
        self,
        caller: Caller,
        params: Mapping[str, object],
        answer: Callable[[dict[str, int]], dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Each node of the request with ``answer`` of its hosts counted per agent status. The order of checks:
        the request, the caller's right on every node's business (before anything is read, so a refusal tells
        nothing of what the inventory holds), then every node must be in the inventory (3800001 naming those
        that are not)."""
        nodes = _read_nodes(params)
        rows: dict[int, list[str]] = {}
        for where, _query, node in nodes:
            rows.setdefault(node["bk_biz_id"], []).append(where)
        require_biz(caller, rows, rows=rows, action=AGENT_VIEW_ACTION)

        def read() -> list[dict[str, Any]]:
            counted: list[dict[str, Any]] = []
            problems: dict[str, str] = {}
            with self.db.session() as session:
                for where, query, node in nodes:
                    if not inventory.topo_node_exists(session, **node):
                        problems[where] = (
                            f"the inventory has no {node['bk_obj_id']} {node['bk_inst_id']} in business "
                            f"{node['bk_biz_id']} (import it with /api/inventory/import/)"
                        )
                    elif not problems:
                        counted.append(node | answer(inventory.count_by_status(session, query)))
            NODE_COUNTS.check(problems)
            return counted

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
