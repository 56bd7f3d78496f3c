"""The reads of the proxy lists (network spec §13.6): the proxies of cloud areas, the areas a business's hosts are
in, and what a proxy's row shows besides the host itself (its business's and access point's names, the P-Agents
reporting through it). A proxy is a host whose ``node_type`` is PROXY; ORM reads on the session, each indexed
(``hosts (bk_cloud_id, node_type)``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nodeops.domain.scope import TopoObject
from nodeops.store.models import AccessPoint, Host, TopoNode

PROXY, PAGENT = "PROXY", "PAGENT"


def proxies_in(session: Session, bk_cloud_ids: Collection[int], bk_biz_ids: frozenset[int] | None) -> list[Host]:
    """The proxies of these areas, of these businesses (None: any), by bk_host_id."""
    if not bk_cloud_ids:
        return []
    statement = select(Host).where(Host.bk_cloud_id.in_(sorted(bk_cloud_ids)), Host.node_type == PROXY)
    if bk_biz_ids is not None:
        statement = statement.where(Host.bk_biz_id.in_(sorted(bk_biz_ids)))
    return list(session.scalars(statement.order_by(Host.bk_host_id)))


def areas_of_biz(session: Session, bk_biz_id: int) -> list[int]:
    """The cloud areas holding a host of the business."""
    statement = select(Host.bk_cloud_id).where(Host.bk_biz_id == bk_biz_id).distinct()
    return sorted(int(area) for area in session.scalars(statement))


def biz_names(session: Session, bk_biz_ids: Collection[int]) -> dict[int, str]:
    """``bk_biz_id -> name`` of the businesses the inventory's topology names."""
    statement = select(TopoNode.bk_inst_id, TopoNode.bk_inst_name).where(
        TopoNode.bk_obj_id == TopoObject.BIZ.value, TopoNode.bk_inst_id.in_(sorted(bk_biz_ids))
    )
    return {int(biz): str(name) for biz, name in session.execute(statement)}


def access_point_names(session: Session, ap_ids: Collection[int]) -> dict[int, str]:
    statement = select(AccessPoint.id, AccessPoint.name).where(AccessPoint.id.in_(sorted(ap_ids)))
    return {int(ap): str(name) for ap, name in session.execute(statement)}


def pagent_upstreams(session: Session, bk_cloud_ids: Collection[int]) -> list[Sequence[Any]]:
    """The ``upstream_nodes`` of every P-Agent of these areas (the proxies it was installed through)."""
    if not bk_cloud_ids:
        return []
    statement = select(Host.upstream_nodes).where(
        Host.bk_cloud_id.in_(sorted(bk_cloud_ids)), Host.node_type == PAGENT, Host.upstream_nodes.is_not(None)
    )
    return [nodes for nodes in session.scalars(statement) if isinstance(nodes, list)]
