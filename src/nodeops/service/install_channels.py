"""Install channels (安装通道, network spec §14): list, create, update, delete.

A channel belongs to a cloud area that must exist; ``jump_servers`` are the addresses of the hosts through which
the channel's hosts are reached, ``upstream_servers`` must hold the three server lists (taskserver, btfileserver,
dataserver; Node Manager answers 3800500 without them, nodeops 3800001 naming the field), may hold
``agent_download_proxy`` (a boolean), ``channel_proxy_address`` (the relay URL the channel's agents report to) and
per access point overrides ``AP_ID_{id}`` of the lists. Addresses are normalised as Node Manager's. Listing is
open; changing a channel needs the right to edit its area (its creator, or a superuser). A channel hosts are
installed through cannot be deleted (nodeops' own rule).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from nodeops.domain.contract import Contract, Field, Kind, bool_value, one_object, shown
from nodeops.domain.params import MAX_INT32
from nodeops.errors import CloudAreaNotFound, Conflict, Forbidden, InstallChannelNotFound
from nodeops.service import network_fields
from nodeops.service.auth import Caller
from nodeops.service.cloud_areas import DIRECT_AREA_ID
from nodeops.store import cloud_areas as area_rows
from nodeops.store import hosts as host_rows
from nodeops.store import install_channels as channel_rows
from nodeops.store.db import Database, Session
from nodeops.store.models import InstallChannel

MAX_NAME_CHARS = 45  # install_channels.name, as Node Manager's
SERVER_LISTS = ("taskserver", "btfileserver", "dataserver")
AP_OVERRIDE = re.compile(r"AP_ID_([1-9][0-9]{0,9})")
MAX_AP_OVERRIDES = 20
MAX_UPSTREAM_KEYS = len(SERVER_LISTS) + 2 + MAX_AP_OVERRIDES  # the lists, two settings, the overrides
MAX_KEY_CHARS = 40  # a key named in a problem as sent; a longer one is cut (``shown``)
AUTO_CHANNEL = {
    "id": -1,
    "name": "自动选择",
    "bk_cloud_id": -1,
    "jump_servers": [],
    "upstream_servers": {},
    "hidden": False,
}

_UPSTREAM_SCHEMA = {
    "type": "object",
    "properties": {
        **{name: {"type": "array", "items": {"type": "string"}} for name in SERVER_LISTS},
        "agent_download_proxy": {"type": "boolean"},
        "channel_proxy_address": {"type": "string"},
    },
}
_FIELDS = (
    Field(name="name", kind=Kind.TEXT, description=f"1 to {MAX_NAME_CHARS} characters."),
    Field(name="bk_cloud_id", kind=Kind.INT, required=True, minimum=0, maximum=MAX_INT32),
    Field(name="jump_servers", kind=Kind.VALUE, schema={"type": "array", "items": {"type": "string"}}),
    Field(name="upstream_servers", kind=Kind.VALUE, schema=_UPSTREAM_SCHEMA),
    Field(name="hidden", kind=Kind.BOOL, default=False),
)
CHANNEL_LIST = Contract("InstallChannelListRequest", "", (Field(name="with_hidden", kind=Kind.BOOL, default=False),))
CHANNEL_CREATE = Contract("InstallChannelCreateRequest", "Create an install channel.", _FIELDS)
CHANNEL_UPDATE = Contract(
    "InstallChannelUpdateRequest",
    "Change an install channel of bk_cloud_id; upstream_servers is merged into the stored one.",
    _FIELDS,
)
CHANNEL_DELETE = Contract(
    "InstallChannelDeleteRequest",
    "Delete an install channel no host uses.",
    (Field(name="bk_cloud_id", kind=Kind.INT, minimum=0, maximum=MAX_INT32),),
)
CHANNEL_PATH = Contract(
    "InstallChannelPath", "", (Field(name="channel_id", kind=Kind.INT, required=True, maximum=MAX_INT32),)
)
REQUESTS = (CHANNEL_LIST, CHANNEL_CREATE, CHANNEL_UPDATE, CHANNEL_DELETE)


class InstallChannelService:
    """The install channel APIs' use cases."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_channels(self, _caller: Caller, params: Mapping[str, object]) -> list[dict[str, Any]]:
        """Every channel (hidden ones with ``with_hidden``), after the virtual -1 自动选择."""
        with_hidden = CHANNEL_LIST.read(params).flag("with_hidden")

        def read() -> list[dict[str, Any]]:
            with self.db.session() as session:
                return [AUTO_CHANNEL, *(_shown(row) for row in channel_rows.channels(session, with_hidden=with_hidden))]

        return await self.db.call(read)

    async def create(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        problems: dict[str, str] = {}
        values = CHANNEL_CREATE.gather(params, problems)
        name = network_fields.text(values["name"], "name", problems, limit=MAX_NAME_CHARS, required=True)
        jump_servers = network_fields.ips(values["jump_servers"], "jump_servers", problems, required=True)
        upstream = _upstream(values["upstream_servers"], problems)
        _require_lists(upstream, problems)
        area_id = values.integer("bk_cloud_id")
        CHANNEL_CREATE.check(problems)
        assert area_id is not None and name is not None

        def write() -> dict[str, Any]:
            with self.db.session() as session:
                _require_area(session, caller, area_id)
                row = InstallChannel(
                    name=name,
                    bk_cloud_id=area_id,
                    jump_servers=jump_servers,
                    upstream_servers=upstream,
                    hidden=values.flag("hidden"),
                )
                session.add(row)
                session.flush()
                return _shown(row)

        return await self.db.call(write)

    async def update(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """Change the fields given; ``upstream_servers`` is merged into the stored one, which must then still hold
        the three lists; the channel must belong to ``bk_cloud_id``."""
        channel_id = _channel_id(params)
        problems: dict[str, str] = {}
        values = CHANNEL_UPDATE.gather(params, problems)
        sent = {name for name in ("name", "jump_servers", "upstream_servers", "hidden") if params.get(name) is not None}
        name = network_fields.text(values["name"], "name", problems, limit=MAX_NAME_CHARS, required="name" in sent)
        jump_servers = network_fields.ips(
            values["jump_servers"], "jump_servers", problems, required="jump_servers" in sent
        )
        upstream = _upstream(values["upstream_servers"], problems) if "upstream_servers" in sent else {}
        area_id = values.integer("bk_cloud_id")
        CHANNEL_UPDATE.check(problems)
        assert area_id is not None

        def write() -> dict[str, Any]:
            with self.db.session() as session:
                row = _channel(session, caller, channel_id, area_id)
                merged = {**row.upstream_servers, **upstream}
                _require_lists(merged, problems)
                CHANNEL_UPDATE.check(problems)
                row.upstream_servers = merged
                if name is not None:
                    row.name = name
                if jump_servers:
                    row.jump_servers = jump_servers
                if "hidden" in sent:
                    row.hidden = values.flag("hidden")
            return {}

        return await self.db.call(write)

    async def destroy(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """Delete a channel no host is installed through (``bk_cloud_id``, if given, must be its area)."""
        channel_id = _channel_id(params)
        area_id = CHANNEL_DELETE.read(params).integer("bk_cloud_id")

        def write() -> dict[str, Any]:
            with self.db.session() as session:
                row = _channel(session, caller, channel_id, area_id)
                host_rows.lock_hosts(session)  # no host is given it until this ends
                hosts = channel_rows.host_count(session, channel_id)
                if hosts:
                    raise Conflict(
                        f"安装通道「{row.name}」正在被 {hosts} 台主机使用: they are reached through it; reinstall them "
                        "through another channel first"
                    )
                session.delete(row)
            return {}

        return await self.db.call(write)


def _shown(row: InstallChannel) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "bk_cloud_id": row.bk_cloud_id,
        "jump_servers": row.jump_servers,
        "upstream_servers": row.upstream_servers,
        "hidden": row.hidden,
    }


def _channel_id(params: Mapping[str, object]) -> int:
    channel_id = CHANNEL_PATH.read(params).integer("channel_id")
    assert channel_id is not None
    return channel_id


def _require_area(session: Session, caller: Caller, area_id: int) -> None:
    """The area exists and the caller may edit it (Node Manager: the right to edit the channel's area)."""
    creators: list[Any] | None = None
    if area_id != DIRECT_AREA_ID:
        area = area_rows.get(session, area_id)
        if area is None:
            raise CloudAreaNotFound(bk_cloud_id=area_id)
        creators = area.creator
    if not network_fields.can_edit_area(caller, creators):
        raise Forbidden(
            f"您没有权限执行操作，请申请「管控区域」编辑权限: user {caller.username!r} may not edit cloud area "
            f"{area_id}"
        )


def _channel(session: Session, caller: Caller, channel_id: int, area_id: int | None) -> InstallChannel:
    """The channel ``channel_id`` (of ``area_id`` if given), if the caller may edit its area."""
    row = channel_rows.get(session, channel_id)
    if row is None or (area_id is not None and row.bk_cloud_id != area_id):
        raise InstallChannelNotFound(channel_id=channel_id, bk_cloud_id=area_id)
    _require_area(session, caller, row.bk_cloud_id)
    return row


def _upstream(value: object, problems: dict[str, str]) -> dict[str, Any]:
    """``upstream_servers`` checked key by key (the lists normalised); its problems named
    ``upstream_servers.<key>``."""
    found: dict[str, Any] = {}
    upstream = one_object(value, "upstream_servers", problems, required=True)
    if upstream is None:
        return found
    if len(upstream) > MAX_UPSTREAM_KEYS:  # one problem, not one per key
        problems["upstream_servers"] = f"must hold at most {MAX_UPSTREAM_KEYS} keys"
        return found
    overrides = 0
    for key, item in upstream.items():
        where = f"upstream_servers.{key if len(key) <= MAX_KEY_CHARS and key.isprintable() else shown(key)}"
        if key in SERVER_LISTS:
            found[key] = network_fields.ips(item, where, problems, required=False)
        elif key == "agent_download_proxy":
            found[key] = bool_value(item, where, problems, default=True)
        elif key == "channel_proxy_address":
            found[key] = network_fields.url(item, where, problems)
        elif isinstance(key, str) and AP_OVERRIDE.fullmatch(key) and overrides < MAX_AP_OVERRIDES:
            overrides += 1
            lists = one_object(item, where, problems) or {}
            found[key] = {}
            for name, servers in lists.items():
                if name not in SERVER_LISTS:
                    problems[f"{where}.{shown(name)}"] = f"must be one of {', '.join(SERVER_LISTS)}"
                else:
                    found[key][name] = network_fields.ips(servers, f"{where}.{name}", problems, required=False)
        else:
            problems[where] = (
                f"unknown key: upstream_servers holds {', '.join(SERVER_LISTS)}, agent_download_proxy, "
                f"channel_proxy_address and at most {MAX_AP_OVERRIDES} AP_ID_<ap_id> objects"
            )
    return found


def _require_lists(upstream: Mapping[str, Any], problems: dict[str, str]) -> None:
    """The three server lists are in ``upstream_servers`` (Node Manager's KeyError, 3800500, made a clear 3800001)."""
    missing = [name for name in SERVER_LISTS if name not in upstream]
    if missing and "upstream_servers" not in problems:
        problems["upstream_servers"] = f"must hold the lists {', '.join(SERVER_LISTS)}; missing: {', '.join(missing)}"
