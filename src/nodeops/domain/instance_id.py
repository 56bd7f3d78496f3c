"""The instance_id codec: ``{object_type}|{node_type}|{type}|{id}`` and the host key (spec §4).

A host instance's id is either its ``bk_host_id`` or its host key ``{ip}-{bk_cloud_id}-{bk_supplier_id}``
(IPv6 kept in its compressed textual form, which holds ``:`` but never ``-`` or ``|``). Pure: imports only
``nodeops.errors``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from nodeops.domain.params import is_ascii_digits, list_items, parse_int
from nodeops.errors import InvalidInput

FIELD = "instance_id"
FORMAT = "object_type|node_type|type|id"
_IDS = f"instance_ids ({FORMAT}, or bk_host_ids)"  # what a list of them holds, in words
_OBJ_ID = re.compile(r"[A-Za-z0-9_]{1,64}")  # used with fullmatch: "$" would let a trailing "\n" through
_INT = re.compile(r"[0-9]{1,18}")
_SIGNED_INT = re.compile(r"[+-]?[0-9]+")
MAX_HOST_ID = 10**18 - 1
DEFAULT_SUPPLIER_ID = 0  # spec §11.3: the supplier part is always written as 0


class ObjectType(StrEnum):
    HOST = "host"  # a host
    SERVICE = "service"  # a service instance (a process bound to a host)


class NodeType(StrEnum):
    TOPO = "topo"  # a dynamic node of the topology (business, set, module)
    INSTANCE = "instance"  # a static instance: one host or one service instance
    SERVICE_TEMPLATE = "service_template"  # a service template
    SET_TEMPLATE = "set_template"  # a set template


@dataclass(frozen=True, slots=True, kw_only=True)
class HostKey:
    """A host's address identity: inner IP, cloud area and supplier account."""

    ip: str
    bk_cloud_id: int
    bk_supplier_id: int = DEFAULT_SUPPLIER_ID

    def __str__(self) -> str:
        return f"{self.ip}-{self.bk_cloud_id}-{self.bk_supplier_id}"

    @classmethod
    def of(cls, ip: str, bk_cloud_id: int, bk_supplier_id: int = DEFAULT_SUPPLIER_ID) -> HostKey:
        """Build a host key, normalising the IP; raises InvalidInput for a bad IP or negative ids."""
        try:
            address = ipaddress.ip_address(ip.strip())
        except ValueError as exc:
            raise InvalidInput.field("ip", f"{ip!r} is not an IPv4 or IPv6 address") from exc
        if getattr(address, "scope_id", None) is not None:
            raise InvalidInput.field("ip", f"{ip!r}: an IPv6 scope id (%zone) is not accepted")
        if not (0 <= bk_cloud_id <= MAX_HOST_ID and 0 <= bk_supplier_id <= MAX_HOST_ID):
            # the upper bound keeps str(key) parseable: the instance_id codec reads at most 18 digits
            raise InvalidInput.field("bk_cloud_id", "bk_cloud_id and bk_supplier_id must be >= 0, at most 18 digits")
        return cls(ip=address.compressed, bk_cloud_id=bk_cloud_id, bk_supplier_id=bk_supplier_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceId:
    """One parsed instance_id."""

    object_type: ObjectType
    node_type: NodeType
    type: str
    id: str

    def __str__(self) -> str:
        return f"{self.object_type}|{self.node_type}|{self.type}|{self.id}"

    @property
    def is_host_instance(self) -> bool:
        return self.type == "host" and self.object_type == ObjectType.HOST and self.node_type == NodeType.INSTANCE

    @property
    def bk_host_id(self) -> int | None:
        """The host id when this is a host instance in the ``bk_host_id`` form (the log API asks it per request)."""
        ident = self.id
        if ident.isascii() and ident.isdigit() and len(ident) <= _HOST_ID_DIGITS and self.is_host_instance:
            return int(ident)
        return None

    @property
    def host_key(self) -> HostKey | None:
        """The host key when this is a host instance in the ``ip-cloud-supplier`` form."""
        if not self.is_host_instance or _INT.fullmatch(self.id):
            return None
        return _parse_host_key(self.id)


def host_instance_id(*, bk_host_id: int | None = None, host_key: HostKey | None = None) -> InstanceId:
    """The instance_id of a host, in the ``bk_host_id`` form when the id is known, else the host-key form."""
    if bk_host_id is not None:
        ident = str(bk_host_id)
    elif host_key is not None:
        ident = str(host_key)
    else:
        raise ValueError("a host instance_id needs bk_host_id or host_key")
    return InstanceId(object_type=_HOST, node_type=_INSTANCE, type="host", id=ident)


_HOST, _INSTANCE = ObjectType.HOST, NodeType.INSTANCE  # an enum member's lookup costs more than a global's


def parse_instance_id(raw: object) -> InstanceId:
    """Parse what a caller sent as instance_id.

    Accepts the full string in either host form, a service-instance string, and (seed §instance_id is typed
    int) a bare positive integer or digit string meaning that ``bk_host_id``. Raises InvalidInput naming the
    part that is wrong.
    """
    if type(raw) is str:
        # the form nearly every caller sends, already canonical (is_ascii_digits inlined: the log API's hottest line)
        if raw.startswith(_HOST_ID_PREFIX):
            digits = raw[_HOST_ID_PREFIX_LENGTH:]
            if digits.isascii() and digits.isdigit() and digits[0] != "0" and len(digits) <= _HOST_ID_DIGITS:
                return InstanceId(object_type=_HOST, node_type=_INSTANCE, type="host", id=digits)
    elif isinstance(raw, bool) or not isinstance(raw, int | str):
        raise InvalidInput.field(FIELD, f"must be a string {FORMAT} or an integer bk_host_id")
    elif isinstance(raw, int):
        return host_instance_id(bk_host_id=_positive_host_id(raw))
    assert isinstance(raw, str)
    if len(raw) <= _CACHED_LENGTH:
        return _parse_text_cached(raw)
    return _parse_text(raw)


# Parsing (IP addresses above all) costs more than a lookup, and callers repeat the same few ids; the
# results are frozen values, so a bounded memo is safe. Errors are not cached, so junk cannot fill it.
_CACHED_LENGTH = 128
_HOST_ID_PREFIX = "host|instance|host|"
_HOST_ID_PREFIX_LENGTH = len(_HOST_ID_PREFIX)
_HOST_ID_DIGITS = len(str(MAX_HOST_ID))  # a bk_host_id without leading zeros and this many digits at most is valid


@lru_cache(maxsize=4096)
def _parse_text_cached(raw: str) -> InstanceId:
    return _parse_text(raw)


def _parse_text(raw: str) -> InstanceId:
    text = raw.strip()
    # the form nearly every caller sends, without the general parse's splits and patterns
    if text.startswith(_HOST_ID_PREFIX) and is_ascii_digits(digits := text[len(_HOST_ID_PREFIX) :]):
        return host_instance_id(bk_host_id=_positive_host_id(digits))
    if not text:
        raise InvalidInput.field(FIELD, f"must not be blank; expected {FORMAT}")
    if _SIGNED_INT.fullmatch(text):
        return host_instance_id(bk_host_id=_positive_host_id(text))
    parts = text.split("|")
    if len(parts) != 4:
        raise InvalidInput.field(FIELD, f"{_shown(text)} must be {FORMAT} (4 parts joined by '|'), got {len(parts)}")
    object_type, node_type, type_, ident = (part.strip() for part in parts)
    try:
        obj = ObjectType(object_type.lower())
    except ValueError:
        raise InvalidInput.field(
            FIELD, f"object_type {_shown(object_type)} must be one of {', '.join(ObjectType)}"
        ) from None
    try:
        node = NodeType(node_type.lower())
    except ValueError:
        raise InvalidInput.field(FIELD, f"node_type {_shown(node_type)} must be one of {', '.join(NodeType)}") from None
    if not _OBJ_ID.fullmatch(type_):
        raise InvalidInput.field(FIELD, f"type {_shown(type_)} must be host, service or a topology bk_obj_id")
    if node == NodeType.INSTANCE and type_ != obj.value:
        raise InvalidInput.field(FIELD, f"type {_shown(type_)} must be {obj.value!r} for a {obj.value} instance")
    if not ident:
        raise InvalidInput.field(FIELD, "id must not be empty")
    parsed = InstanceId(object_type=obj, node_type=node, type=type_, id=ident)
    if parsed.is_host_instance:
        if _SIGNED_INT.fullmatch(ident):
            parsed = host_instance_id(bk_host_id=_positive_host_id(ident))  # "007" -> "7", as the bare form
        else:
            parsed = InstanceId(object_type=obj, node_type=node, type=type_, id=str(_parse_host_key(ident)))
    elif not _INT.fullmatch(ident):
        raise InvalidInput.field(
            FIELD, f"id {_shown(ident)} must be an integer ({obj.value} {node.value} ids are numeric)"
        )
    return parsed


def _positive_host_id(raw: int | str) -> int:
    """A bk_host_id in 1..MAX_HOST_ID, from an int or a (signed) digit string (``params.parse_int``)."""
    try:
        return parse_int(raw, FIELD, maximum=MAX_HOST_ID)
    except InvalidInput:
        pass
    if isinstance(raw, str):
        shown = _shown(raw)
    else:  # str() of an int with more than 4300 digits raises ValueError, so do not show a huge one
        shown = _shown(str(raw)) if raw.bit_length() <= 256 else "(a huge integer)"
    raise InvalidInput.field(FIELD, f"bk_host_id {shown} must be a positive integer of at most 18 digits")


def _parse_host_key(ident: str) -> HostKey:
    pieces = ident.rsplit("-", 2)
    if len(pieces) != 3:
        raise InvalidInput.field(FIELD, f"id {_shown(ident)} must be a bk_host_id or ip-bk_cloud_id-bk_supplier_id")
    ip, cloud, supplier = pieces
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidInput.field(FIELD, f"id {_shown(ident)}: {_shown(ip)} is not an IPv4 or IPv6 address") from None
    if getattr(address, "scope_id", None) is not None:
        raise InvalidInput.field(FIELD, f"id {_shown(ident)}: an IPv6 scope id (%zone) is not accepted")
    if not (_INT.fullmatch(cloud) and _INT.fullmatch(supplier)):
        raise InvalidInput.field(
            FIELD, f"id {_shown(ident)}: bk_cloud_id and bk_supplier_id must be non-negative integers"
        )
    return HostKey(ip=address.compressed, bk_cloud_id=int(cloud), bk_supplier_id=int(supplier))


def _shown(text: str) -> str:
    """Quote a caller's text for an error message, cut so a huge input cannot flood the answer."""
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def parse_instance_ids(
    value: object,
    name: str,
    problems: dict[str, str],
    *,
    allow_single: bool,
    required: bool = False,
    max_items: int | None = None,
) -> list[InstanceId]:
    """A list of instance ids (``allow_single``: or one id), each read by ``parse_instance_id``; a bad one is put
    in ``problems`` as ``name[i]`` and left out. The list's own rules are ``params.list_items``'."""
    items = list_items(
        value,
        name,
        problems,
        noun=_IDS,
        required=required,
        max_items=max_items,
        single=allow_single,
        blank_is_absent=False,
    )
    parsed: list[InstanceId] = []
    for where, item in items:
        try:
            parsed.append(parse_instance_id(item))
        except InvalidInput as exc:
            problems[where] = "; ".join(exc.problems.values())
    return parsed
