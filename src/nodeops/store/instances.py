"""The one rule that finds an instance's records by the instance_id a caller names it by (spec §4, and
docs/compatibility.md "The two host forms").

A host instance is found by either of its identities, whatever form its records were created with: the
``bk_host_id`` form by the ``bk_host_id`` column, the host-key form (``ip-cloud-supplier``, normalised by
``parse_instance_id``) by ``host_key``. Any other instance (a service instance) is found by its full
``instance_id``. A service instance's record keeps its host's id for the engine but no host key, so the host
forms never name it: a record answers the ``bk_host_id`` form only when it has a host key.

The rule is given three ways, all built from ``key_of``: ``sql_condition`` (raw SQL text for one key, for the
log API's hot statement), ``condition`` (a SQLAlchemy condition naming any of several instances) and ``pick``
(the records some instance_ids name, among records already loaded). Which attempt of an instance is read
(the newest, ``is_latest``, or one asked for) is the caller's choice. Imports only ``domain`` and the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from sqlalchemy import ColumnElement, and_, or_

from nodeops.domain.instance_id import InstanceId
from nodeops.store.models import InstanceRecord

# the instance_records columns an instance_id is matched on
INSTANCE_ID = "instance_id"  # anything but a host instance: the full id, as created
BK_HOST_ID = "bk_host_id"  # a host in the bk_host_id form
HOST_KEY = "host_key"  # a host in the host-key form
COLUMNS = (INSTANCE_ID, BK_HOST_ID, HOST_KEY)


# the column an instance_id is matched on, and the value it must hold (a plain tuple: the log API builds one
# per request, and a NamedTuple costs twice as much to build)
RecordKey = tuple[str, int | str]


class HasIdentity(Protocol):
    """A loaded record (or instance) with the columns the rule reads."""

    @property
    def instance_id(self) -> str: ...
    @property
    def bk_host_id(self) -> int | None: ...
    @property
    def host_key(self) -> str | None: ...


R = TypeVar("R", bound=HasIdentity)


def key_of(instance: InstanceId) -> RecordKey:
    """The column and value that find the records ``instance`` names (the log API calls this per request)."""
    if (host_id := instance.bk_host_id) is not None:
        return BK_HOST_ID, host_id
    if instance.is_host_instance:  # a parsed host instance's id is its normalised host key
        return HOST_KEY, instance.id
    return INSTANCE_ID, str(instance)


def sql_condition(column: str, *, table: str, param: str) -> str:
    """Raw SQL matching the records of ``table`` (an alias of instance_records) whose ``column`` (one of
    ``COLUMNS``) holds the statement's parameter ``param``."""
    if column not in COLUMNS:
        raise ValueError(f"{column!r} is not one of {', '.join(COLUMNS)}")
    text = f"{table}.{column} = {param}"
    if column == BK_HOST_ID:
        text += f" AND {table}.host_key IS NOT NULL"
    return text


def condition(wanted: Sequence[InstanceId]) -> ColumnElement[bool]:
    """A condition on InstanceRecord matching the records of any instance in ``wanted`` (none when empty)."""
    values: dict[str, list[int | str]] = {column: [] for column in COLUMNS}
    for item in wanted:
        column, value = key_of(item)
        values[column].append(value)
    parts: list[ColumnElement[bool]] = []
    if values[INSTANCE_ID]:
        parts.append(InstanceRecord.instance_id.in_(values[INSTANCE_ID]))
    if values[BK_HOST_ID]:
        parts.append(and_(InstanceRecord.bk_host_id.in_(values[BK_HOST_ID]), InstanceRecord.host_key.is_not(None)))
    if values[HOST_KEY]:
        parts.append(InstanceRecord.host_key.in_(values[HOST_KEY]))
    return or_(*parts) if parts else InstanceRecord.id.is_(None)


def keys_of(record: HasIdentity) -> list[RecordKey]:
    """Every key that finds ``record``: its full id, and for a host's own record its host key and id."""
    keys: list[RecordKey] = [(INSTANCE_ID, record.instance_id)]
    if record.host_key is not None:
        keys.append((HOST_KEY, record.host_key))
        if record.bk_host_id is not None:
            keys.append((BK_HOST_ID, record.bk_host_id))
    return keys


def pick(records: Sequence[R], wanted: Sequence[InstanceId]) -> list[R | None]:
    """For each instance of ``wanted``, in order, the record among ``records`` it names (None when none does;
    the last one when several do: give one record per instance, e.g. each instance's latest)."""
    index = {key: record for record in records for key in keys_of(record)}
    return [index.get(key_of(item)) for item in wanted]
