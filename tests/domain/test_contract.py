"""domain.contract: each kind of field read with the messages of its parser, and described as JSON schema."""

from __future__ import annotations

from typing import Any

import pytest

from nodeops.domain.contract import JOB_ID, Contract, Field, Kind, field_schema, objects, one_object, read_field
from nodeops.domain.instance_id import host_instance_id
from nodeops.errors import InvalidInput

PAGE = Field(name="page", kind=Kind.INT, default=1, maximum=1000)
IDS = Field(name="ids", kind=Kind.INT_LIST, required=True, max_items=3, unique=True)
INSTANCES = Field(name="instance_id_list", kind=Kind.INSTANCE_IDS)
INSTANCE = Field(name="instance_id", kind=Kind.INSTANCE_ID, required=True)
FLAG = Field(name="flag", kind=Kind.BOOL, default=True)
CHOICE = Field(name="job_type", kind=Kind.CHOICE, required=True, choices=("A", "B"))
LIST = Field(name="names", kind=Kind.LIST, max_items=3, skip_blank=True)
TEXT = Field(name="name", kind=Kind.TEXT, default="x")
OBJECT = Field(name="scope", kind=Kind.OBJECT)

READS: list[tuple[Field, object, object]] = [
    (PAGE, None, 1),
    (PAGE, "", 1),
    (PAGE, " 7 ", 7),
    (PAGE, 1000, 1000),
    (IDS, [3, "3", 4], [3, 4]),
    (IDS, 5, [5]),
    (INSTANCES, None, []),
    (INSTANCES, ["host|instance|host|7", 8], [host_instance_id(bk_host_id=7), host_instance_id(bk_host_id=8)]),
    (INSTANCE, 9, host_instance_id(bk_host_id=9)),
    (FLAG, None, True),
    (FLAG, "0", False),
    (FLAG, False, False),
    (CHOICE, "B", "B"),
    (LIST, ["a", "", "b"], [("names[0]", "a"), ("names[2]", "b")]),
    (LIST, "a", [("names", "a")]),
    (TEXT, None, "x"),
    (TEXT, "", ""),
    (TEXT, 5, 5),  # passed as sent: the use case checks it
    (OBJECT, {"a": 1}, {"a": 1}),
]


@pytest.mark.parametrize(("field", "sent", "read"), READS)
def test_a_field_reads_what_was_sent(field: Field, sent: object, read: object) -> None:
    assert Contract("R", "", (field,)).read({field.name: sent})[field.name] == read


PROBLEMS: list[tuple[Field, object, dict[str, str]]] = [
    (PAGE, "x", {"page": "'x' is not a positive integer of at most 1000"}),
    (PAGE, 1001, {"page": "1001 is too large: at most 1000"}),
    (PAGE, True, {"page": "must be a positive integer of at most 1000"}),
    (JOB_ID, None, {"job_id": "this field is required (a positive integer)"}),
    (IDS, None, {"ids": "this field is required: a non-empty list of positive integers"}),
    (IDS, [1, 2, 3, 4], {"ids": "must be a list of at most 3 positive integers"}),
    (IDS, [1, 0], {"ids[1]": "0 is not a positive integer"}),
    (
        INSTANCES,
        "host|instance|host|1",
        {"instance_id_list": "must be a list of instance_ids (object_type|node_type|type|id, or bk_host_ids)"},
    ),
    (
        INSTANCES,
        ["x|y"],
        {"instance_id_list[0]": "'x|y' must be object_type|node_type|type|id (4 parts joined by '|'), got 2"},
    ),
    (INSTANCE, "", {"instance_id": "this field is required (object_type|node_type|type|id, or a bk_host_id)"}),
    (INSTANCE, 0, {"instance_id": "bk_host_id '0' must be a positive integer of at most 18 digits"}),
    (FLAG, "maybe", {"flag": "'maybe' must be true or false"}),
    (CHOICE, None, {"job_type": "this field is required: one of A, B"}),
    (CHOICE, "C", {"job_type": "'C' must be one of A, B"}),
    (LIST, {"a": 1}, {"names": "must be a list of at most 3 values"}),
]


@pytest.mark.parametrize(("field", "sent", "problems"), PROBLEMS)
def test_a_bad_field_is_named_with_its_parsers_message(field: Field, sent: object, problems: dict[str, str]) -> None:
    with pytest.raises(InvalidInput) as raised:
        Contract("R", "", (field,)).read({field.name: sent})
    assert raised.value.problems == problems


def test_problems_are_named_in_the_order_of_the_fields() -> None:
    contract = Contract("R", "", (PAGE, IDS))
    problems: dict[str, str] = {}
    values = contract.gather({"page": "x", "ids": [1]}, problems)
    problems["ids"] = "a check across fields"
    problems["job_id"] = "about no field of the contract: first"
    with pytest.raises(InvalidInput) as raised:
        contract.check(problems)
    assert list(raised.value.problems) == ["job_id", "page", "ids"]
    assert values.integer("page") is None and values.integers("ids") == [1]  # a bad field reads as None


SCHEMAS: list[tuple[Field, dict[str, Any]]] = [
    (JOB_ID, {"type": "integer", "minimum": 1, "description": "任务ID: the job_id.", "title": "Job Id"}),
    (PAGE, {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1, "title": "Page"}),
    (
        IDS,
        {
            "type": "array",
            "items": {"type": "integer", "minimum": 1},
            "minItems": 1,
            "maxItems": 3,
            "title": "Ids",
        },
    ),
    (
        INSTANCES,
        {
            "anyOf": [
                {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                {"type": "null"},
            ],
            "default": None,
            "title": "Instance Id List",
        },
    ),
    (INSTANCE, {"anyOf": [{"type": "string"}, {"type": "integer"}], "title": "Instance Id"}),
    (FLAG, {"type": "boolean", "default": True, "title": "Flag"}),
    (CHOICE, {"type": "string", "enum": ["A", "B"], "title": "Job Type"}),
    (TEXT, {"type": "string", "default": "x", "title": "Name"}),
    (OBJECT, {"anyOf": [{"type": "object"}, {"type": "null"}], "default": None, "title": "Scope"}),
    (
        Field(name="sort", kind=Kind.OBJECT, schema={"$ref": "#/components/schemas/Sort"}),
        {"anyOf": [{"$ref": "#/components/schemas/Sort"}, {"type": "null"}], "default": None, "title": "Sort"},
    ),
]


@pytest.mark.parametrize(("field", "schema"), SCHEMAS)
def test_a_field_is_described_by_its_kind_and_limits(field: Field, schema: dict[str, Any]) -> None:
    assert field_schema(field) == schema


def test_a_contract_is_described_with_the_common_args() -> None:
    schema = Contract("PageRequest", "A page.", (JOB_ID, PAGE)).json_schema()
    assert schema["title"] == "PageRequest" and schema["type"] == "object"
    assert schema["description"] == "A page."
    assert schema["required"] == ["job_id"]
    assert list(schema["properties"]) == ["bk_app_code", "bk_app_secret", "bk_token", "bk_username", "job_id", "page"]
    assert "description" not in Contract("R", "", (), documented=()).json_schema()


PORT = Field(name="port", kind=Kind.INT, default=22, maximum=65535)
TRANSPORT = Field(name="transport", kind=Kind.CHOICE, default="ssh", choices=("local", "ssh"), fold="lower")
HOST = Contract("Host", "One host.", (PORT, TRANSPORT), documented=())
HOSTS = Field(name="hosts", kind=Kind.OBJECTS, required=True, max_items=2, noun="hosts", item=HOST)


def test_a_nested_object_names_its_problems_under_its_prefix() -> None:
    problems: dict[str, str] = {}
    values = HOST.gather({"port": 0, "transport": "SSH"}, problems, prefix="hosts[3]")
    assert problems == {"hosts[3].port": "0 is not a positive integer of at most 65535"}
    assert values.text("transport") == "ssh"  # folded before it is compared
    HOST.gather({"transport": "telnet"}, problems, prefix="")
    assert problems["transport"] == "'telnet' must be one of local, ssh"


LISTS: list[tuple[object, dict[str, str]]] = [
    (None, {"hosts": "this field is required: a non-empty list of hosts"}),
    ([], {"hosts": "this field is required: a non-empty list of hosts"}),
    ({"port": 22}, {"hosts": "must be a list of at most 2 hosts"}),
    ("h", {"hosts": "must be a list of at most 2 hosts"}),
    ("", {"hosts": "must be a list of at most 2 hosts"}),
    ([{}, {}, {}], {"hosts": "must be a list of at most 2 hosts"}),
    ([{}, 7], {"hosts[1]": "must be an object"}),
    (
        [["port"], {"port": "x"}],
        {"hosts[0]": "must be an object", "hosts[1].port": "'x' is not a positive integer of at most 65535"},
    ),
    ([{"port": "\uff12\uff12"}], {"hosts[0].port": "'\uff12\uff12' is not a positive integer of at most 65535"}),
    ([{"transport": "ß" * 10_000}], {"hosts[0].transport": repr("ß" * 10_000)[:57] + "... must be one of local, ssh"}),
    ([{"port": 10**5000}], {"hosts[0].port": "(a huge integer) is too large: at most 65535"}),
]


@pytest.mark.parametrize(("sent", "problems"), LISTS)
def test_a_list_of_objects_is_read_item_by_item_with_one_wording(sent: object, problems: dict[str, str]) -> None:
    found: dict[str, str] = {}
    items = Contract("R", "", (HOSTS,)).gather({"hosts": sent}, found).objects("hosts")
    for _index, where, item in items:
        HOST.gather(item, found, prefix=where)
    assert found == problems


def test_objects_give_each_item_its_index_and_name() -> None:
    problems: dict[str, str] = {}
    assert objects([{"a": 1}, "x", {"b": 2}], "nodes", problems, noun="nodes") == [
        (0, "nodes[0]", {"a": 1}),
        (2, "nodes[2]", {"b": 2}),
    ]
    assert problems == {"nodes[1]": "must be an object"}
    assert objects(None, "nodes", problems, noun="nodes") == []  # absent: none
    assert objects([], "nodes", problems, noun="nodes", required=True, may_be_empty=True) == []
    objects(None, "nodes", problems, noun="nodes", required=True, may_be_empty=True)
    assert problems["nodes"] == "this field is required: a list of nodes"


def test_an_object_field_is_checked_to_be_an_object() -> None:
    config = Field(name="config", kind=Kind.OBJECT, required=True, item=HOST)
    problems: dict[str, str] = {}
    assert read_field(config, {"port": 1}, problems) == {"port": 1}
    read_field(config, [1], problems, name="steps[0].config")
    read_field(config, None, problems)
    assert problems == {"steps[0].config": "must be an object", "config": "this field is required (an object)"}
    assert one_object("x", "o", problems) is None and problems["o"] == "must be an object"


def test_an_item_contract_describes_the_field_and_is_a_component() -> None:
    assert field_schema(HOSTS) == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Host"},
        "minItems": 1,
        "maxItems": 2,
        "title": "Hosts",
    }
    request = Contract("InstallRequest", "", (HOSTS,))
    schemas = request.component_schemas()
    assert list(schemas) == ["Host"]
    assert schemas["Host"]["properties"]["transport"]["enum"] == ["local", "ssh"]
    assert schemas["Host"]["properties"]["port"]["maximum"] == 65535
