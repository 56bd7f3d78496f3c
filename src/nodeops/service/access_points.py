"""Access points (接入点, network spec §15): list, retrieve, create, update, delete, which are in use, and the test
of an access point's URLs.

Node Manager's fields map onto nodeops' columns: ``callback_url`` is ``server_url`` (where agents of the direct
area report; the default one's follows the service's own URL, ``NODEOPS_PUBLIC_URL``, at every start),
``outer_callback_url`` is ``outer_server_url`` (where proxies report), ``agent_config.linux.setup_path`` is
``linux_setup_path``; the package URLs, description, is_enabled and creator have their own columns. The other
fields (server lists, zk hosts, region, ports...) are checked for shape, kept in ``extra`` and echoed, not acted
on. ``zk_password`` is sealed and never answered. Reading is open; the rest is for superusers (Node Manager
without IAM: 您没有该接入点的权限).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from nodeops.crypto import SecretBox
from nodeops.domain.contract import Contract, Field, Kind, Values, one_object, shown
from nodeops.domain.params import MAX_INT32, int_value
from nodeops.errors import AccessPointInUse, AccessPointNotFound, DuplicateAccessPointName, Forbidden
from nodeops.service import network_fields
from nodeops.service.auth import Caller
from nodeops.service.host_requests import setup_path_problem
from nodeops.settings import Settings
from nodeops.store import access_points as ap_rows
from nodeops.store import cloud_areas as area_rows
from nodeops.store import hosts as host_rows
from nodeops.store import packages as package_rows
from nodeops.store.db import Database, Session
from nodeops.store.models import AccessPoint

MAX_NAME_CHARS = 64  # access_points.name
MAX_DESCRIPTION_CHARS = 1000
MAX_TEXT_CHARS = 255  # paths, zk hosts, package names
MAX_SHORT_CHARS = 64  # region, city, zk account, port names
MAX_SECRET_CHARS = 128
MAX_PACKAGES = 20
MAX_PORTS = 50
GSE_VERSIONS = ("V1", "V2")
SERVER_LISTS = ("btfileserver", "dataserver", "taskserver")
AGENT_OSES = ("linux", "windows")
AGENT_PATHS = ("setup_path", "data_path", "run_path", "log_path", "temp_path", "dataipc", "hostid_path")
HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,253}[A-Za-z0-9])?")
# what ``extra`` holds, and what each is when never given
EXTRA_DEFAULTS: dict[str, Any] = {
    "region_id": "",
    "city_id": "",
    "gse_version": "V2",
    "btfileserver": [],
    "dataserver": [],
    "taskserver": [],
    "zk_hosts": [],
    "zk_account": "",
    "agent_config": {},
    "proxy_package": [],
    "nginx_path": "",
    "port_config": {},
    "file_cache_dirs": "",
}
MAX_NAMED_AREAS = 20  # the areas a refused delete names; it counts the rest
TEST_TIMEOUT_S = 2.0  # each URL of ap/test, as Node Manager's download check
MAX_TEST_BODY = 65536  # what ap/test reads of an answer
HEALTH_PATH = "/healthz"  # what the callback check asks a nodeops service (Node Manager asks /version)
# what a GET of ap/test may raise for a URL it cannot reach: the network's errors, and a host name httpx cannot
# encode (InvalidURL, UnicodeError)
UNREACHED = (httpx.HTTPError, httpx.InvalidURL, TimeoutError, OSError, UnicodeError)

SERVER = Contract(
    "AccessPointServer",
    "A GSE server of the access point (kept and echoed).",
    (
        Field(name="inner_ip", kind=Kind.TEXT),
        Field(name="inner_ipv6", kind=Kind.TEXT),
        Field(name="outer_ip", kind=Kind.TEXT),
        Field(name="outer_ipv6", kind=Kind.TEXT),
        Field(name="bk_host_id", kind=Kind.INT, maximum=MAX_INT32),
    ),
    documented=(),
)
ZK_HOST = Contract(
    "AccessPointZkHost",
    "",
    (
        Field(name="zk_ip", kind=Kind.TEXT, required=True, description="An IP address or a host name."),
        Field(name="zk_port", kind=Kind.INT, required=True, maximum=65535),
    ),
    documented=(),
)
_URL_FIELDS = (
    Field(name="callback_url", kind=Kind.TEXT, description="nodeops' server_url: where direct-area agents report."),
    Field(name="outer_callback_url", kind=Kind.TEXT, description="nodeops' outer_server_url: where proxies report."),
    Field(name="package_inner_url", kind=Kind.TEXT, description="Package URL for the direct area."),
    Field(name="package_outer_url", kind=Kind.TEXT, description="Package URL for proxies and P-Agents."),
)
_FIELDS = (
    Field(name="name", kind=Kind.TEXT, description=f"1 to {MAX_NAME_CHARS} characters, unique."),
    Field(name="description", kind=Kind.TEXT, description=f"At most {MAX_DESCRIPTION_CHARS} characters."),
    *_URL_FIELDS,
    Field(name="is_enabled", kind=Kind.BOOL, default=True),
    Field(name="region_id", kind=Kind.TEXT),
    Field(name="city_id", kind=Kind.TEXT),
    Field(name="gse_version", kind=Kind.CHOICE, choices=GSE_VERSIONS, fold="upper"),
    *(Field(name=name, kind=Kind.OBJECTS, noun="servers", max_items=100, item=SERVER) for name in SERVER_LISTS),
    Field(name="zk_hosts", kind=Kind.OBJECTS, noun="zk hosts", max_items=100, item=ZK_HOST),
    Field(name="zk_account", kind=Kind.TEXT),
    Field(name="zk_password", kind=Kind.TEXT, description="Stored sealed, never answered."),
    Field(
        name="agent_config",
        kind=Kind.VALUE,
        schema={"type": "object"},
        description='{"linux": {"setup_path": ..., ...}, "windows": {...}}; linux.setup_path is where agents go.',
    ),
    Field(name="proxy_package", kind=Kind.LIST, noun="package names", max_items=MAX_PACKAGES),
    Field(name="nginx_path", kind=Kind.TEXT),
    Field(name="port_config", kind=Kind.VALUE, schema={"type": "object"}, description="Port name -> port number."),
    Field(name="file_cache_dirs", kind=Kind.TEXT),
)
AP_CREATE = Contract("AccessPointCreateRequest", "Create an access point (superusers).", _FIELDS)
AP_UPDATE = Contract("AccessPointUpdateRequest", "Change an access point; a field left out is kept.", _FIELDS)
AP_TEST = Contract("AccessPointTestRequest", "Check that an access point's URLs answer.", _URL_FIELDS)
AP_PATH = Contract("AccessPointPath", "", (Field(name="ap_id", kind=Kind.INT, required=True, maximum=MAX_INT32),))
REQUESTS = (AP_CREATE, AP_UPDATE, AP_TEST)


def require_superuser(caller: Caller) -> None:
    if not caller.is_superuser:
        raise Forbidden(f"您没有该接入点的权限: only superusers may change access points, not {caller.username!r}")


class AccessPointService:
    """The access point APIs' use cases."""

    def __init__(self, db: Database, settings: Settings, box: SecretBox) -> None:
        self.db = db
        self.settings = settings
        self.box = box

    async def list_access_points(self, caller: Caller, _params: Mapping[str, object]) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            with self.db.session() as session:
                default = ap_rows.lowest_id(session)
                return [_shown(caller, row, default) for row in ap_rows.access_points(session)]

        return await self.db.call(read)

    async def retrieve(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        ap_id = _ap_id(params)

        def read() -> dict[str, Any]:
            with self.db.session() as session:
                return _shown(caller, _access_point(session, ap_id), ap_rows.lowest_id(session))

        return await self.db.call(read)

    async def create(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """A new access point (its callback_url defaults to the service's own); answers it, without zk_password."""
        require_superuser(caller)
        problems: dict[str, str] = {}
        fields = _read(AP_CREATE, params, problems, creating=True)

        def write() -> dict[str, Any]:
            with self.db.session() as session:
                ap_rows.lock(session)
                name = fields["name"]
                if ap_rows.name_taken(session, name):
                    raise DuplicateAccessPointName(name=name)
                row = AccessPoint(id=ap_rows.next_id(session), creator=[caller.username], extra={})
                row.server_url = self.settings.agent_server_url
                self._apply(row, fields)
                session.add(row)
                session.flush()
                return _shown(caller, row, ap_rows.lowest_id(session))

        return await self.db.call(write)

    async def update(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """Change the fields given (``port_config`` is kept, as in Node Manager); ``{}``."""
        require_superuser(caller)
        ap_id = _ap_id(params)
        problems: dict[str, str] = {}
        fields = _read(AP_UPDATE, params, problems, creating=False)
        fields.pop("port_config", None)

        def write() -> dict[str, Any]:
            with self.db.session() as session:
                ap_rows.lock(session)
                row = _access_point(session, ap_id)
                name = fields.get("name")
                if name is not None and ap_rows.name_taken(session, name, other_than=ap_id):
                    raise DuplicateAccessPointName(name=name)
                self._apply(row, fields)
            return {}

        return await self.db.call(write)

    def _apply(self, row: AccessPoint, fields: Mapping[str, Any]) -> None:
        """Set the fields read (``_read``) on ``row``: columns, then ``extra``."""
        columns = {
            "name": "name",
            "description": "description",
            "callback_url": "server_url",
            "outer_callback_url": "outer_server_url",
            "package_inner_url": "package_inner_url",
            "package_outer_url": "package_outer_url",
            "is_enabled": "is_enabled",
        }
        for field, column in columns.items():
            if field in fields:
                setattr(row, column, fields[field])
        if "zk_password" in fields:
            row.zk_password_enc = self.box.seal(fields["zk_password"])
        setup_path = fields.get("agent_config", {}).get("linux", {}).get("setup_path")
        if setup_path is not None:
            row.linux_setup_path = setup_path
        extra = {**(row.extra or {}), **{key: value for key, value in fields.items() if key in EXTRA_DEFAULTS}}
        row.extra = extra

    async def destroy(self, caller: Caller, params: Mapping[str, object]) -> None:
        """Delete an access point no area and no host uses; the default one (the lowest id) stays."""
        require_superuser(caller)
        ap_id = _ap_id(params)

        def write() -> None:
            with self.db.session() as session:
                ap_rows.lock(session)
                row = _access_point(session, ap_id)
                host_rows.lock_hosts(session)  # no host is given it until this ends
                if ap_id in (package_rows.DEFAULT_AP_ID, ap_rows.lowest_id(session)):
                    raise AccessPointInUse(
                        f"默认接入点不允许删除: access point {ap_id} is the default one, which hosts given ap_id -1 use"
                    )
                areas = area_rows.names_using_access_point(session, ap_id)
                if areas:
                    more = f" and {len(areas) - MAX_NAMED_AREAS} more" if len(areas) > MAX_NAMED_AREAS else ""
                    raise AccessPointInUse(
                        f"该接入点正在被「管控区域」 {areas[:MAX_NAMED_AREAS]!r}{more} 使用: give those areas another "
                        "ap_id first"
                    )
                hosts = ap_rows.host_count(session, ap_id)
                if hosts:
                    raise AccessPointInUse(
                        f"该接入点正在被 {hosts} 台主机使用: their agents report there; reinstall them with another "
                        "ap_id first"
                    )
                session.delete(row)

        await self.db.call(write)

    async def in_use(self, _caller: Caller, _params: Mapping[str, object]) -> list[int]:
        """The distinct ap_id of the areas (Node Manager's ap_is_using)."""

        def read() -> list[int]:
            with self.db.session() as session:
                return area_rows.access_points_in_use(session)

        return await self.db.call(read)

    async def test(self, caller: Caller, params: Mapping[str, object]) -> dict[str, Any]:
        """GET each URL given, at once, each within ``TEST_TIMEOUT_S``: the callback URLs must be a nodeops service
        (its ``/healthz`` answers ok), the package URLs must answer. Nothing is pinged."""
        require_superuser(caller)
        problems: dict[str, str] = {}
        values = AP_TEST.gather(params, problems)
        urls = {item.name: network_fields.url(values[item.name], item.name, problems) for item in _URL_FIELDS}
        if not problems and not any(urls.values()):
            problems["callback_url"] = "give at least one of " + ", ".join(item.name for item in _URL_FIELDS)
        AP_TEST.check(problems)
        async with httpx.AsyncClient(timeout=TEST_TIMEOUT_S, trust_env=False, follow_redirects=False) as client:
            checks = [
                _check_callback(client, url) if name.endswith("callback_url") else _check_package(client, url)
                for name, url in urls.items()
                if url is not None
            ]
            logs = await asyncio.gather(*checks)
        return {"test_result": all(log["log_level"] == "INFO" for log in logs), "test_logs": logs}


async def _get(client: httpx.AsyncClient, url: str) -> tuple[int, bytes]:
    """The status and (the first ``MAX_TEST_BODY`` bytes of) the body of GET ``url``, within ``TEST_TIMEOUT_S``
    in all (a server that trickles its answer is cut off too)."""
    async with asyncio.timeout(TEST_TIMEOUT_S):
        async with client.stream("GET", url) as response:
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= MAX_TEST_BODY:
                    break
            return response.status_code, body[:MAX_TEST_BODY]


def _failure(exc: Exception) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"no answer within {TEST_TIMEOUT_S:g} s"
    return str(exc) or type(exc).__name__


async def _check_callback(client: httpx.AsyncClient, url: str) -> dict[str, str]:
    """Whether ``url`` is a nodeops service: its ``/healthz`` answers the envelope with status ok."""
    try:
        status, body = await _get(client, url + HEALTH_PATH)
    except UNREACHED as exc:
        return _log("ERROR", f"回调地址 -> {url} 不正确：回调地址请求失败，报错信息 -> {_failure(exc)}")
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if status != 200 or not isinstance(answer, dict) or (answer.get("data") or {}) != {"status": "ok"}:
        return _log(
            "ERROR", f"回调地址 -> {url} 不正确：回调地址指向站点非节点管理后台 (GET {HEALTH_PATH}: HTTP {status})"
        )
    return _log("INFO", f"回调地址 -> {url} 验证可达")


async def _check_package(client: httpx.AsyncClient, url: str) -> dict[str, str]:
    """Whether ``url`` answers (below HTTP 400): nodeops pushes packages itself, so it looks for no file there."""
    try:
        status, _body = await _get(client, url)
    except UNREACHED as exc:
        return _log("ERROR", f"{url} 检测下载失败: {_failure(exc)}")
    if status >= 400:
        return _log("ERROR", f"{url} 检测下载失败: HTTP {status}")
    return _log("INFO", f"{url} 检测下载成功 (HTTP {status})")


def _log(level: str, text: str) -> dict[str, str]:
    return {"log_level": level, "log": text}


def _ap_id(params: Mapping[str, object]) -> int:
    ap_id = AP_PATH.read(params).integer("ap_id")
    assert ap_id is not None
    return ap_id


def _access_point(session: Session, ap_id: int) -> AccessPoint:
    row = ap_rows.get(session, ap_id)
    if row is None:
        raise AccessPointNotFound(ap_id=ap_id)
    return row


def _shown(caller: Caller, row: AccessPoint, default: int | None) -> dict[str, Any]:
    """An access point as Node Manager lists it (never its zk_password)."""
    extra = {**EXTRA_DEFAULTS, **(row.extra or {})}
    agent_config = dict(extra["agent_config"])
    agent_config["linux"] = {**agent_config.get("linux", {}), "setup_path": row.linux_setup_path}
    return {
        "id": row.id,
        "name": row.name,
        "ap_type": "user",
        **extra,
        "agent_config": agent_config,
        "callback_url": row.server_url,
        "outer_callback_url": row.outer_server_url or "",
        "package_inner_url": row.package_inner_url or "",
        "package_outer_url": row.package_outer_url or "",
        "status": "",
        "description": row.description,
        "is_enabled": row.is_enabled,
        "is_default": row.id == default,
        "creator": row.creator or [],
        "permissions": {"view": True, "edit": caller.is_superuser, "delete": caller.is_superuser},
    }


def _read(
    contract: Contract, params: Mapping[str, object], problems: dict[str, str], *, creating: bool
) -> dict[str, Any]:
    """The fields sent, checked (raises one InvalidInput naming every bad one); creating, ``name`` is required."""
    values = contract.gather(params, problems)
    sent = {item.name for item in contract.fields if params.get(item.name) is not None}
    fields: dict[str, Any] = {}
    texts = {
        "name": MAX_NAME_CHARS,
        "description": MAX_DESCRIPTION_CHARS,
        "region_id": MAX_SHORT_CHARS,
        "city_id": MAX_SHORT_CHARS,
        "zk_account": MAX_SHORT_CHARS,
        "zk_password": MAX_SECRET_CHARS,
        "nginx_path": MAX_TEXT_CHARS,
        "file_cache_dirs": MAX_TEXT_CHARS,
    }
    for name, limit in texts.items():
        value = values[name]
        if name == "zk_password" and value is not None and not _is_text(value, limit):
            problems[name] = f"must be a text of at most {limit} printable characters"  # not quoted: a secret
            continue
        required = name == "name" and (creating or name in sent)  # a name may be left out, not blanked
        value = network_fields.text(value, name, problems, limit=limit, required=required)
        if value is not None or (name in sent and name != "name"):
            fields[name] = value or ""
    for item in _URL_FIELDS:
        if item.name in sent:
            fields[item.name] = network_fields.url(values[item.name], item.name, problems)
    if "callback_url" in fields and fields["callback_url"] is None:
        del fields["callback_url"]  # blank: the one kept (the service's own URL for a new one)
    for name in ("is_enabled", "gse_version"):
        if name in sent and values[name] is not None:
            fields[name] = values[name]
    for name in SERVER_LISTS:
        if name in sent:
            fields[name] = _servers(values, name, problems)
    if "zk_hosts" in sent:
        fields["zk_hosts"] = _zk_hosts(values, problems)
    if "agent_config" in sent:
        fields["agent_config"] = _agent_config(values["agent_config"], problems)
    if "proxy_package" in sent:
        fields["proxy_package"] = [
            network_fields.text(item, where, problems, limit=MAX_TEXT_CHARS, required=True)
            for where, item in values.items("proxy_package")
        ]
    if "port_config" in sent:
        fields["port_config"] = _port_config(values["port_config"], problems)
    contract.check(problems)
    return fields


def _is_text(value: object, limit: int) -> bool:
    return isinstance(value, str) and len(value) <= limit and value.isprintable()


def _servers(values: Values, name: str, problems: dict[str, str]) -> list[dict[str, Any]]:
    """A server list: each server has an inner address (IPv4 or IPv6) and an outer one, as Node Manager's."""
    servers: list[dict[str, Any]] = []
    for _index, where, item in values.objects(name):
        server = SERVER.gather(item, problems, prefix=where)
        found = {
            key: network_fields.ip(server[key], f"{where}.{key}", problems) if server[key] not in (None, "") else ""
            for key in ("inner_ip", "inner_ipv6", "outer_ip", "outer_ipv6")
        }
        if not (found["inner_ip"] or found["inner_ipv6"]) and f"{where}.inner_ip" not in problems:
            problems[f"{where}.inner_ip"] = (
                "请求参数 inner_ip 和 inner_ipv6 不能同时为空: give the server's inner address"
            )
        if not (found["outer_ip"] or found["outer_ipv6"]) and f"{where}.outer_ip" not in problems:
            problems[f"{where}.outer_ip"] = "outer_ip or outer_ipv6 is required: the server's outer address"
        servers.append({**found, "bk_host_id": server.integer("bk_host_id")})
    return servers


def _zk_hosts(values: Values, problems: dict[str, str]) -> list[dict[str, Any]]:
    hosts: list[dict[str, Any]] = []
    for _index, where, item in values.objects("zk_hosts"):
        host = ZK_HOST.gather(item, problems, prefix=where)
        zk_ip = host["zk_ip"]
        if not isinstance(zk_ip, str) or (not HOST_NAME.fullmatch(zk_ip) and not _is_ip(zk_ip)):
            problems[f"{where}.zk_ip"] = f"{shown(zk_ip)} must be an IP address or a host name"
        hosts.append({"zk_ip": zk_ip, "zk_port": host.integer("zk_port")})
    return hosts


def _is_ip(value: str) -> bool:
    return network_fields.ip(value, "", {}) is not None


def _agent_config(value: object, problems: dict[str, str]) -> dict[str, Any]:
    """``{"linux": {...}, "windows": {...}}``, each of ``AGENT_PATHS`` a path; linux.setup_path is an install path
    (absolute, normalised, two levels deep at least)."""
    config = one_object(value, "agent_config", problems) or {}
    found: dict[str, Any] = {}
    if len(config) > len(AGENT_OSES):  # one problem, not one per key
        problems["agent_config"] = f"must hold at most {', '.join(AGENT_OSES)}"
        return found
    for os_name, paths in config.items():
        where = f"agent_config.{os_name}"
        if os_name not in AGENT_OSES:
            problems[f"agent_config.{shown(os_name)}"] = f"must be one of {', '.join(AGENT_OSES)}"
            continue
        found[os_name] = {}
        given = one_object(paths, where, problems) or {}
        if len(given) > len(AGENT_PATHS):
            problems[where] = f"must hold at most {', '.join(AGENT_PATHS)}"
            continue
        for key, path in given.items():
            if key not in AGENT_PATHS:
                problems[f"{where}.{shown(key)}"] = f"must be one of {', '.join(AGENT_PATHS)}"
                continue
            text = network_fields.text(path, f"{where}.{key}", problems, limit=MAX_TEXT_CHARS)
            if os_name == "linux" and key == "setup_path" and text is not None:
                problem = setup_path_problem(text)
                if problem:
                    problems[f"{where}.{key}"] = problem
            found[os_name][key] = text or ""
    return found


def _port_config(value: object, problems: dict[str, str]) -> dict[str, int]:
    config = one_object(value, "port_config", problems) or {}
    if len(config) > MAX_PORTS:
        problems["port_config"] = f"must hold at most {MAX_PORTS} ports"
        return {}
    ports: dict[str, int] = {}
    for key, port in config.items():
        name = network_fields.text(key, f"port_config.{shown(key)}", problems, limit=MAX_SHORT_CHARS, required=True)
        number = int_value(port, f"port_config.{name}", problems, maximum=65535)
        if name is not None and number is not None:
            ports[name] = number
    return ports
