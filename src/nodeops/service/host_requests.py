"""The ``hosts`` of an install request (install_job, a host import): ``parse_hosts`` validates each into a
``HostRequest``, naming every problem ``hosts[i].field``.

Only the shape is checked here (addresses, port, account, auth type, install path, ap_id); what depends on the
store (a duplicate, a busy host, an access point that does not exist) is decided when the job is created
(``job_launch``). ``ap_id`` -1 (Node Manager's 自动选择接入点) is the default access point. Secrets never appear
in messages.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from nodeops.crypto import SecretBox
from nodeops.domain.contract import Contract, Field, Kind
from nodeops.domain.instance_id import MAX_HOST_ID
from nodeops.domain.params import int_param
from nodeops.engine.transports.ssh import login_name_problem
from nodeops.errors import InvalidInput
from nodeops.store import packages as package_rows
from nodeops.store.hosts import Login
from nodeops.store.models import utcnow

TRANSPORTS = frozenset({"ssh", "local"})
AUTH_TYPES = frozenset({"PASSWORD", "KEY"})
MAX_ACCOUNT_CHARS = 64  # the hosts.account column
MAX_INT32 = 2**31 - 1  # bk_biz_id, bk_cloud_id, ap_id and port are 32-bit columns
AUTO_AP_ID = -1  # Node Manager's 自动选择接入点 (network spec §15.3); nodeops has one default to choose


# One host of ``hosts``, as documented (``parse_hosts`` reads it: its problems are named ``hosts[i].field``)
INSTALL_HOST = Contract(
    "InstallHost",
    "One host of install_job; nodeops adds ``transport`` and ``setup_path``.",
    (
        Field(
            name="bk_biz_id",
            kind=Kind.INT,
            required=True,
            minimum=0,
            maximum=MAX_INT32,
            description="Business of the host.",
        ),
        Field(
            name="bk_cloud_id",
            kind=Kind.INT,
            default=0,
            minimum=0,
            maximum=MAX_INT32,
            description="Cloud area (管控区域).",
        ),
        Field(name="inner_ip", kind=Kind.TEXT, description="Inner IPv4; inner_ip or inner_ipv6 is required."),
        Field(name="inner_ipv6", kind=Kind.TEXT, description="Inner IPv6."),
        Field(
            name="bk_host_id", kind=Kind.INT, maximum=MAX_HOST_ID, description="The host's id when known (reinstall)."
        ),
        Field(
            name="os_type",
            kind=Kind.TEXT,
            default="LINUX",
            description="Only LINUX hosts are installed; others are FILTERED.",
        ),
        Field(
            name="ap_id",
            kind=Kind.INT,
            default=1,
            minimum=AUTO_AP_ID,
            maximum=MAX_INT32,
            description="Access point the agent reports to; -1 (自动选择接入点) is the default one, 1. A host whose "
            "access point does not exist is refused in ip_filter (unknown_ap).",
        ),
        Field(name="account", kind=Kind.TEXT, description="SSH login account."),
        Field(
            name="auth_type",
            kind=Kind.CHOICE,
            default="PASSWORD",
            choices=tuple(sorted(AUTH_TYPES)),
            description="PASSWORD or KEY.",
        ),
        Field(name="password", kind=Kind.TEXT, description="SSH password (stored encrypted, never shown)."),
        Field(name="key", kind=Kind.TEXT, description="SSH private key (stored encrypted, never shown)."),
        Field(name="port", kind=Kind.INT, default=22, maximum=65535, description="SSH port."),
        Field(
            name="transport",
            kind=Kind.CHOICE,
            default="ssh",
            choices=tuple(sorted(TRANSPORTS)),
            description="nodeops: ssh, or local (run on the service's machine).",
        ),
        Field(name="setup_path", kind=Kind.TEXT, description="nodeops: absolute install path on the host."),
    ),
    documented=(),
)
HOSTS = Field(
    name="hosts",
    kind=Kind.OBJECTS,
    required=True,
    schema={"type": "array", "items": {"$ref": "#/components/schemas/InstallHost"}, "minItems": 1},
    description="The hosts, at least one.",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class HostRequest:
    """One host of an install request, validated; ``password``/``key`` stay in memory only until sealed."""

    index: int
    bk_biz_id: int
    bk_cloud_id: int
    inner_ip: str | None
    inner_ipv6: str | None
    os_type: str
    transport: str
    port: int
    account: str | None
    auth_type: str
    password: str | None = field(repr=False)
    key: str | None = field(repr=False)
    ap_id: int
    setup_path: str | None
    bk_host_id: int | None

    @property
    def ip(self) -> str:
        return self.inner_ip or self.inner_ipv6 or ""

    def sealed_login(self, box: SecretBox, *, retention_s: int) -> Login:
        """The host's way in, its password or key sealed by ``box`` and forgotten ``retention_s`` from now (0: kept)."""
        has_secret = bool(self.password or self.key)
        return Login(
            transport=self.transport,
            ssh_port=self.port,
            account=self.account,
            auth_type=self.auth_type,
            password_enc=box.seal(self.password) if self.password else None,
            key_enc=box.seal(self.key) if self.key else None,
            credentials_expire_at=utcnow() + timedelta(seconds=retention_s) if retention_s and has_secret else None,
            ap_id=self.ap_id,
            setup_path=self.setup_path,
        )


def parse_hosts(raw: object) -> list[HostRequest]:
    """Validate ``hosts``: every problem is named ``hosts[i].field``. Secrets never appear in messages."""
    if not isinstance(raw, list) or not raw:
        raise InvalidInput.field("hosts", "must be a non-empty list of hosts")
    problems: dict[str, str] = {}
    parsed: list[HostRequest] = []
    for index, item in enumerate(raw):
        where = f"hosts[{index}]"
        if not isinstance(item, dict):
            problems[where] = "must be an object"
            continue
        bad = len(problems)
        biz = _int(item, "bk_biz_id", where, problems, required=True)
        cloud = _int(item, "bk_cloud_id", where, problems, default=0)
        port = _int(item, "port", where, problems, default=22)
        ap_id = _ap_id(item, where, problems)
        host_id = _int(item, "bk_host_id", where, problems, default=None, maximum=MAX_HOST_ID)
        inner_ip = _ip(item, "inner_ip", 4, where, problems)
        inner_ipv6 = _ip(item, "inner_ipv6", 6, where, problems)
        if inner_ip is None and inner_ipv6 is None and f"{where}.inner_ip" not in problems:
            problems[f"{where}.inner_ip"] = "inner_ip or inner_ipv6 is required"
        os_type = str(item.get("os_type") or "LINUX").upper()
        transport = str(item.get("transport") or "ssh").lower()
        if transport not in TRANSPORTS:
            problems[f"{where}.transport"] = f"{transport!r} must be one of {', '.join(sorted(TRANSPORTS))}"
        auth_type = str(item.get("auth_type") or "PASSWORD").upper()
        if auth_type not in AUTH_TYPES:
            problems[f"{where}.auth_type"] = f"must be one of {', '.join(sorted(AUTH_TYPES))}"
        setup_path = item.get("setup_path")
        if setup_path is not None and (problem := _setup_path_problem(setup_path)):
            problems[f"{where}.setup_path"] = problem
        if port is not None and not 0 < port < 65536:
            problems[f"{where}.port"] = "must be 1-65535"
        account = _text(item.get("account"))
        if account is not None and (problem := _account_problem(account)):
            problems[f"{where}.account"] = f"the account of host {inner_ip or inner_ipv6 or '?'} {problem}"
        if len(problems) > bad or biz is None or cloud is None or port is None or ap_id is None:
            continue
        parsed.append(
            HostRequest(
                index=index,
                bk_biz_id=biz,
                bk_cloud_id=cloud,
                inner_ip=inner_ip,
                inner_ipv6=inner_ipv6,
                os_type=os_type,
                transport=transport,
                port=port,
                account=account,
                auth_type=auth_type,
                password=_text(item.get("password")),
                key=_text(item.get("key")),
                ap_id=ap_id,
                setup_path=setup_path,
                bk_host_id=host_id,
            )
        )
    if problems:
        raise InvalidInput(problems)
    return parsed


def _ap_id(item: Mapping[str, object], where: str, problems: dict[str, str]) -> int | None:
    """The host's access point id: none given, or -1, is the default access point. Whether it exists is
    checked when the job is created, where an unknown one refuses the host (``unknown_ap``)."""
    value = item.get("ap_id")
    if (isinstance(value, int) and not isinstance(value, bool) and value == AUTO_AP_ID) or value == str(AUTO_AP_ID):
        return package_rows.DEFAULT_AP_ID
    ap_id = _int(item, "ap_id", where, problems, default=package_rows.DEFAULT_AP_ID)
    if f"{where}.ap_id" in problems:
        problems[f"{where}.ap_id"] += "; give an access point id, or -1 for the default access point"
    return ap_id


def _account_problem(account: str) -> str | None:
    """Why ``account`` cannot be a host's login: longer than its column, or refused by SSH's SASLprep."""
    if len(account) > MAX_ACCOUNT_CHARS:
        return f"must be at most {MAX_ACCOUNT_CHARS} characters"
    return login_name_problem(account)


def _setup_path_problem(value: object) -> str | None:
    """Why ``value`` cannot be an install path: it must be absolute, normalised and at least two levels deep,
    so an agent never lands in (or is uninstalled from) ``/`` or a system folder like ``/usr``."""
    if not isinstance(value, str) or not value.startswith("/"):
        return "must be an absolute path such as /usr/local/nodeops-agent"
    parts = value.rstrip("/").split("/")[1:]
    if len(value) > 255 or any(part in ("", ".", "..") for part in parts) or not value.isprintable():
        return "must be a normalised absolute path (no '.', '..' or empty parts), at most 255 characters"
    if len(parts) < 2:
        return f"{value!r} is too shallow: give a folder of its own, e.g. /opt/nodeops-agent"
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(
    item: Mapping[str, object],
    name: str,
    where: str,
    problems: dict[str, str],
    *,
    required: bool = False,
    default: int | None = None,
    maximum: int = MAX_INT32,
) -> int | None:
    """The field ``name`` of a host, in what its column holds; a problem is named ``hosts[i].name``."""
    field = f"{where}.{name}"
    return int_param(item.get(name), field, problems, required=required, default=default, minimum=0, maximum=maximum)


def _ip(item: Mapping[str, object], name: str, family: int, where: str, problems: dict[str, str]) -> str | None:
    value = item.get(name)
    if value is None or value == "":
        return None
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        problems[f"{where}.{name}"] = f"{value!r} is not an IPv{family} address"
        return None
    if address.version != family:
        problems[f"{where}.{name}"] = f"{value!r} is not an IPv{family} address"
        return None
    return address.compressed
