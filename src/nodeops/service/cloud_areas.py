"""Cloud areas (管控区域, network spec §12): list, retrieve, create, update, delete, their businesses; and
``settle_hosts``, which install_job and a host import call to check each host's area and resolve its ``ap_id`` -1.

Area 0, the direct area (直连区域), has no row: the list synthesises it when asked (``with_default_area``) and
nobody may rename or delete it. Who may do what follows Node Manager without IAM: the list shows a superuser
every area and anyone else the areas they created; creating is open; reading one, changing it, deleting it and
its businesses need its creator or a superuser (3800403). Unlike Node Manager, ``ap_id`` must be -1 or an
existing access point (docs/compatibility.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from nodeops.domain.contract import Contract, Field, Kind
from nodeops.domain.params import MAX_INT32
from nodeops.errors import CloudAreaInUse, CloudAreaNotFound, InvalidInput
from nodeops.service import network_fields
from nodeops.service.auth import Caller
from nodeops.service.host_requests import AUTO_AP_ID, HostRequest
from nodeops.store import access_points as ap_rows
from nodeops.store import cloud_areas as area_rows
from nodeops.store import hosts as host_rows
from nodeops.store.db import Database, Session
from nodeops.store.models import CloudArea

DIRECT_AREA_ID = area_rows.DIRECT_AREA_ID
DIRECT_AREA_NAME = "直连区域"
AUTO_AP_NAME = "自动选择接入点"
MAX_NAME_CHARS = 45  # cloud_areas.bk_cloud_name, as Node Manager's Cloud
MAX_ISP_CHARS = 45
DEFAULT_ISP = "PrivateCloud"
# Node Manager's GlobalSettings ``isp`` entries nodeops knows: the display name of an isp key (else the key)
ISP_NAMES = {"PrivateCloud": "企业私有云"}

_NAME = Field(name="bk_cloud_name", kind=Kind.TEXT, description=f"1 to {MAX_NAME_CHARS} characters, unique.")
_ISP = Field(
    name="isp", kind=Kind.TEXT, description=f"云服务商 key, at most {MAX_ISP_CHARS} characters (default PrivateCloud)."
)
_AP_ID = Field(
    name="ap_id",
    kind=Kind.INT,
    minimum=AUTO_AP_ID,
    maximum=MAX_INT32,
    description="The area's access point: -1 (自动选择接入点, the default) or an existing ap_id.",
)
CLOUD_LIST = Contract(
    "CloudListRequest",
    "",
    (Field(name="with_default_area", kind=Kind.BOOL, default=False, description="Put area 0 first."),),
)
CLOUD_CREATE = Contract(
    "CloudCreateRequest",
    "Create a cloud area; its creator is the caller.",
    (replace(_NAME, required=True), _ISP, replace(_AP_ID, default=AUTO_AP_ID)),
)
CLOUD_UPDATE = Contract("CloudUpdateRequest", "Change a cloud area; a field left out is kept.", (_NAME, _ISP, _AP_ID))
CLOUD_ID = Field(name="bk_cloud_id", kind=Kind.INT, required=True, minimum=0, maximum=MAX_INT32)
CLOUD_PATH = Contract("CloudPath", "", (CLOUD_ID,), documented=())
REQUESTS = (CLOUD_LIST, CLOUD_CREATE, CLOUD_UPDATE)


def _ap_name(ap_id: int, names: Mapping[int, str]) -> str:
    return AUTO_AP_NAME if ap_id == AUTO_AP_ID else names.get(ap_id, "")


def _isp_fields(isp: str | None) -> dict[str, Any]:
    return {"isp_name": ISP_NAMES.get(isp or "", isp), "isp_icon": ""}


class CloudAreaService:
    """The cloud area APIs' use cases."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_areas(self, caller: Caller, params: Mapping[str, object]) -> list[dict[str, Any]]:
        """The areas the caller may see, with their hosts' counts and proxies (spec §12's list)."""
        with_default = CLOUD_LIST.read(params).flag("with_default_area")

        def read() -> list[dict[str, Any]]:
            with self.db.session() as session:
                rows = area_rows.areas(session, creator=None if caller.is_superuser else caller.username)
                hosts = area_rows.hosts_of_areas(session, [row.bk_cloud_id for row in rows])
                names = {ap.id: ap.name for ap in ap_rows.access_points(session)}
                listed = [self._listed(caller, row, hosts[row.bk_cloud_id], names) for row in rows]
            if with_default:
                direct = {"bk_cloud_id": DIRECT_AREA_ID, "bk_cloud_name": DIRECT_AREA_NAME, "ap_name": None}
                listed.insert(0, {**direct, "isp_name": None, "permissions": {"view": True}})
            return listed

        return await self.db.call(read)

    @staticmethod
    def _listed(
        caller: Caller, row: CloudArea, hosts: area_rows.AreaHosts, ap_names: Mapping[int, str]
    ) -> dict[str, Any]:
        exception = "abnormal" if hosts.not_running else "overdue" if hosts.without_credentials else ""
        editable = network_fields.can_edit_area(caller, row.creator)
        return {
            "bk_cloud_id": row.bk_cloud_id,
            "bk_cloud_name": row.bk_cloud_name,
            "isp": row.isp,
            "ap_id": row.ap_id,
            "is_visible": row.is_visible,
            "node_count": hosts.node_count,
            "proxy_count": len(hosts.proxies),
            "ap_name": _ap_name(row.ap_id, ap_names),
            **_isp_fields(row.isp),
            "exception": exception,
            "alive_proxy_count": hosts.alive_proxy_count,
            "proxies": hosts.proxies or None,
            "permissions": {"view": editable, "edit": editable, "delete": editable},
        }

    async def retrieve(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """One area (area 0 too, synthesised)."""
        area_id = _area_id(params)

        def read() -> dict[str, Any]:
            with self.db.session() as session:
                if area_id == DIRECT_AREA_ID:
                    isp, ap_id, name = None, AUTO_AP_ID, DIRECT_AREA_NAME
                else:
                    row = _area(session, area_id, caller, "查看")
                    isp, ap_id, name = row.isp, row.ap_id, row.bk_cloud_name
                ap = ap_rows.get(session, ap_id)
                ap_name = _ap_name(ap_id, {ap_id: ap.name} if ap else {})
            area = {"bk_cloud_id": area_id, "bk_cloud_name": name, "isp": isp, "ap_id": ap_id}
            return {**area, **_isp_fields(isp), "ap_name": ap_name}

        return await self.db.call(read)

    async def create(self, caller: Caller, params: Mapping[str, object]) -> dict[str, int]:
        """A new area, created by the caller; ``{"bk_cloud_id": n}``."""
        problems: dict[str, str] = {}
        values = CLOUD_CREATE.gather(params, problems)
        name = _name(values["bk_cloud_name"], problems, required=True)
        isp = network_fields.text(values["isp"], "isp", problems, limit=MAX_ISP_CHARS) or DEFAULT_ISP
        ap_id = values.integer("ap_id")
        CLOUD_CREATE.check(problems)
        assert name is not None and ap_id is not None

        def write() -> dict[str, int]:
            with self.db.session() as session:
                area_rows.lock(session)
                _check_name_and_ap(session, name, ap_id, other_than=None)
                row = CloudArea(bk_cloud_name=name, isp=isp, ap_id=ap_id, creator=[caller.username])
                session.add(row)
                session.flush()
                return {"bk_cloud_id": row.bk_cloud_id}

        return await self.db.call(write)

    async def update(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """Rename an area, change its isp or access point; its hosts are untouched (they take the new access point
        when next installed)."""
        area_id = _area_id(params)
        problems: dict[str, str] = {}
        values = CLOUD_UPDATE.gather(params, problems)
        name = _name(values["bk_cloud_name"], problems, required=params.get("bk_cloud_name") is not None)
        isp = network_fields.text(values["isp"], "isp", problems, limit=MAX_ISP_CHARS)
        ap_id = values.integer("ap_id")
        CLOUD_UPDATE.check(problems)

        def write() -> dict[str, Any]:
            with self.db.session() as session:
                area_rows.lock(session)
                row = _area(session, area_id, caller, "编辑")
                _check_name_and_ap(session, name, ap_id, other_than=area_id)
                if name is not None:
                    row.bk_cloud_name = name
                if isp is not None:
                    row.isp = isp
                if ap_id is not None:
                    row.ap_id = ap_id
            return {}

        return await self.db.call(write)

    async def destroy(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """Delete an area that holds no host (proxies included); its install channels stay, as in Node Manager."""
        area_id = _area_id(params)

        def write() -> dict[str, Any]:
            with self.db.session() as session:
                area_rows.lock(session)
                row = _area(session, area_id, caller, "删除")
                host_rows.lock_hosts(session)  # no host is registered in it until this ends
                count = area_rows.host_count(session, area_id)
                if count:
                    raise CloudAreaInUse(bk_cloud_id=area_id, hosts=count)
                session.delete(row)
            return {}

        return await self.db.call(write)

    async def biz(self, caller: Caller, params: Mapping[str, object]) -> list[int]:
        """The businesses of the area's hosts, sorted."""
        area_id = _area_id(params)

        def read() -> list[int]:
            with self.db.session() as session:
                if area_id == DIRECT_AREA_ID:
                    network_fields.require_area_right(caller, None, "查看")
                else:
                    _area(session, area_id, caller, "查看")
                return area_rows.biz_ids(session, area_id)

        return await self.db.call(read)


def _area_id(params: Mapping[str, object]) -> int:
    area_id = CLOUD_PATH.read(params).integer("bk_cloud_id")
    assert area_id is not None
    return area_id


def _area(session: Session, area_id: int, caller: Caller, action: str) -> CloudArea:
    """The area ``area_id`` if the caller may ``action`` it; area 0 has no row to change."""
    if area_id == DIRECT_AREA_ID and action != "查看":
        raise InvalidInput.field("bk_cloud_id", f"0 is the direct area ({DIRECT_AREA_NAME}): it cannot be changed")
    row = area_rows.get(session, area_id)
    if row is None:
        raise CloudAreaNotFound(bk_cloud_id=area_id)
    network_fields.require_area_right(caller, row.creator, action)
    return row


def _name(value: object, problems: dict[str, str], *, required: bool) -> str | None:
    name = network_fields.text(value, "bk_cloud_name", problems, limit=MAX_NAME_CHARS, required=required)
    if name == DIRECT_AREA_NAME:
        problems["bk_cloud_name"] = f"管控区域不可名为「{DIRECT_AREA_NAME}」: area 0 has this name"
        return None
    return name


def _check_name_and_ap(session: Session, name: str | None, ap_id: int | None, *, other_than: int | None) -> None:
    """Raise InvalidInput if another area has ``name``, or ``ap_id`` is neither -1 nor an existing access point."""
    problems: dict[str, str] = {}
    if name is not None and area_rows.name_taken(session, name, other_than=other_than):
        problems["bk_cloud_name"] = f"管控区域名称不可重复: another cloud area is named {name!r}"
    if ap_id is not None and ap_id != AUTO_AP_ID:
        ap_rows.lock(session)  # the access point is not deleted until this ends
    if ap_id is not None and ap_id != AUTO_AP_ID and ap_rows.get(session, ap_id) is None:
        problems["ap_id"] = f"接入点(id:{ap_id})不存在: give -1 (自动选择接入点) or an ap_id of GET /api/ap/"
    if problems:
        raise InvalidInput(problems)


def settle_hosts(
    session: Session, hosts: Sequence[HostRequest], *, row_name: Callable[[str], str] = str
) -> list[HostRequest]:
    """The hosts of an install request once their areas are known to exist (else InvalidInput naming
    ``hosts[i].bk_cloud_id``, or the row as ``row_name`` names ``hosts[i]``, before anything is written), each
    ``ap_id`` -1 (自动选择接入点) resolved: to its area's access point if the area has one, else to the default
    one (the lowest id). Takes the hosts lock first, as deleting an area does before it counts the area's hosts,
    so no area is deleted between this check and the hosts' registration."""
    host_rows.lock_hosts(session)
    areas = area_rows.area_access_points(session, {host.bk_cloud_id for host in hosts})
    problems = {
        f"{row_name(f'hosts[{host.index}]')}.bk_cloud_id": f"管控区域 {host.bk_cloud_id} 不存在: create it with "
        "POST /api/cloud/ first"
        for host in hosts
        if host.bk_cloud_id not in areas
    }
    if problems:
        raise InvalidInput(problems)
    if all(host.ap_id != AUTO_AP_ID for host in hosts):
        return list(hosts)
    default = ap_rows.lowest_id(session)
    settled: list[HostRequest] = []
    for host in hosts:
        area_ap = areas[host.bk_cloud_id]
        if host.ap_id == AUTO_AP_ID:
            # no access point at all (none was ever created) stays -1: the host is refused as unknown_ap
            host = replace(host, ap_id=area_ap if area_ap != AUTO_AP_ID else (default or AUTO_AP_ID))
        settled.append(host)
    return settled
