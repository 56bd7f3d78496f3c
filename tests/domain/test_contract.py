"""domain.contract: each kind of field read with the messages of its parser, and described as JSON schema."""

from __future__ import annotations

from typing import Any

import pytest

from nodeops.domain.contract import JOB_ID, Contract, Field, Kind, field_schema
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
