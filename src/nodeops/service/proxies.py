"""The proxy lists (network spec §13.6): ``proxies_host`` (the proxies of a cloud area, ESB ``list_cloud_proxies``)
and ``biz_proxies_host`` (the proxies serving a business's areas, ESB ``list_biz_proxies``), both GET.

A proxy is a host of the inventory with ``node_type`` PROXY (set when a proxy job runs on it). Every row is
checked: a caller sees the proxies of the businesses they are granted (superusers: all), and biz_proxies_host
needs the business asked for (``proxy_operate``). The rows keep Node Manager's fields; those nodeops has no
counterpart for answer their empty value (docs/compatibility.md, "Agent status and proxies").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from nodeops.domain.agent_status import status_display
from nodeops.domain.contract import Contract, Field, Kind
from nodeops.domain.params import MAX_INT32
from nodeops.service.auth import Caller
from nodeops.service.job_commands import require_biz
from nodeops.store import proxy_hosts
from nodeops.store.db import Database
from nodeops.store.models import Host, utcnow

PROXY_OPERATE_ACTION = "proxy_operate"
AUTO_AP_ID = -1  # 自动选择接入点: the area's access point, chosen when a job runs
AUTO_AP_NAME = "自动选择接入点"
STATIC_ADDRESSING = "static"  # CMDB's bk_addressing: nodeops' hosts keep their address

CLOUD_PROXIES = Contract(
    "CloudProxiesRequest",
    "The proxies of one cloud area.",
    (Field(name="bk_cloud_id", kind=Kind.INT, required=True, minimum=0, maximum=MAX_INT32),),
)
BIZ_PROXIES = Contract(
    "BizProxiesRequest",
    "The proxies of every cloud area holding a host of the business.",
    (Field(name="bk_biz_id", kind=Kind.INT, required=True, maximum=MAX_INT32),),
)


def _visible(caller: Caller) -> frozenset[int] | None:
    return None if caller.is_superuser else caller.biz_ids


def _ap_name(ap_id: int, names: Mapping[int, str]) -> str:
    return AUTO_AP_NAME if ap_id == AUTO_AP_ID else names.get(ap_id, "")


def _needs_credentials(host: Host, now: datetime) -> bool:
    """re_certification: no password and no key is kept (never given, dropped, or past its retention)."""
    if host.password_enc is None and host.key_enc is None:
        return True
    return host.credentials_expire_at is not None and host.credentials_expire_at <= now


def _pagent_count(host: Host, upstreams: Sequence[Sequence[Any]]) -> int:
    """The P-Agents whose upstream nodes hold one of the proxy's inner addresses."""
    addresses = {address for address in (host.inner_ip, host.inner_ipv6) if address}
    return sum(1 for nodes in upstreams if addresses.intersection(str(node) for node in nodes))


class ProxyService:
    """The proxy lists; cheap to build."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def cloud_proxies(self, caller: Caller, params: Mapping[str, object]) -> list[dict[str, Any]]:
        """``GET /api/host/proxies/?bk_cloud_id=``: the proxies of the area the caller may see, each row as
        Node Manager's ``proxies_host``."""
        area = CLOUD_PROXIES.read(params).integer("bk_cloud_id")
        assert area is not None
        visible = _visible(caller)

        def read() -> list[dict[str, Any]]:
            with self.db.session() as session:
                proxies = proxy_hosts.proxies_in(session, [area], visible)
                if not proxies:
                    return []
                bizs = proxy_hosts.biz_names(session, {host.bk_biz_id for host in proxies})
                aps = proxy_hosts.access_point_names(session, {host.ap_id for host in proxies})
                upstreams = proxy_hosts.pagent_upstreams(session, [area])
                now = utcnow()
                return [self._row(host, caller, bizs, aps, upstreams, now) for host in proxies]

        return await self.db.call(read)

    async def biz_proxies(self, caller: Caller, params: Mapping[str, object]) -> list[dict[str, Any]]:
        """``GET /api/host/biz_proxies/?bk_biz_id=``: the proxies of every area holding a host of the business
        (needs ``proxy_operate`` on it), each row as Node Manager's ``biz_proxies_host``."""
        biz = BIZ_PROXIES.read(params).integer("bk_biz_id")
        assert biz is not None
        require_biz(caller, [biz], rows={biz: ["bk_biz_id"]}, action=PROXY_OPERATE_ACTION)
        visible = _visible(caller)

        def read() -> list[dict[str, Any]]:
            with self.db.session() as session:
                areas = proxy_hosts.areas_of_biz(session, biz)
                return [
                    {"bk_cloud_id": host.bk_cloud_id, "bk_addressing": STATIC_ADDRESSING, **_address_row(host)}
                    for host in proxy_hosts.proxies_in(session, areas, visible)
                ]

        return await self.db.call(read)

    @staticmethod
    def _row(
        host: Host,
        caller: Caller,
        bizs: Mapping[int, str],
        aps: Mapping[int, str],
        upstreams: Sequence[Sequence[Any]],
        now: datetime,
    ) -> dict[str, Any]:
        return {
            "bk_cloud_id": host.bk_cloud_id,
            "bk_host_id": host.bk_host_id,
            **_address_row(host),
            "is_manual": False,
            "extra_data": {"setup_path": host.setup_path} if host.setup_path else {},
            "bk_biz_name": bizs.get(host.bk_biz_id, ""),
            "ap_id": host.ap_id,
            "ap_name": _ap_name(host.ap_id, aps),
            "status": host.agent_status or "",
            "status_display": status_display(host.agent_status),
            "version": host.agent_version or "",
            "account": host.account or "",
            "auth_type": host.auth_type or "",
            "port": host.ssh_port,
            "re_certification": _needs_credentials(host, now),
            "job_result": {},
            "pagent_count": _pagent_count(host, upstreams),
            "permissions": {"operate": _may_operate(caller, host.bk_biz_id)},
        }


def _may_operate(caller: Caller, bk_biz_id: int) -> bool:
    return caller.is_superuser or bk_biz_id in caller.biz_ids


def _address_row(host: Host) -> dict[str, Any]:
    """What both lists show of a proxy besides its area: its addresses and business."""
    return {
        "inner_ip": host.inner_ip or "",
        "inner_ipv6": host.inner_ipv6 or "",
        "outer_ip": host.outer_ip or "",
        "outer_ipv6": "",
        "login_ip": host.login_ip or "",
        "data_ip": "",
        "bk_biz_id": host.bk_biz_id,
    }
