"""The inventory: hosts with their placement in the topology (business → set → module), service instances, and
the resolution of a subscription's scope into the instances under it.

Imports, searches and exports are ORM work on a session; a scope is resolved with a handful of indexed queries
whatever its size. Imports only ``domain`` and the models.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, delete, func, or_, select
from sqlalchemy.orm import Session

from nodeops.domain.agent_status import status_display
from nodeops.domain.instance_id import HostKey, InstanceId, NodeType, ObjectType, host_instance_id
from nodeops.domain.scope import Scope, ScopeNode, ScopeNodeType, ScopeObject, TopoObject
from nodeops.errors import InvalidInput
from nodeops.store.db import follow_explicit_id
from nodeops.store.hosts import Login, claim_host, copy_login, find_host_id, lock_hosts
from nodeops.store.models import Host, HostModule, ServiceInstance, TopoNode

TEMPLATE_OBJECTS = {"service_template": TopoObject.MODULE.value, "set_template": TopoObject.SET.value}


@dataclass(frozen=True, slots=True, kw_only=True)
class TopoRow:
    """A business, set or module to create or rename; ``parent`` is ``(bk_obj_id, bk_inst_id)``."""

    where: str
    bk_obj_id: str
    bk_inst_id: int
    name: str
    bk_biz_id: int
    parent: tuple[str, int] | None = None
    template_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HostRow:
    """A host to create or update. ``login`` (None: keep the host's) replaces its way in; ``modules`` (None: keep
    the host's placement) replaces the modules the host is in."""

    where: str
    bk_host_id: int | None
    bk_biz_id: int
    bk_cloud_id: int
    bk_supplier_account: str
    bk_host_name: str | None
    inner_ip: str | None
    inner_ipv6: str | None
    outer_ip: str | None
    os_type: str
    modules: tuple[int, ...] | None
    login: Login | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceRow:
    """A service instance to create or update, on the host with ``bk_host_id`` or at ``host_key``."""

    where: str
    id: int | None
    name: str
    bk_module_id: int
    bk_host_id: int | None
    host_key: HostKey | None
    processes: list[Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportResult:
    created_host_ids: list[int]
    updated_host_ids: list[int]
    topo_nodes: int
    service_instance_ids: list[int]


def apply_inventory(
    session: Session, *, topology: Sequence[TopoRow], hosts: Sequence[HostRow], services: Sequence[ServiceRow]
) -> ImportResult:
    """Create or update the topology, then the hosts (and their placement), then the service instances.

    Raises InvalidInput naming each row that contradicts the inventory (a parent or module that does not exist,
    a module of another business, an address taken by another host); the caller's transaction then rolls back.
    """
    problems: dict[str, str] = {}
    lock_hosts(session)  # an install registering the same address waits, and the other way round
    nodes = {(n.bk_obj_id, n.bk_inst_id): n for n in _topo_nodes(session, topology)}
    for row in topology:
        parent_id: int | None = None
        if row.parent is not None:
            parent = nodes.get(row.parent)
            if parent is None:
                problems[row.where] = f"its parent {row.parent[0]} {row.parent[1]} is not in the inventory"
                continue
            parent_id = parent.id
        node = nodes.get((row.bk_obj_id, row.bk_inst_id))
        if node is None:
            node = TopoNode(bk_obj_id=row.bk_obj_id, bk_inst_id=row.bk_inst_id)
            session.add(node)
            nodes[(row.bk_obj_id, row.bk_inst_id)] = node
        elif node.bk_biz_id != row.bk_biz_id:
            problems[row.where] = (
                f"{row.bk_obj_id} {row.bk_inst_id} belongs to business {node.bk_biz_id}, not {row.bk_biz_id}"
            )
            continue
        node.bk_inst_name = row.name
        node.bk_biz_id = row.bk_biz_id
        node.parent_id = parent_id
        node.template_id = row.template_id
        session.flush()
    module_biz = _module_biz(session, {m for h in hosts for m in h.modules or ()})
    created: list[int] = []
    updated: list[int] = []
    host_ids: dict[str, int] = {}
    for host in hosts:
        host_id = _save_host(session, host, module_biz, problems)
        if host_id is not None:
            (updated if host_id > 0 else created).append(abs(host_id))
            host_ids[host.where] = abs(host_id)
    service_ids = [sid for row in services if (sid := _save_service(session, row, module_biz, problems)) is not None]
    if problems:
        raise InvalidInput(problems)
    return ImportResult(
        created_host_ids=created,
        updated_host_ids=updated,
        topo_nodes=len(topology),
        service_instance_ids=service_ids,
    )


def businesses_touched(
    session: Session, *, topology: Sequence[TopoRow], hosts: Sequence[HostRow], services: Sequence[ServiceRow]
) -> dict[int, list[str]]:
    """``bk_biz_id -> [row where]``: each business an import would write to, with the rows that write to it.

    A row touches the business it names and every business its rows are in now: a topology node's own and its
    parent's; a host's (found by bk_host_id and by address) and those of the modules it is placed in; a service
    instance's own (by id), its host's and its module's (from the database, or from the import's topology for a
    new module). Call it before ``apply_inventory`` in the same session: it takes the hosts lock first, so the
    answer stays true until the session ends.
    """
    lock_hosts(session)
    touched: dict[int, list[str]] = {}

    def touch(biz: int | None, where: str) -> None:
        if biz is not None and where not in (rows := touched.setdefault(int(biz), [])):
            rows.append(where)

    nodes = {(n.bk_obj_id, n.bk_inst_id): n.bk_biz_id for n in _topo_nodes(session, topology)}
    for row in topology:
        touch(row.bk_biz_id, row.where)
        touch(nodes.get((row.bk_obj_id, row.bk_inst_id)), row.where)
        if row.parent is not None:
            touch(nodes.get(row.parent), row.where)
    module_biz = _module_biz(session, {m for h in hosts for m in h.modules or ()} | {s.bk_module_id for s in services})
    for host in hosts:
        touch(host.bk_biz_id, host.where)
        for biz in _host_biz_ids(session, host.bk_host_id, host.bk_cloud_id, host.inner_ip, host.inner_ipv6):
            touch(biz, host.where)
        for module in host.modules or ():
            touch(module_biz.get(module), f"{host.where}.modules")
    new_modules = {r.bk_inst_id: r.bk_biz_id for r in topology if r.bk_obj_id == TopoObject.MODULE.value}
    for service in services:
        touch(module_biz.get(service.bk_module_id, new_modules.get(service.bk_module_id)), service.where)
        key = service.host_key
        ipv4 = key.ip if key is not None and ":" not in key.ip else None
        ipv6 = key.ip if key is not None and ipv4 is None else None
        cloud = key.bk_cloud_id if key is not None else 0
        address = (ipv4, ipv6) if service.bk_host_id is None else (None, None)
        for biz in _host_biz_ids(session, service.bk_host_id, cloud, *address):
            touch(biz, service.where)
        if service.id is not None:
            now = session.scalar(select(ServiceInstance.bk_biz_id).where(ServiceInstance.id == service.id))
            touch(now, service.where)
    return touched


def _host_biz_ids(
    session: Session, bk_host_id: int | None, bk_cloud_id: int, inner_ip: str | None, inner_ipv6: str | None
) -> set[int]:
    """The businesses of the host with this id and of the one at this address (either may be absent)."""
    found: set[int] = set()
    if bk_host_id is not None:
        found.update(session.scalars(select(Host.bk_biz_id).where(Host.bk_host_id == bk_host_id)))
    if inner_ip or inner_ipv6:
        at_address = find_host_id(session, bk_cloud_id=bk_cloud_id, inner_ip=inner_ip, inner_ipv6=inner_ipv6)
        if at_address is not None and at_address != bk_host_id:
            found.update(session.scalars(select(Host.bk_biz_id).where(Host.bk_host_id == at_address)))
    return {int(biz) for biz in found}


def _topo_nodes(session: Session, rows: Sequence[TopoRow]) -> list[TopoNode]:
    wanted = {(r.bk_obj_id, r.bk_inst_id) for r in rows} | {r.parent for r in rows if r.parent is not None}
    if not wanted:
        return []
    found: list[TopoNode] = []
    for obj in {obj for obj, _ in wanted}:
        ids = [inst for o, inst in wanted if o == obj]
        found += session.scalars(select(TopoNode).where(TopoNode.bk_obj_id == obj, TopoNode.bk_inst_id.in_(ids)))
    return found


def _module_biz(session: Session, module_ids: set[int]) -> dict[int, int]:
    if not module_ids:
        return {}
    rows = session.execute(
        select(TopoNode.bk_inst_id, TopoNode.bk_biz_id).where(
            TopoNode.bk_obj_id == TopoObject.MODULE.value, TopoNode.bk_inst_id.in_(sorted(module_ids))
        )
    )
    return {int(inst): int(biz) for inst, biz in rows}


def _save_host(session: Session, row: HostRow, module_biz: Mapping[int, int], problems: dict[str, str]) -> int | None:
    """Create or update the host; returns its id, negated when it was created (None on a problem)."""
    at_address = find_host_id(session, bk_cloud_id=row.bk_cloud_id, inner_ip=row.inner_ip, inner_ipv6=row.inner_ipv6)
    if row.bk_host_id is not None and at_address is not None and at_address != row.bk_host_id:
        problems[row.where] = (
            f"{row.inner_ip or row.inner_ipv6} in cloud area {row.bk_cloud_id} is host {at_address}, "
            f"not bk_host_id {row.bk_host_id}"
        )
        return None
    for module in row.modules or ():
        biz = module_biz.get(module)
        if biz is None:
            problems[f"{row.where}.modules"] = f"module {module} is not in the inventory; add it under topology"
            return None
        if biz != row.bk_biz_id:
            problems[f"{row.where}.modules"] = f"module {module} is in business {biz}, not {row.bk_biz_id}"
            return None
    host, is_new = claim_host(session, row.bk_host_id or at_address, bk_host_id=row.bk_host_id, bk_biz_id=row.bk_biz_id)
    host.bk_cloud_id = row.bk_cloud_id
    host.bk_supplier_account = row.bk_supplier_account
    host.bk_host_name = row.bk_host_name
    host.inner_ip = row.inner_ip
    host.inner_ipv6 = row.inner_ipv6
    host.outer_ip = row.outer_ip
    host.os_type = row.os_type
    if row.login is not None:
        copy_login(host, row.login)
    session.flush()
    if row.modules is not None:
        session.execute(delete(HostModule).where(HostModule.bk_host_id == host.bk_host_id))
        session.add_all(HostModule(bk_host_id=host.bk_host_id, bk_module_id=m) for m in dict.fromkeys(row.modules))
        session.flush()
    return -host.bk_host_id if is_new else host.bk_host_id


def _save_service(
    session: Session, row: ServiceRow, module_biz: Mapping[int, int], problems: dict[str, str]
) -> int | None:
    host_id = row.bk_host_id
    if host_id is None and row.host_key is not None:
        key = row.host_key
        ipv4 = key.ip if ":" not in key.ip else None
        host_id = find_host_id(session, bk_cloud_id=key.bk_cloud_id, inner_ip=ipv4, inner_ipv6=None if ipv4 else key.ip)
    if host_id is None or session.get(Host, host_id) is None:
        problems[row.where] = "its host is not in the inventory (give bk_host_id, or ip and bk_cloud_id of a host)"
        return None
    placed = session.scalar(
        select(func.count())
        .select_from(HostModule)
        .where(HostModule.bk_host_id == host_id, HostModule.bk_module_id == row.bk_module_id)
    )
    if not placed:
        problems[f"{row.where}.bk_module_id"] = f"host {host_id} is not in module {row.bk_module_id}"
        return None
    # every read before the new instance joins the session: a query would flush it half-filled
    biz = module_biz.get(row.bk_module_id) or _biz_of_module(session, row.bk_module_id)
    instance = session.get(ServiceInstance, row.id) if row.id is not None else None
    created = instance is None
    if instance is None:
        instance = ServiceInstance(id=row.id) if row.id is not None else ServiceInstance()
        session.add(instance)
    instance.name = row.name
    instance.bk_host_id = host_id
    instance.bk_module_id = row.bk_module_id
    instance.bk_biz_id = biz
    instance.processes = list(row.processes)
    session.flush()
    if created and row.id is not None:
        follow_explicit_id(session, ServiceInstance.__tablename__, "id", row.id)
    return instance.id


def _biz_of_module(session: Session, module_id: int) -> int:
    biz = session.scalar(
        select(TopoNode.bk_biz_id).where(
            TopoNode.bk_obj_id == TopoObject.MODULE.value, TopoNode.bk_inst_id == module_id
        )
    )
    return int(biz or 0)


# --- reads ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HostQuery:
    """Filters of a host search; ``bk_biz_ids`` None means every business."""

    bk_biz_ids: frozenset[int] | None = None
    bk_cloud_id: int | None = None
    ip: str | None = None
    os_type: str | None = None
    bk_set_id: int | None = None
    bk_module_id: int | None = None
    bk_host_ids: tuple[int, ...] = ()
    agent_statuses: tuple[str, ...] = ()  # any of these (empty: any status)


def _host_filter(query: HostQuery, statement: Select[Any]) -> Select[Any]:
    if query.bk_biz_ids is not None:
        statement = statement.where(Host.bk_biz_id.in_(sorted(query.bk_biz_ids)))
    if query.bk_cloud_id is not None:
        statement = statement.where(Host.bk_cloud_id == query.bk_cloud_id)
    if query.ip:
        pattern = "%" + query.ip.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        statement = statement.where(
            or_(
                Host.inner_ip.like(pattern, escape="\\"),
                Host.inner_ipv6.like(pattern, escape="\\"),
                Host.outer_ip.like(pattern, escape="\\"),
            )
        )
    if query.os_type:
        statement = statement.where(Host.os_type == query.os_type)
    if query.bk_host_ids:
        statement = statement.where(Host.bk_host_id.in_(query.bk_host_ids))
    if query.agent_statuses:
        statement = statement.where(Host.agent_status.in_(sorted(set(query.agent_statuses))))
    modules: Select[Any] | None = None
    if query.bk_module_id is not None:
        modules = select(HostModule.bk_host_id).where(HostModule.bk_module_id == query.bk_module_id)
    elif query.bk_set_id is not None:
        modules = select(HostModule.bk_host_id).where(
            HostModule.bk_module_id.in_(_children(TopoObject.SET, [query.bk_set_id]))
        )
    if modules is not None:
        statement = statement.where(Host.bk_host_id.in_(modules))
    return statement


def search_hosts(
    session: Session, query: HostQuery, *, offset: int, limit: int | None
) -> tuple[int, list[dict[str, Any]]]:
    """``(total, page)`` of the hosts matching ``query``, by bk_host_id; each with its modules and sets, and its
    agent's ``status`` and ``status_display`` as Node Manager's host list shows them."""
    total = int(session.scalar(_host_filter(query, select(func.count()).select_from(Host))) or 0)
    statement = _host_filter(query, select(Host)).order_by(Host.bk_host_id).offset(offset)
    if limit is not None:
        statement = statement.limit(limit)
    hosts = list(session.scalars(statement))
    placement = host_topology(session, [h.bk_host_id for h in hosts])
    return total, [
        host_summary(h)
        | {"status": h.agent_status, "status_display": status_display(h.agent_status)}
        | {"topo": placement.get(h.bk_host_id, [])}
        for h in hosts
    ]


def count_by_status(session: Session, query: HostQuery) -> dict[str, int]:
    """``agent_status -> hosts`` of the hosts matching ``query``: one grouped count."""
    statement = _host_filter(query, cast(Select[Any], select(Host.agent_status, func.count()).select_from(Host)))
    return {str(status): int(count) for status, count in session.execute(statement.group_by(Host.agent_status))}


def topo_node_exists(session: Session, *, bk_biz_id: int, bk_obj_id: str, bk_inst_id: int) -> bool:
    """Whether the inventory has this business (a topology node or a host of it), or this set or module of it."""
    if bk_obj_id == TopoObject.BIZ.value:
        if session.scalar(select(Host.bk_host_id).where(Host.bk_biz_id == bk_biz_id).limit(1)) is not None:
            return True
        statement = select(TopoNode.id).where(TopoNode.bk_biz_id == bk_biz_id)
    else:
        statement = select(TopoNode.id).where(
            TopoNode.bk_obj_id == bk_obj_id, TopoNode.bk_inst_id == bk_inst_id, TopoNode.bk_biz_id == bk_biz_id
        )
    return session.scalar(statement.limit(1)) is not None


def host_summary(host: Host) -> dict[str, Any]:
    """A host as the inventory shows it: identity, placement, OS and agent, never its login secrets."""
    return {
        "bk_host_id": host.bk_host_id,
        "bk_biz_id": host.bk_biz_id,
        "bk_cloud_id": host.bk_cloud_id,
        "bk_supplier_account": host.bk_supplier_account,
        "bk_host_name": host.bk_host_name,
        "inner_ip": host.inner_ip,
        "inner_ipv6": host.inner_ipv6,
        "outer_ip": host.outer_ip,
        "os_type": host.os_type,
        "agent_status": host.agent_status,
        "agent_version": host.agent_version,
    }


def host_topology(session: Session, host_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """``bk_host_id -> [{bk_set_id, bk_set_name, bk_module_id, bk_module_name}]``."""
    if not host_ids:
        return {}
    module = TopoNode.__table__.alias("module")
    parent = TopoNode.__table__.alias("parent")
    rows = session.execute(
        select(
            HostModule.bk_host_id,
            module.c.bk_inst_id,
            module.c.bk_inst_name,
            parent.c.bk_inst_id,
            parent.c.bk_inst_name,
        )
        .join(
            module, (module.c.bk_obj_id == TopoObject.MODULE.value) & (module.c.bk_inst_id == HostModule.bk_module_id)
        )
        .outerjoin(parent, parent.c.id == module.c.parent_id)
        .where(HostModule.bk_host_id.in_(list(host_ids)))
        .order_by(HostModule.bk_host_id, module.c.bk_inst_id)
    )
    placed: dict[int, list[dict[str, Any]]] = {}
    for host_id, module_id, module_name, set_id, set_name in rows:
        placed.setdefault(int(host_id), []).append(
            {"bk_set_id": set_id, "bk_set_name": set_name, "bk_module_id": module_id, "bk_module_name": module_name}
        )
    return placed


def topology(session: Session, bk_biz_ids: Iterable[int] | None) -> list[dict[str, Any]]:
    """The topology of these businesses (None: all) as nested ``{bk_obj_id, bk_inst_id, bk_inst_name, child}``."""
    statement = select(TopoNode).order_by(TopoNode.bk_biz_id, TopoNode.bk_obj_id, TopoNode.bk_inst_id)
    if bk_biz_ids is not None:
        statement = statement.where(TopoNode.bk_biz_id.in_(sorted(bk_biz_ids)))
    nodes = list(session.scalars(statement))
    counts = dict(
        (int(m), int(c))
        for m, c in session.execute(select(HostModule.bk_module_id, func.count()).group_by(HostModule.bk_module_id))
    )
    views: dict[int, dict[str, Any]] = {}
    for node in nodes:
        view: dict[str, Any] = {
            "bk_obj_id": node.bk_obj_id,
            "bk_inst_id": node.bk_inst_id,
            "bk_inst_name": node.bk_inst_name,
            "bk_biz_id": node.bk_biz_id,
            "child": [],
        }
        if node.bk_obj_id == TopoObject.SET.value:
            view["set_template_id"] = node.template_id
        if node.bk_obj_id == TopoObject.MODULE.value:
            view["service_template_id"] = node.template_id
            view["host_count"] = int(counts.get(node.bk_inst_id, 0))
        views[node.id] = view
    roots = []
    for node in nodes:
        if node.parent_id is not None and node.parent_id in views:
            views[node.parent_id]["child"].append(views[node.id])
        else:
            roots.append(views[node.id])
    return roots


def service_instances(session: Session, bk_biz_ids: frozenset[int] | None) -> list[dict[str, Any]]:
    statement = select(ServiceInstance).order_by(ServiceInstance.id)
    if bk_biz_ids is not None:
        statement = statement.where(ServiceInstance.bk_biz_id.in_(sorted(bk_biz_ids)))
    return [_service_view(s) for s in session.scalars(statement)]


def _service_view(instance: ServiceInstance) -> dict[str, Any]:
    return {
        "id": instance.id,
        "name": instance.name,
        "bk_biz_id": instance.bk_biz_id,
        "bk_host_id": instance.bk_host_id,
        "bk_module_id": instance.bk_module_id,
        "processes": list(instance.processes or []),
    }


def agent_states(session: Session, host_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """``bk_host_id -> {name, status, version, group_id}`` of the agent on each host (instance_status)."""
    if not host_ids:
        return {}
    rows = session.execute(
        select(Host.bk_host_id, Host.agent_status, Host.agent_version).where(Host.bk_host_id.in_(sorted(set(host_ids))))
    )
    return {
        int(host_id): {"name": "nodeops_agent", "status": status, "version": version or "", "group_id": ""}
        for host_id, status, version in rows
    }


# --- scopes ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ScopeTarget:
    """One instance a scope resolves to: a host, or a service instance on its host."""

    instance_id: str
    bk_host_id: int
    host_key: str | None  # null for service instances: the host forms name the host's own instance only
    bk_biz_id: int
    instance_info: dict[str, Any]


def missing_nodes(session: Session, scope: Scope) -> dict[int, str]:
    """``index -> why`` for each node of the scope the inventory lacks."""
    missing: dict[int, str] = {}
    for index, node in enumerate(scope.nodes):
        if scope.node_type == ScopeNodeType.INSTANCE and scope.object_type == ScopeObject.HOST:
            found = _host_ids_of(session, [node])
            if not found:
                missing[index] = f"no host {_node_name(node)} in the inventory; import it first"
        elif scope.node_type == ScopeNodeType.INSTANCE:
            if session.get(ServiceInstance, node.service_instance_id) is None:
                missing[index] = f"no service instance {node.service_instance_id} in the inventory"
        elif not _node_exists(session, scope, node):
            missing[index] = f"no {node.bk_obj_id} {node.bk_inst_id} in the inventory"
    return missing


def _node_name(node: ScopeNode) -> str:
    return str(node.bk_host_id) if node.bk_host_id is not None else f"{node.host_key}"


def _host_ids_of(session: Session, nodes: Sequence[ScopeNode]) -> list[int]:
    ids = [n.bk_host_id for n in nodes if n.bk_host_id is not None]
    found = list(session.scalars(select(Host.bk_host_id).where(Host.bk_host_id.in_(ids)))) if ids else []
    for node in nodes:
        if node.host_key is not None:
            key = node.host_key
            ipv4 = None if ":" in key.ip else key.ip
            host_id = find_host_id(
                session, bk_cloud_id=key.bk_cloud_id, inner_ip=ipv4, inner_ipv6=None if ipv4 else key.ip
            )
            if host_id is not None:
                found.append(host_id)
    return found


def _topo_ids(session: Session, scope: Scope, nodes: Sequence[ScopeNode]) -> list[int]:
    """The module ids under the scope's set, module or template nodes (business nodes are handled apart)."""
    modules: set[int] = set()
    sets: set[int] = set()
    for node in nodes:
        assert node.bk_obj_id is not None and node.bk_inst_id is not None
        if node.bk_obj_id in TEMPLATE_OBJECTS:
            statement = select(TopoNode.bk_inst_id).where(
                TopoNode.bk_obj_id == TEMPLATE_OBJECTS[node.bk_obj_id], TopoNode.template_id == node.bk_inst_id
            )
            if scope.bk_biz_id is not None:
                statement = statement.where(TopoNode.bk_biz_id == scope.bk_biz_id)
            found = {int(i) for i in session.scalars(statement)}
            (modules if node.bk_obj_id == "service_template" else sets).update(found)
        elif node.bk_obj_id == TopoObject.SET.value:
            sets.add(node.bk_inst_id)
        else:
            modules.add(node.bk_inst_id)
    if sets:
        modules.update(int(i) for i in session.scalars(_children(TopoObject.SET, sorted(sets))))
    return sorted(modules)


def _node_exists(session: Session, scope: Scope, node: ScopeNode) -> bool:
    """Whether the inventory has this topology or template node."""
    if node.bk_obj_id in TEMPLATE_OBJECTS:
        statement = select(TopoNode.id).where(
            TopoNode.bk_obj_id == TEMPLATE_OBJECTS[str(node.bk_obj_id)], TopoNode.template_id == node.bk_inst_id
        )
        if scope.bk_biz_id is not None:
            statement = statement.where(TopoNode.bk_biz_id == scope.bk_biz_id)
    elif node.bk_obj_id == TopoObject.BIZ.value:
        assert node.bk_inst_id is not None
        return topo_node_exists(
            session, bk_biz_id=node.bk_inst_id, bk_obj_id=node.bk_obj_id, bk_inst_id=node.bk_inst_id
        )
    else:
        statement = select(TopoNode.id).where(
            TopoNode.bk_obj_id == node.bk_obj_id, TopoNode.bk_inst_id == node.bk_inst_id
        )
    return session.scalar(statement.limit(1)) is not None


def _children(kind: TopoObject, inst_ids: Sequence[int]) -> Select[Any]:
    """The module ids whose parent is one of these sets."""
    parents = select(TopoNode.id).where(TopoNode.bk_obj_id == kind.value, TopoNode.bk_inst_id.in_(list(inst_ids)))
    return select(TopoNode.bk_inst_id).where(
        TopoNode.bk_obj_id == TopoObject.MODULE.value, TopoNode.parent_id.in_(parents)
    )


def resolve_scope(session: Session, scope: Scope) -> list[ScopeTarget]:
    """The instances under the scope now, in id order: hosts, or service instances (spec §4: always ``instance``
    ids, the host form by ``bk_host_id``)."""
    biz_ids = [n.bk_inst_id for n in scope.nodes if n.bk_obj_id == TopoObject.BIZ.value and n.bk_inst_id is not None]
    other = [n for n in scope.nodes if n.bk_obj_id is not None and n.bk_obj_id != TopoObject.BIZ.value]
    if scope.object_type == ScopeObject.HOST:
        if scope.node_type == ScopeNodeType.INSTANCE:
            host_ids = set(_host_ids_of(session, scope.nodes))
        else:
            host_ids = set()
            if biz_ids:
                host_ids.update(session.scalars(select(Host.bk_host_id).where(Host.bk_biz_id.in_(biz_ids))))
            if other:
                modules = _topo_ids(session, scope, other)
                host_ids.update(
                    session.scalars(select(HostModule.bk_host_id).where(HostModule.bk_module_id.in_(modules)))
                )
        hosts = session.scalars(select(Host).where(Host.bk_host_id.in_(sorted(host_ids))).order_by(Host.bk_host_id))
        return [_host_target(host) for host in hosts]
    if scope.node_type == ScopeNodeType.INSTANCE:
        condition: ColumnElement[bool] = ServiceInstance.id.in_([n.service_instance_id for n in scope.nodes])
    else:
        parts = []
        if biz_ids:
            parts.append(ServiceInstance.bk_biz_id.in_(biz_ids))
        if other:
            parts.append(ServiceInstance.bk_module_id.in_(_topo_ids(session, scope, other)))
        if not parts:
            return []
        condition = or_(*parts)
    rows = session.execute(
        select(ServiceInstance, Host).join(Host, Host.bk_host_id == ServiceInstance.bk_host_id).where(condition)
    ).all()
    return [_service_target(instance, host) for instance, host in sorted(rows, key=lambda r: r[0].id)]


def _host_info(host: Host) -> dict[str, Any]:
    return {
        "bk_host_id": host.bk_host_id,
        "bk_host_innerip": host.inner_ip or "",
        "bk_host_innerip_v6": host.inner_ipv6 or "",
        "bk_host_outerip": host.outer_ip or "",
        "bk_host_name": host.bk_host_name or "",
        "bk_cloud_id": host.bk_cloud_id,
        "bk_biz_id": host.bk_biz_id,
        "bk_supplier_account": host.bk_supplier_account,
        "os_type": host.os_type,
    }


def _host_target(host: Host) -> ScopeTarget:
    key = HostKey.of(host.inner_ip or host.inner_ipv6 or "", host.bk_cloud_id)
    return ScopeTarget(
        instance_id=str(host_instance_id(bk_host_id=host.bk_host_id)),
        bk_host_id=host.bk_host_id,
        host_key=str(key),
        bk_biz_id=host.bk_biz_id,
        instance_info={"host": _host_info(host)},
    )


def _service_target(instance: ServiceInstance, host: Host) -> ScopeTarget:
    ident = InstanceId(object_type=ObjectType.SERVICE, node_type=NodeType.INSTANCE, type="service", id=str(instance.id))
    return ScopeTarget(
        instance_id=str(ident),
        bk_host_id=host.bk_host_id,
        host_key=None,
        bk_biz_id=instance.bk_biz_id,
        instance_info={"host": _host_info(host), "service": _service_view(instance)},
    )


_NOT_EXPORTED = frozenset({"topo", "agent_status", "agent_version", "status", "status_display"})


def export_inventory(session: Session, bk_biz_ids: frozenset[int] | None) -> dict[str, Any]:
    """The inventory in the import's JSON shape (without any login secret): topology, hosts, service instances."""
    tree = topology(session, bk_biz_ids)
    exported_topology = []
    for biz in tree:
        if biz["bk_obj_id"] != TopoObject.BIZ.value:
            continue
        exported_topology.append(
            {
                "bk_biz_id": biz["bk_inst_id"],
                "bk_biz_name": biz["bk_inst_name"],
                "sets": [
                    {
                        "bk_set_id": s["bk_inst_id"],
                        "bk_set_name": s["bk_inst_name"],
                        "set_template_id": s.get("set_template_id"),
                        "modules": [
                            {
                                "bk_module_id": m["bk_inst_id"],
                                "bk_module_name": m["bk_inst_name"],
                                "service_template_id": m.get("service_template_id"),
                            }
                            for m in s["child"]
                        ],
                    }
                    for s in biz["child"]
                ],
            }
        )
    _total, hosts = search_hosts(session, HostQuery(bk_biz_ids=bk_biz_ids), offset=0, limit=None)
    logins = {
        h.bk_host_id: h
        for h in session.scalars(select(Host).where(Host.bk_host_id.in_([h["bk_host_id"] for h in hosts])))
    }
    exported_hosts = []
    for view in hosts:
        host = logins[view["bk_host_id"]]
        exported_hosts.append(
            {
                **{k: v for k, v in view.items() if k not in _NOT_EXPORTED},
                "modules": [t["bk_module_id"] for t in view["topo"]],
                "transport": host.transport,
                "port": host.ssh_port,
                "account": host.account,
                "auth_type": host.auth_type,
                "ap_id": host.ap_id,
                "setup_path": host.setup_path,
            }
        )
    return {
        "topology": exported_topology,
        "hosts": exported_hosts,
        "service_instances": service_instances(session, bk_biz_ids=bk_biz_ids),
    }
