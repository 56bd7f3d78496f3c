"""A request's contract, written once: its fields (``Field``), read from what the caller sent (``Contract.read``)
and described for the OpenAPI schema (``Contract.json_schema``).

Each field is read by the one parser of its kind (``params.int_param``, ``params.int_list``,
``instance_id.parse_instance_ids``, ``bool_value``), so a bad field is named with the same message
wherever it is sent. A contract reads fields one by one; checks across fields stay with the use case, which
puts their problems in the same ``problems`` (``Contract.gather``) so one InvalidInput names every bad field.
A nested object is read by its own contract, its problems named under a prefix (``hosts[3].port``); a list of
objects is split by ``objects``, one wording for every such list. A field of kind OBJECT or OBJECTS may name its
``item`` contract, which describes it (a component of its own, under the item contract's name).
Pure: imports only ``nodeops.domain`` and ``nodeops.errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nodeops.domain.instance_id import InstanceId, parse_instance_id, parse_instance_ids
from nodeops.domain.params import MAX_BIGINT, int_list, int_param, list_items
from nodeops.errors import InvalidInput

INSTANCE_ID_FORMS = "object_type|node_type|type|id, or a bk_host_id"

# reads one field: ``reader(value, name, problems)`` is its value in what was sent, a problem put under ``name``
Reader = Callable[[object, str, dict[str, str]], object]


class Kind(StrEnum):
    INT = "int"  # an integer in minimum..maximum (``params.int_param``)
    INT_LIST = "int list"  # a list of them (``params.int_list``)
    LIST = "list"  # a list of values (one stands for a list of itself) as sent, each with its name (``list_items``)
    INSTANCE_ID = "instance id"  # one instance_id (``instance_id.parse_instance_id``)
    INSTANCE_IDS = "instance ids"  # a list of them (``instance_id.parse_instance_ids``)
    BOOL = "bool"  # true or false, also as text (``bool_value``)
    CHOICE = "choice"  # one of ``choices`` (with ``fold``: in any case)
    # the use case reads each object with its contract (``item``, which also describes it when the field names it)
    OBJECT = "object"  # one object (``one_object``); without ``item``, passed as sent
    OBJECTS = "list of objects"  # a list of them (``objects``): each is ``(index, its name, the object)``
    # TEXT and VALUE are passed as sent (absent: the default): the use case reads them, and their ``required``
    # only documents
    TEXT = "text"  # a string
    VALUE = "value"  # anything else the use case reads itself (``schema`` documents it)


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """One parameter of a request: its kind, whether it is required, its default and its limits."""

    name: str
    kind: Kind
    required: bool = False
    default: object = None
    minimum: int = 1  # INT, INT_LIST
    maximum: int = MAX_BIGINT  # INT, INT_LIST
    max_items: int | None = None  # the lists
    min_items: int | None = None  # OBJECTS: 0 for a required list that may be empty (default: 1 when required)
    noun: str | None = None  # INT_LIST, LIST: what the list holds, in words (default "positive integers")
    single: bool = False  # INSTANCE_IDS: one id may stand for a list of itself
    unique: bool = False  # INT_LIST: each integer once, the first kept
    skip_blank: bool = False  # INT_LIST, LIST: items that are null or "" are left out
    choices: tuple[str, ...] = ()  # CHOICE
    fold: str | None = None  # CHOICE: "lower" or "upper", the case a value is read in before it is compared
    item: Contract | None = None  # OBJECT, OBJECTS: the contract each object is read with, and described by
    description: str = ""
    schema: Mapping[str, Any] | None = None  # the schema of its value, for OBJECT, OBJECTS and special cases


class Values:
    """What ``Contract.read`` found: each field's value (its default when absent; for a bad one, what its parser
    gives back: None, or the good items of a list), typed by accessor."""

    __slots__ = ("values",)  # built on every request (the log API's too): a plain class builds fastest

    def __init__(self, values: Mapping[str, object]) -> None:
        self.values = values

    def __getitem__(self, name: str) -> object:
        return self.values[name]

    def integer(self, name: str) -> int | None:
        value = self.values[name]
        assert value is None or isinstance(value, int)
        return value

    def integers(self, name: str) -> list[int]:
        value = self.values[name]
        assert isinstance(value, list)
        return value

    def instance_ids(self, name: str) -> list[InstanceId]:
        value = self.values[name]
        assert isinstance(value, list)
        return value

    def items(self, name: str) -> list[tuple[str, object]]:
        value = self.values[name]
        assert isinstance(value, list)
        return value

    def objects(self, name: str) -> list[tuple[int, str, Mapping[str, object]]]:
        """The objects of an OBJECTS field: index, name and object of each."""
        value = self.values[name]
        assert isinstance(value, list)
        return value

    def object(self, name: str) -> Mapping[str, object] | None:
        value = self.values[name]
        assert value is None or isinstance(value, Mapping)
        return value

    def instance_id(self, name: str) -> InstanceId | None:
        value = self.values[name]
        assert value is None or isinstance(value, InstanceId)
        return value

    def flag(self, name: str) -> bool:
        value = self.values[name]
        assert isinstance(value, bool)
        return value

    def text(self, name: str) -> str | None:
        value = self.values[name]
        assert value is None or isinstance(value, str)
        return value


COMMON_ARGS: tuple[Field, ...] = (
    Field(name="bk_app_code", kind=Kind.TEXT, description="Caller app code."),
    Field(name="bk_app_secret", kind=Kind.TEXT, description="Caller app secret."),
    Field(name="bk_token", kind=Kind.TEXT, description="Login ticket issued by `nodeops token issue`."),
    Field(name="bk_username", kind=Kind.TEXT, description="User name; only for apps allowed to pass it."),
)


JOB_ID = Field(name="job_id", kind=Kind.INT, required=True, description="任务ID: the job_id.")


@dataclass(frozen=True, slots=True)
class Contract:
    """The parameters of one request, under the name its schema has in the OpenAPI components."""

    name: str
    description: str
    fields: tuple[Field, ...]
    documented: tuple[Field, ...] = COMMON_ARGS  # described, read elsewhere (the ESB common args: api.deps)
    components: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # named schemas its fields refer to
    # each field's name and reader (``field_reader``), bound once: reading a request dispatches on nothing
    readers: tuple[tuple[str, Reader], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "readers", tuple((item.name, field_reader(item)) for item in self.fields))

    def read(self, params: Mapping[str, object]) -> Values:
        """Every field read; raises one InvalidInput naming every bad field."""
        problems: dict[str, str] = {}
        values = self.gather(params, problems)
        self.check(problems)
        return values

    def gather(self, params: Mapping[str, object], problems: dict[str, str], *, prefix: str = "") -> Values:
        """Every field read, in order, a bad one put in ``problems`` (for the use case's own checks to follow).
        ``prefix`` names the object read, for a nested one: its field ``port`` is then ``{prefix}.port``."""
        if not prefix:
            return Values({name: read(params.get(name), name, problems) for name, read in self.readers})
        at = f"{prefix}."
        return Values({name: read(params.get(name), at + name, problems) for name, read in self.readers})

    def check(self, problems: Mapping[str, str]) -> None:
        """Raise one InvalidInput naming every problem, if there is any: in the order of the fields they are about,
        each field's as found, after those about no field of the contract (the path's job_id, read first)."""
        if not problems:
            return
        order = {item.name: index for index, item in enumerate(self.fields)}

        def position(key: str) -> int:
            return order.get(key.split("[", 1)[0].split(".", 1)[0], -1)

        raise InvalidInput({key: problems[key] for key in sorted(problems, key=position)})

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the request's parameters, as an OpenAPI component."""
        every = (*self.documented, *self.fields)
        schema: dict[str, Any] = {"description": self.description} if self.description else {}
        schema["properties"] = {item.name: field_schema(item) for item in every}
        required = [item.name for item in every if item.required]
        if required:
            schema["required"] = required
        schema["title"] = self.name
        schema["type"] = "object"
        return schema

    def component_schemas(self) -> dict[str, Mapping[str, Any]]:
        """The named schemas its fields refer to: ``components``, and each ``item`` contract's (and theirs)."""
        schemas: dict[str, Mapping[str, Any]] = dict(self.components)
        for item in self.fields:
            if item.item is not None:
                schemas.update(item.item.component_schemas())
                schemas[item.item.name] = item.item.json_schema()
        return schemas


def objects(
    value: object,
    name: str,
    problems: dict[str, str],
    *,
    noun: str,
    required: bool = False,
    may_be_empty: bool = False,
    max_items: int | None = None,
) -> list[tuple[int, str, Mapping[str, object]]]:
    """The objects of a list of objects, each as ``(index, its name name[index], the object)``: the list's problems
    are ``list_items``' ("must be a list of [at most max_items] {noun}"; absent: none, or with ``required``
    "this field is required: a non-empty list of {noun}", or with ``may_be_empty`` too, only when it is not sent:
    "this field is required: a list of {noun}"), an item that is not an object is "must be an object" and left
    out. Read each object with ``Contract.gather(item, problems, prefix=its name)``."""
    if required and may_be_empty and value is None:
        problems[name] = f"this field is required: a list of {noun}"
        return []
    non_empty = required and not may_be_empty
    items = list_items(
        value, name, problems, noun=noun, required=non_empty, max_items=max_items, single=False, blank_is_absent=False
    )
    found: list[tuple[int, str, Mapping[str, object]]] = []
    for index, (where, item) in enumerate(items):
        if isinstance(item, Mapping):
            found.append((index, where, item))
        else:
            problems[where] = "must be an object"
    return found


def one_object(
    value: object, name: str, problems: dict[str, str], *, required: bool = False
) -> Mapping[str, object] | None:
    """An object field: None when absent (with ``required``, the problem "this field is required (an object)"),
    or the problem "must be an object" for anything else but an object."""
    if value is None:
        if required:  # unless it was named already: a bad object is read as None
            problems.setdefault(name, "this field is required (an object)")
        return None
    if not isinstance(value, Mapping):
        problems[name] = "must be an object"
        return None
    return value


def read_field(item: Field, value: object, problems: dict[str, str], *, name: str | None = None) -> object:
    """The value of ``item`` in what was sent (``value``); a problem is named ``name`` (default ``item.name``)."""
    return field_reader(item)(value, name or item.name, problems)


def field_reader(item: Field) -> Reader:
    """How ``item`` is read: ``reader(value, name, problems)`` gives its value in what was sent, by the one parser
    of its kind with the field's settings bound, and puts a problem under ``name``."""
    kind, required, default = item.kind, item.required, item.default
    if kind == Kind.INT:
        assert default is None or isinstance(default, int)
        low, high, fallback = item.minimum, item.maximum, default

        def read_int(value: object, name: str, problems: dict[str, str]) -> object:
            return int_param(value, name, problems, required=required, default=fallback, minimum=low, maximum=high)

        return read_int
    if kind == Kind.INT_LIST:
        noun = item.noun or "positive integers"
        return lambda value, name, problems: int_list(
            value,
            name,
            problems,
            noun=noun,
            required=required,
            max_items=item.max_items,
            skip_blank=item.skip_blank,
            unique=item.unique,
            minimum=item.minimum,
            maximum=item.maximum,
        )
    if kind == Kind.LIST:
        noun = item.noun or "values"
        return lambda value, name, problems: list_items(
            value, name, problems, noun=noun, max_items=item.max_items, skip_blank=item.skip_blank
        )
    if kind == Kind.INSTANCE_IDS:
        return lambda value, name, problems: parse_instance_ids(
            value, name, problems, allow_single=item.single, required=required, max_items=item.max_items
        )
    if kind == Kind.INSTANCE_ID:
        return lambda value, name, problems: _instance_id(value, name, problems, required=required)
    if kind == Kind.BOOL:
        return lambda value, name, problems: bool_value(value, name, problems, default=bool(default))
    if kind == Kind.CHOICE:
        return lambda value, name, problems: _choice(item, value, name, problems)
    if kind == Kind.OBJECTS:
        noun, empty = item.noun or "objects", item.min_items == 0
        return lambda value, name, problems: objects(
            value, name, problems, noun=noun, required=required, may_be_empty=empty, max_items=item.max_items
        )
    if kind == Kind.OBJECT and item.item is not None:

        def read_object(value: object, name: str, problems: dict[str, str]) -> object:
            found = one_object(value, name, problems, required=required)
            return default if found is None else found

        return read_object
    return lambda value, _name, _problems: default if value is None else value  # TEXT, VALUE, OBJECT: as sent


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def bool_value(value: object, name: str, problems: dict[str, str], *, default: bool) -> bool:
    """A boolean, also from the text of a query string: ``true``/``false``, ``1``/``0``, ``yes``/``no`` in any
    case, surrounding whitespace ignored; absent (None, or blank text) is ``default``."""
    if isinstance(value, bool):
        return value
    if value is None:
        return default
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return default
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
    elif isinstance(value, int) and value in (0, 1):
        return bool(value)
    problems[name] = f"{shown(value)} must be true or false"
    return default


def shown(value: object) -> str:
    """A caller's value quoted for a message, cut so a huge one cannot flood the answer."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _instance_id(value: object, name: str, problems: dict[str, str], *, required: bool) -> InstanceId | None:
    if value is None or value == "":
        if required:
            problems[name] = f"this field is required ({INSTANCE_ID_FORMS})"
        return None
    try:
        return parse_instance_id(value)
    except InvalidInput as exc:
        problems[name] = "; ".join(exc.problems.values())
        return None


def _choice(item: Field, value: object, name: str, problems: dict[str, str]) -> str | None:
    accepted = ", ".join(item.choices)
    if value is None or value == "":
        if item.required:
            problems[name] = f"this field is required: one of {accepted}"
        return _text_default(item)
    folded = value
    if isinstance(value, str) and item.fold is not None:
        folded = value.lower() if item.fold == "lower" else value.upper()
    if not isinstance(folded, str) or folded not in item.choices:
        problems[name] = f"{shown(value)} must be one of {accepted}"
        return _text_default(item)
    return folded


def _text_default(item: Field) -> str | None:
    assert item.default is None or isinstance(item.default, str)
    return item.default


_INSTANCE_ID_SCHEMA = {"anyOf": [{"type": "string"}, {"type": "integer"}]}


def field_schema(item: Field) -> dict[str, Any]:
    """The JSON schema of one field: its value's, with its title, description and default."""
    value = dict(item.schema) if item.schema is not None else _value_schema(item)
    if item.item is not None and item.schema is None:
        ref = {"$ref": f"#/components/schemas/{item.item.name}"}
        value = ref if item.kind == Kind.OBJECT else {"type": "array", "items": ref, **_items(item)}
    if not item.required and item.default is None:
        value = {"anyOf": [value, {"type": "null"}]} if value else {}
        value["default"] = None
    elif not item.required:
        value["default"] = item.default
    if item.description:
        value["description"] = item.description
    value["title"] = item.name.replace("_", " ").title()
    return value


def _value_schema(item: Field) -> dict[str, Any]:
    if item.kind == Kind.INT:
        return {"type": "integer", **_range(item)}
    if item.kind == Kind.INT_LIST:
        return {"type": "array", "items": {"type": "integer", **_range(item)}, **_items(item)}
    if item.kind == Kind.LIST:
        return {"type": "array", "items": {"type": "string"}, **_items(item)}
    if item.kind == Kind.INSTANCE_ID:
        return dict(_INSTANCE_ID_SCHEMA)
    if item.kind == Kind.INSTANCE_IDS:
        return {"type": "array", "items": _INSTANCE_ID_SCHEMA, **_items(item)}
    if item.kind == Kind.BOOL:
        return {"type": "boolean"}
    if item.kind == Kind.CHOICE:
        return {"type": "string", "enum": list(item.choices)}
    if item.kind == Kind.TEXT:
        return {"type": "string"}
    if item.kind == Kind.OBJECT:
        return {"type": "object"}
    if item.kind == Kind.VALUE:
        return {}
    return {"type": "array", "items": {"type": "object"}, **_items(item)}


def _range(item: Field) -> dict[str, int]:
    limits = {"minimum": item.minimum}
    if item.maximum != MAX_BIGINT:
        limits["maximum"] = item.maximum
    return limits


def _items(item: Field) -> dict[str, int]:
    limits: dict[str, int] = {}
    if item.required and item.min_items != 0:
        limits["minItems"] = 1
    if item.max_items is not None:
        limits["maxItems"] = item.max_items
    return limits
