"""Proxies and install channels as jobs use them (network spec §13, §14): a host's node type, the alive proxies
of a cloud area, an install channel and its jump servers, and the way (``Route``) the engine reaches a host it
cannot log in to directly.

An alive proxy of area N is a ``hosts`` row with ``bk_cloud_id = N``, ``node_type = 'PROXY'`` and
``agent_status = 'RUNNING'`` (a proxy that stops reporting is turned TERMINATED, so it stops being alive). The
route of a host is chosen when its work is read (``store.pipelines``), by the embedded engine and a cluster worker
alike: a random alive proxy of its area, or a random jump server of its install channel, with the hop's own login
(still sealed) and the SSH host keys trusted for it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, literal, select, update
from sqlalchemy.orm import Session

from nodeops.store.db import Database, ReadHandle, session_cursor
from nodeops.store.models import CloudArea, Host, InstallChannel, TopoNode

DIRECT_AREA = 0  # its hosts are reached directly
DIRECT_AREA_NAME = "直连区域"
AGENT, PROXY, PAGENT = "AGENT", "PROXY", "PAGENT"  # hosts.node_type (network spec §13.1)
ALIVE_STATUS = "RUNNING"
NO_PROXY_LINE = "管控区域 -> {bk_cloud_id} 下无存活的 Proxy"  # Node Manager's words when 安装 finds none
PROXY_HOP, JUMP_HOP = "Proxy", "跳板机"  # how the log names a hop of each kind

# Where the service logs in to a host of alias h: a proxy at its login_ip, else its outer_ip, else its inner
# address; any other host at its login_ip, else its inner address (Node Manager's collections/common/remote.py)
_INNER = "COALESCE(NULLIF({h}.inner_ip, ''), {h}.inner_ipv6, '')"
_SSH_ADDRESS = (
    "CASE WHEN {h}.node_type = 'PROXY' "
    "THEN COALESCE(NULLIF({h}.login_ip, ''), NULLIF({h}.outer_ip, ''), NULLIF({h}.inner_ip, ''), {h}.inner_ipv6, '') "
    "ELSE COALESCE(NULLIF({h}.login_ip, ''), NULLIF({h}.inner_ip, ''), {h}.inner_ipv6, '') END"
)


def ssh_address_sql(alias: str) -> str:
    """The SQL expression of the address the service logs in to, for the hosts row of ``alias``."""
    return _SSH_ADDRESS.format(h=alias)


def inner_address_sql(alias: str) -> str:
    """The SQL expression of a host's inner address (IPv4, else IPv6), for the hosts row of ``alias``."""
    return _INNER.format(h=alias)


@dataclass(frozen=True, slots=True, kw_only=True)
class Hop:
    """A host the service logs in to on the way to another: a proxy of the target's area or a jump server of its
    install channel, with its own login (sealed) and the host keys trusted for ``address:ssh_port``."""

    kind: str  # how the log names it: PROXY_HOP or JUMP_HOP
    bk_host_id: int
    address: str  # where the service logs in to it
    inner_address: str  # its address as its area sees it: where its relay listens, the target's upstream
    ssh_port: int
    account: str | None
    password_enc: bytes | None = field(repr=False)
    key_enc: bytes | None = field(repr=False)
    host_keys: tuple[str, ...]

    @property
    def has_login(self) -> bool:
        return bool(self.account) and (self.password_enc is not None or self.key_enc is not None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Channel:
    """An install channel (安装通道): its jump servers, and the relay its hosts' agents report through, if any."""

    id: int
    name: str
    bk_cloud_id: int
    jump_servers: tuple[str, ...]
    proxy_address: str | None  # upstream_servers.channel_proxy_address


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """How the engine reaches a host it does not log in to directly: through ``hop``, or, when none could be
    chosen, the reason ``missing`` (the first step that connects fails with it)."""

    hop: Hop | None
    missing: str | None = None
    channel: Channel | None = None


def needs_route(*, node_type: str, bk_cloud_id: int, install_channel_id: int | None) -> bool:
    """Whether a host is reached through a hop: a host of an install channel, or an agent of a cloud area (a
    proxy itself is reached at its outer address)."""
    return install_channel_id is not None or (bk_cloud_id != DIRECT_AREA and node_type != PROXY)


class RouteChooser:
    """Chooses each host's route when work is read, on one driver cursor; the candidates of an area or a
    channel are read once per chooser, the choice among them is made per host."""

    def __init__(self, cur: ReadHandle, paramstyle: str, rng: random.Random | None = None) -> None:
        self.cur = cur
        self.p = paramstyle
        self.rng = rng or random.SystemRandom()
        self._proxies: dict[int, list[Hop]] = {}
        self._channels: dict[int, tuple[Channel | None, list[Hop]]] = {}

    def route(self, *, bk_cloud_id: int, install_channel_id: int | None) -> Route:
        """The route of a host of area ``bk_cloud_id`` (through its install channel when it has one)."""
        if install_channel_id is not None:
            return self._through_channel(install_channel_id)
        if bk_cloud_id not in self._proxies:
            self._proxies[bk_cloud_id] = alive_proxies(self.cur, self.p, bk_cloud_id=bk_cloud_id)
        proxies = self._proxies[bk_cloud_id]
        if not proxies:
            return Route(hop=None, missing=NO_PROXY_LINE.format(bk_cloud_id=bk_cloud_id))
        usable = [hop for hop in proxies if hop.has_login]
        if not usable:
            return Route(
                hop=None,
                missing=f"管控区域 -> {bk_cloud_id} 下存活的 Proxy 均无登录认证信息 (the login of every alive proxy "
                "was forgotten after its retention): reinstall a proxy of the area with its login",
            )
        return Route(hop=self.rng.choice(usable))

    def _through_channel(self, channel_id: int) -> Route:
        if channel_id not in self._channels:
            channel = read_channel(self.cur, self.p, channel_id)
            hops = [] if channel is None else jump_servers(self.cur, self.p, channel)
            self._channels[channel_id] = (channel, hops)
        channel, hops = self._channels[channel_id]
        if channel is None:
            return Route(hop=None, missing=f"主机的安装通道不存在 (install channel {channel_id} was deleted)")
        usable = [hop for hop in hops if hop.has_login]
        if not usable:
            return Route(
                hop=None,
                channel=channel,
                missing=f"所选安装通道「{channel.name}」 没有可用跳板机 (none of its jump servers "
                f"{', '.join(channel.jump_servers) or '(none)'} is in the inventory with a login)",
            )
        return Route(hop=self.rng.choice(usable), channel=channel)


def _hops(cur: ReadHandle, kind: str, where: str, params: Sequence[object]) -> list[Hop]:
    address = ssh_address_sql("h")
    cur.execute(
        f"SELECT h.bk_host_id, {address}, {inner_address_sql('h')}, h.ssh_port, h.account, h.password_enc, "
        f"h.key_enc, k.algorithm, k.key FROM hosts h LEFT JOIN host_keys k ON k.host = {address} "
        f"AND k.port = h.ssh_port WHERE {where} ORDER BY h.bk_host_id",
        tuple(params),
    )
    return [
        Hop(
            kind=kind,
            bk_host_id=host_id,
            address=ssh_ip,
            inner_address=inner,
            ssh_port=port,
            account=account,
            password_enc=None if password is None else bytes(password),
            key_enc=None if key is None else bytes(key),
            host_keys=() if algorithm is None else (f"{algorithm} {blob}",),
        )
        for host_id, ssh_ip, inner, port, account, password, key, algorithm, blob in cur.fetchall()
    ]


def alive_proxies(cur: ReadHandle, paramstyle: str, *, bk_cloud_id: int) -> list[Hop]:
    """The alive proxies of the area, with their logins and host keys."""
    return _hops(
        cur,
        PROXY_HOP,
        f"h.bk_cloud_id = {paramstyle} AND h.node_type = '{PROXY}' AND h.agent_status = '{ALIVE_STATUS}'",
        (bk_cloud_id,),
    )


def jump_servers(cur: ReadHandle, paramstyle: str, channel: Channel) -> list[Hop]:
    """The channel's jump servers that are hosts of its area in the inventory, in the channel's order."""
    if not channel.jump_servers:
        return []
    marks = ", ".join([paramstyle] * len(channel.jump_servers))
    hops = _hops(
        cur,
        JUMP_HOP,
        f"h.bk_cloud_id = {paramstyle} AND (h.inner_ip IN ({marks}) OR h.inner_ipv6 IN ({marks}))",
        (channel.bk_cloud_id, *channel.jump_servers, *channel.jump_servers),
    )
    order = {address: index for index, address in enumerate(channel.jump_servers)}
    return sorted(hops, key=lambda hop: order.get(hop.inner_address, len(order)))


def _channel(row: Any) -> Channel:
    channel_id, name, bk_cloud_id, servers, upstream = row
    servers = servers if isinstance(servers, list) else []
    upstream = upstream if isinstance(upstream, Mapping) else {}
    proxy_address = upstream.get("channel_proxy_address")
    return Channel(
        id=channel_id,
        name=name,
        bk_cloud_id=bk_cloud_id,
        jump_servers=tuple(str(server) for server in servers),
        proxy_address=proxy_address if isinstance(proxy_address, str) and proxy_address else None,
    )


def read_channel(cur: ReadHandle, paramstyle: str, channel_id: int) -> Channel | None:
    """The install channel ``channel_id``, or None."""
    cur.execute(
        f"SELECT id, name, bk_cloud_id, jump_servers, upstream_servers FROM install_channels WHERE id = {paramstyle}",
        (channel_id,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    _id, name, cloud, servers, upstream = row
    return _channel((_id, name, cloud, _json(servers), _json(upstream)))


def _json(value: object) -> object:
    """A JSON column as the driver gave it: decoded already (PostgreSQL), or its text (SQLite)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelCheck:
    """An install channel as install_job checks it: None when it does not exist (for the host's area), else the
    channel and the jump servers that are not hosts of its area with a login."""

    channel: Channel
    missing_jump_servers: tuple[str, ...]


def check_channel(session: Session, *, channel_id: int, bk_cloud_id: int) -> ChannelCheck | None:
    """The channel ``channel_id`` of area ``bk_cloud_id`` and its jump servers lacking a login, or None."""
    row = session.execute(
        select(
            InstallChannel.id,
            InstallChannel.name,
            InstallChannel.bk_cloud_id,
            InstallChannel.jump_servers,
            InstallChannel.upstream_servers,
        ).where(InstallChannel.id == channel_id, InstallChannel.bk_cloud_id == bk_cloud_id)
    ).one_or_none()
    if row is None:
        return None
    channel = _channel(tuple(row))
    cur, p = session_cursor(session)
    usable = {hop.inner_address for hop in jump_servers(cur, p, channel) if hop.has_login}
    missing = tuple(server for server in channel.jump_servers if server not in usable)
    return ChannelCheck(channel=channel, missing_jump_servers=missing)


def areas_with_alive_proxy(session: Session, bk_cloud_ids: Iterable[int]) -> set[int]:
    """Those of ``bk_cloud_ids`` with at least one alive proxy."""
    wanted = sorted(set(bk_cloud_ids))
    if not wanted:
        return set()
    rows = session.scalars(
        select(Host.bk_cloud_id)
        .where(Host.bk_cloud_id.in_(wanted), Host.node_type == PROXY, Host.agent_status == ALIVE_STATUS)
        .distinct()
    )
    return {int(row) for row in rows}


def names(
    session: Session, *, bk_cloud_ids: Iterable[int], bk_biz_ids: Iterable[int]
) -> tuple[dict[int, str], dict[int, str]]:
    """The names of cloud areas (area 0: 直连区域) and of businesses, by id; an unknown id is left out."""
    clouds = {DIRECT_AREA: DIRECT_AREA_NAME}
    areas = select(CloudArea.bk_cloud_id, CloudArea.bk_cloud_name).where(CloudArea.bk_cloud_id.in_(set(bk_cloud_ids)))
    clouds.update((int(area_id), name) for area_id, name in session.execute(areas))
    businesses = select(TopoNode.bk_inst_id, TopoNode.bk_inst_name).where(
        TopoNode.bk_obj_id == "biz", TopoNode.bk_inst_id.in_(set(bk_biz_ids))
    )
    return clouds, {int(biz_id): name for biz_id, name in session.execute(businesses)}


def set_node_types(session: Session, bk_host_ids: Iterable[int], *, proxy_job: bool) -> None:
    """Give the hosts of a new job the node type it makes them: ``*_PROXY`` jobs make proxies, agent jobs AGENT
    in the direct area and PAGENT in any other (network spec §13.1)."""
    ids = sorted(set(bk_host_ids))
    if not ids:
        return
    chosen = (
        literal(PROXY) if proxy_job else case((Host.bk_cloud_id == DIRECT_AREA, literal(AGENT)), else_=literal(PAGENT))
    )
    session.execute(
        update(Host)
        .where(Host.bk_host_id.in_(ids))
        .values(node_type=chosen)
        .execution_options(synchronize_session=False)
    )


def set_placement(
    session: Session,
    bk_host_id: int,
    *,
    install_channel_id: int | None,
    outer_ip: str | None,
    login_ip: str | None,
) -> None:
    """What install_job says of how a host is reached: its install channel (None: none), and its outer and login
    addresses when given (an install that names neither keeps the ones known)."""
    values: dict[str, object] = {"install_channel_id": install_channel_id}
    if outer_ip is not None:
        values["outer_ip"] = outer_ip
    if login_ip is not None:
        values["login_ip"] = login_ip
    session.execute(update(Host).where(Host.bk_host_id == bk_host_id).values(**values))


def set_upstream_nodes(db: Database, *, bk_host_id: int, nodes: list[str]) -> None:
    """Record the proxy or jump server a host's agent was installed through (``hosts.upstream_nodes``)."""
    with db.session() as session:
        session.execute(update(Host).where(Host.bk_host_id == bk_host_id).values(upstream_nodes=nodes))
