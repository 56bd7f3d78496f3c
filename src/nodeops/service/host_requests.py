"""The ``hosts`` of an install request (install_job, a host import): ``parse_hosts`` reads each with its contract
(``INSTALL_HOST``) into a ``HostRequest``, naming every problem ``hosts[i].field``; the checks across a host's
fields (an address of the right family, the account, the install path) are made here.

Only the shape is checked here (addresses, port, account, auth type, install path, ap_id); what depends on the
store (a duplicate, a busy host, an access point that does not exist) is decided when the job is created
(``job_launch``). ``ap_id`` -1 (Node Manager's 自动选择接入点, the default) is resolved there too, with the host's
cloud area (``cloud_areas.settle_hosts``), and ``install_channel_id`` -1 (自动选择) is no channel. A proxy needs an
outer (or login) address, the one the service logs in to (``proxy_problems``). Secrets never appear in messages.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from nodeops.crypto import SecretBox
from nodeops.domain.contract import Contract, Field, Kind, read_field
from nodeops.domain.instance_id import MAX_HOST_ID
from nodeops.engine.transports.ssh import login_name_problem
from nodeops.errors import InvalidInput
from nodeops.store.hosts import Login
from nodeops.store.models import utcnow

TRANSPORTS = frozenset({"ssh", "local"})
AUTH_TYPES = frozenset({"PASSWORD", "KEY"})
MAX_ACCOUNT_CHARS = 64  # the hosts.account column
MAX_INT32 = 2**31 - 1  # bk_biz_id, bk_cloud_id, ap_id and port are 32-bit columns
AUTO_AP_ID = -1  # Node Manager's 自动选择接入点 (network spec §15.3): the area's access point, else the default
AUTO_CHANNEL_ID = -1  # Node Manager's 自动选择 install channel: no channel (nodeops has no network segments to match)
MAX_SHOWN_CHARS = 64  # of a bad value, in a message
PROXY_OUTER_REQUIRED = "Proxy 操作的请求参数 outer_ip 和 outer_ipv6 不能同时为空"


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
            name="bk_host_id",
            kind=Kind.INT,
            minimum=0,
            maximum=MAX_HOST_ID,
            description="The host's id when known (reinstall); 0 is unknown.",
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
            default=AUTO_AP_ID,
            minimum=AUTO_AP_ID,
            maximum=MAX_INT32,
            description="Access point the agent reports to; -1 (自动选择接入点, the default) is its cloud area's "
            "access point if the area has one, else the default one (the lowest id). A host whose access point does "
            "not exist is refused in ip_filter (unknown_ap).",
        ),
        Field(
            name="is_manual",
            kind=Kind.BOOL,
            default=False,
            description="手动安装: the service does not log in; someone runs the command get_job_commands gives on "
            "the host. The login fields are optional then. One request may not mix manual and other hosts (3801024).",
        ),
        Field(name="account", kind=Kind.TEXT, description="SSH login account."),
        Field(
            name="auth_type",
            kind=Kind.CHOICE,
            default="PASSWORD",
            choices=tuple(sorted(AUTH_TYPES)),
            fold="upper",
            description="PASSWORD or KEY, in any case.",
        ),
        Field(name="password", kind=Kind.TEXT, description="SSH password (stored encrypted, never shown)."),
        Field(name="key", kind=Kind.TEXT, description="SSH private key (stored encrypted, never shown)."),
        Field(name="port", kind=Kind.INT, default=22, maximum=65535, description="SSH port, 1-65535."),
        Field(
            name="transport",
            kind=Kind.CHOICE,
            default="ssh",
            choices=tuple(sorted(TRANSPORTS)),
            fold="lower",
            description="nodeops: ssh, or local (run on the service's machine), in any case.",
        ),
        Field(name="setup_path", kind=Kind.TEXT, description="nodeops: absolute install path on the host."),
        Field(
            name="owned_path",
            kind=Kind.BOOL,
            default=False,
            description="nodeops: an account that is neither root nor allowed `sudo -n` installs as itself into "
            "setup_path, a folder it can write (without this, such an account is refused).",
        ),
        Field(
            name="outer_ip",
            kind=Kind.TEXT,
            description="Outer IPv4: where the service logs in to a proxy (unless login_ip is given); a proxy "
            "needs outer_ip, outer_ipv6 or login_ip.",
        ),
        Field(name="outer_ipv6", kind=Kind.TEXT, description="Outer IPv6, when the proxy has no outer_ip."),
        Field(
            name="login_ip",
            kind=Kind.TEXT,
            description="The address the service logs in to, when it is not the host's inner (or a proxy's outer) one.",
        ),
        Field(
            name="install_channel_id",
            kind=Kind.INT,
            minimum=AUTO_CHANNEL_ID,
            maximum=MAX_INT32,
            description="Install channel (安装通道) of the host's area whose jump servers the service reaches it "
            "through; -1 or absent: none.",
        ),
    ),
    documented=(),
)
HOSTS = Field(
    name="hosts",
    kind=Kind.OBJECTS,
    required=True,
    noun="hosts",
    item=INSTALL_HOST,
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
    outer_ip: str | None = None  # IPv4, else IPv6
    login_ip: str | None = None
    install_channel_id: int | None = None
    is_manual: bool = False
    owned_path: bool = False

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
            is_manual=self.is_manual,
            owned_path=self.owned_path,
        )


def parse_hosts(raw: object) -> list[HostRequest]:
    """Validate ``hosts`` (``HOSTS``): every problem is named ``hosts[i].field``. Secrets never appear in
    messages."""
    problems: dict[str, str] = {}
    found = read_field(HOSTS, raw, problems)
    assert isinstance(found, list)
    parsed = read_hosts(found, problems)
    if problems:
        raise InvalidInput(problems)
    return parsed


def read_hosts(items: Sequence[tuple[int, str, Mapping[str, object]]], problems: dict[str, str]) -> list[HostRequest]:
    """Each host of ``items`` (``objects``' index, name and object) read by ``INSTALL_HOST``, then checked across
    its fields; the bad ones are put in ``problems`` and left out."""
    parsed: list[HostRequest] = []
    for index, where, item in items:
        bad = len(problems)
        values = INSTALL_HOST.gather(item, problems, prefix=where)
        inner_ip = _ip(values["inner_ip"], f"{where}.inner_ip", 4, problems)
        inner_ipv6 = _ip(values["inner_ipv6"], f"{where}.inner_ipv6", 6, problems)
        if inner_ip is None and inner_ipv6 is None and f"{where}.inner_ip" not in problems:
            problems[f"{where}.inner_ip"] = "inner_ip or inner_ipv6 is required"
        setup_path = values["setup_path"]
        if setup_path is not None and (problem := setup_path_problem(setup_path)):
            problems[f"{where}.setup_path"] = problem
        outer_ip = _ip(values["outer_ip"], f"{where}.outer_ip", 4, problems)
        outer_ipv6 = _ip(values["outer_ipv6"], f"{where}.outer_ipv6", 6, problems)
        login_ip = _any_ip(values["login_ip"], f"{where}.login_ip", problems)
        channel_id = values.integer("install_channel_id")
        account = _text(values["account"])
        if account is not None and (problem := _account_problem(account)):
            problems[f"{where}.account"] = f"the account of host {inner_ip or inner_ipv6 or '?'} {problem}"
        biz, cloud, port, ap_id = (values.integer(name) for name in ("bk_biz_id", "bk_cloud_id", "port", "ap_id"))
        if len(problems) > bad or biz is None or cloud is None or port is None or ap_id is None:
            continue
        parsed.append(
            HostRequest(
                index=index,
                bk_biz_id=biz,
                bk_cloud_id=cloud,
                inner_ip=inner_ip,
                inner_ipv6=inner_ipv6,
                os_type=str(values["os_type"] or "LINUX").upper(),
                transport=values.text("transport") or "ssh",
                port=port,
                account=account,
                auth_type=values.text("auth_type") or "PASSWORD",
                password=_text(values["password"]),
                key=_text(values["key"]),
                # -1 (自动选择接入点) is resolved, and whether the access point exists checked, when the job is
                # created (``cloud_areas.settle_hosts``), where an unknown one refuses the host (unknown_ap)
                ap_id=ap_id,
                setup_path=setup_path if isinstance(setup_path, str) else None,
                bk_host_id=values.integer("bk_host_id"),
                outer_ip=outer_ip or outer_ipv6,
                login_ip=login_ip,
                install_channel_id=None if channel_id in (None, AUTO_CHANNEL_ID) else channel_id,
                is_manual=values.flag("is_manual"),
                owned_path=values.flag("owned_path"),
            )
        )
    return parsed


def proxy_problems(hosts: Sequence[HostRequest]) -> dict[str, str]:
    """What makes these hosts unfit to be proxies: each needs the address the service logs in to from outside
    its area (network spec §13.1)."""
    return {
        f"hosts[{host.index}].outer_ip": f"{PROXY_OUTER_REQUIRED} (host {host.ip}; or give login_ip)"
        for host in hosts
        if not (host.outer_ip or host.login_ip)
    }


def _account_problem(account: str) -> str | None:
    """Why ``account`` cannot be a host's login: longer than its column, or refused by SSH's SASLprep."""
    if len(account) > MAX_ACCOUNT_CHARS:
        return f"must be at most {MAX_ACCOUNT_CHARS} characters"
    return login_name_problem(account)


def setup_path_problem(value: object) -> str | None:
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


def _any_ip(value: object, name: str, problems: dict[str, str]) -> str | None:
    """The IPv4 or IPv6 address ``value``, compressed; None when absent or bad (then named ``name``)."""
    if value is None or value == "":
        return None
    try:
        return ipaddress.ip_address(str(value).strip()).compressed
    except ValueError:
        problems[name] = f"{_shown(value)} is not an IP address"
        return None


def _ip(value: object, name: str, family: int, problems: dict[str, str]) -> str | None:
    """The address ``value`` of IP ``family`` (4 or 6), compressed; None when absent or bad (then named ``name``)."""
    if value is None or value == "":
        return None
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        problems[name] = f"{_shown(value)} is not an IPv{family} address"
        return None
    if address.version != family:
        problems[name] = f"{_shown(value)} is not an IPv{family} address"
        return None
    return address.compressed


def _shown(value: object) -> str:
    """A bad value as a message quotes it: its repr, cut to ``MAX_SHOWN_CHARS`` (a request may send megabytes)."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else f"{text[:MAX_SHOWN_CHARS]}…"
