"""Cloud areas (管控区域, network spec §12): their rows, and what their hosts say about them (node and proxy counts,
the proxies, the businesses). Area 0, the direct area, has no row: its hosts are counted like any other's."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from nodeops.store.db import lock_for_update
from nodeops.store.models import CloudArea, Host

DIRECT_AREA_ID = 0  # Node Manager's DEFAULT_CLOUD
PROXY = "PROXY"
PAGENT = "PAGENT"
RUNNING = "RUNNING"
LOCK = "cloud_areas"  # serializes the writers deciding on a name or on the hosts of an area


@dataclass(slots=True)
class AreaHosts:
    """What an area's hosts say about it: its P-Agents, its proxies (their rows for the list), how many proxies
    run, whether one is not running and whether one lacks credentials (Node Manager's exception)."""

    node_count: int = 0
    proxies: list[dict[str, Any]] = field(default_factory=list)
    alive_proxy_count: int = 0
    not_running: bool = False
    without_credentials: bool = False


def areas(session: Session, *, creator: str | None = None) -> list[CloudArea]:
    """Every area by id; with ``creator``, those whose creators include that user."""
    rows = list(session.scalars(select(CloudArea).order_by(CloudArea.bk_cloud_id)))
    return rows if creator is None else [row for row in rows if creator in (row.creator or [])]


def get(session: Session, bk_cloud_id: int) -> CloudArea | None:
    return session.get(CloudArea, bk_cloud_id)


def lock(session: Session) -> None:
    """Serialize with the other writers of areas (a name chosen, an area deleted while hosts arrive)."""
    lock_for_update(session, LOCK)


def name_taken(session: Session, name: str, *, other_than: int | None = None) -> bool:
    query = select(CloudArea.bk_cloud_id).where(CloudArea.bk_cloud_name == name)
    if other_than is not None:
        query = query.where(CloudArea.bk_cloud_id != other_than)
    return session.scalars(query.limit(1)).first() is not None


def hosts_of_areas(session: Session, area_ids: Collection[int]) -> dict[int, AreaHosts]:
    """For each of ``area_ids``, its P-Agent count and its proxies (the list's fields)."""
    found: dict[int, AreaHosts] = defaultdict(AreaHosts)
    if not area_ids:
        return found
    ids = list(area_ids)
    counted = select(Host.bk_cloud_id, func.count()).where(Host.bk_cloud_id.in_(ids), Host.node_type == PAGENT)
    for area_id, count in session.execute(counted.group_by(Host.bk_cloud_id)):
        found[area_id].node_count = count
    proxies = select(
        Host.bk_cloud_id,
        Host.bk_host_id,
        Host.inner_ip,
        Host.inner_ipv6,
        Host.outer_ip,
        Host.agent_status,
        Host.password_enc.is_not(None),
        Host.key_enc.is_not(None),
    ).where(Host.bk_cloud_id.in_(ids), Host.node_type == PROXY)
    for area_id, host_id, inner_ip, inner_ipv6, outer_ip, status, has_password, has_key in session.execute(
        proxies.order_by(Host.bk_host_id)
    ):
        area = found[area_id]
        area.proxies.append(
            {
                "bk_cloud_id": area_id,
                "inner_ip": inner_ip or "",
                "inner_ipv6": inner_ipv6 or "",
                "outer_ip": outer_ip or "",
                "outer_ipv6": "",
                "bk_host_id": host_id,
                "bk_agent_id": None,
            }
        )
        area.alive_proxy_count += status == RUNNING
        area.not_running |= status != RUNNING
        area.without_credentials |= not (has_password or has_key)
    return found


def host_count(session: Session, bk_cloud_id: int) -> int:
    """How many hosts (proxies included) are in the area."""
    return session.scalar(select(func.count()).select_from(Host).where(Host.bk_cloud_id == bk_cloud_id)) or 0


def biz_ids(session: Session, bk_cloud_id: int) -> list[int]:
    """The distinct businesses of the area's hosts, sorted."""
    query = select(Host.bk_biz_id).where(Host.bk_cloud_id == bk_cloud_id).distinct().order_by(Host.bk_biz_id)
    return list(session.scalars(query))


def area_access_points(session: Session, area_ids: Collection[int]) -> dict[int, int]:
    """The existing areas among ``area_ids`` and the ``ap_id`` of each (-1: 自动选择接入点); area 0 is -1."""
    found = {DIRECT_AREA_ID: -1} if DIRECT_AREA_ID in area_ids else {}
    others = [area_id for area_id in area_ids if area_id != DIRECT_AREA_ID]
    if others:
        query = select(CloudArea.bk_cloud_id, CloudArea.ap_id).where(CloudArea.bk_cloud_id.in_(others))
        found.update({area_id: ap_id for area_id, ap_id in session.execute(query)})
    return found


def names_using_access_point(session: Session, ap_id: int) -> list[str]:
    """The names of the areas whose access point is ``ap_id``."""
    query = select(CloudArea.bk_cloud_name).where(CloudArea.ap_id == ap_id).order_by(CloudArea.bk_cloud_id)
    return list(session.scalars(query))


def access_points_in_use(session: Session) -> list[int]:
    """The distinct ``ap_id`` of the areas (Node Manager's ap_is_using), -1 included when an area has it."""
    return list(session.scalars(select(CloudArea.ap_id).distinct().order_by(CloudArea.ap_id)))
