"""The one integer parser (``domain.params``) and its list form: tables of what they accept and of what they
refuse with which problem, plus the property that it agrees with ``int()`` on every text of ASCII digits."""

from __future__ import annotations

from enum import IntEnum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodeops.domain.params import (
    MAX_BIGINT,
    MAX_INT32,
    accepted_ints,
    int_list,
    int_param,
    int_value,
    is_ascii_digits,
    list_items,
    parse_int,
)
from nodeops.errors import ErrorCode, InvalidInput


class Level(IntEnum):
    THREE = 3


@pytest.mark.parametrize(
    "value, expected",
    [
        pytest.param(7, 7, id="int"),
        pytest.param("7", 7, id="digits"),
        pytest.param("0007", 7, id="leading_zeros"),
        pytest.param("+1", 1, id="plus_sign"),
        pytest.param(" 1", 1, id="leading_space"),
        pytest.param("1\n", 1, id="trailing_newline"),
        pytest.param(str(MAX_BIGINT), MAX_BIGINT, id="bigint_max_text"),
        pytest.param(MAX_BIGINT, MAX_BIGINT, id="bigint_max_int"),
        pytest.param("0" * 50 + "12", 12, id="many_leading_zeros"),
        pytest.param(Level.THREE, 3, id="int_enum"),
    ],
)
def test_accepts_an_int_or_ascii_digits_in_range(value, expected):
    number = parse_int(value, "n")
    assert number == expected and type(number) is int


@pytest.mark.parametrize(
    "value, problem",
    [
        pytest.param("²", "'²' is not a positive integer", id="superscript_two"),
        pytest.param("٣", "'٣' is not a positive integer", id="arabic_indic_three"),
        pytest.param("\uff11", "'\uff11' is not a positive integer", id="fullwidth_one"),
        pytest.param("1²", "'1²' is not a positive integer", id="digit_then_superscript"),
        pytest.param("-1", "'-1' is not a positive integer", id="negative_text"),
        pytest.param(-1, "-1 is not a positive integer", id="negative_int"),
        pytest.param(0, "0 is not a positive integer", id="zero"),
        pytest.param("1e3", "'1e3' is not a positive integer", id="exponent"),
        pytest.param("1.0", "'1.0' is not a positive integer", id="decimal_text"),
        pytest.param("0x10", "'0x10' is not a positive integer", id="hex"),
        pytest.param("1_000", "'1_000' is not a positive integer", id="underscore"),
        pytest.param("", "'' is not a positive integer", id="empty"),
        pytest.param(" ", "' ' is not a positive integer", id="blank"),
        pytest.param("+", "'+' is not a positive integer", id="sign_alone"),
        pytest.param("--1", "'--1' is not a positive integer", id="two_signs"),
        pytest.param("\u00a01", "'\\xa01' is not a positive integer", id="non_ascii_space"),
        pytest.param(True, "must be a positive integer", id="bool"),
        pytest.param(1.0, "must be a positive integer", id="float"),
        pytest.param(None, "must be a positive integer", id="none"),
        pytest.param([1], "must be a positive integer", id="list"),
        pytest.param({"n": 1}, "must be a positive integer", id="object"),
        pytest.param(MAX_BIGINT + 1, f"{MAX_BIGINT + 1} is too large: at most {MAX_BIGINT}", id="bigint_max_plus_1"),
        pytest.param(
            str(MAX_BIGINT + 1), f"'{MAX_BIGINT + 1}' is too large: at most {MAX_BIGINT}", id="bigint_text_plus_1"
        ),
        pytest.param("9" * 20, f"'{'9' * 20}' is too large: at most {MAX_BIGINT}", id="twenty_nines"),
        pytest.param("9" * 100_000, f"{'9' * 37 + '...'!r} is too large: at most {MAX_BIGINT}", id="huge_text"),
        pytest.param(10**5000, f"(a huge integer) is too large: at most {MAX_BIGINT}", id="huge_int"),
        pytest.param("-" + "9" * 5000, f"{'-' + '9' * 36 + '...'!r} is not a positive integer", id="huge_negative"),
    ],
)
def test_refuses_anything_else_naming_the_field_and_what_is_accepted(value, problem):
    with pytest.raises(InvalidInput) as caught:
        parse_int(value, "job_id")
    assert caught.value.code is ErrorCode.VALIDATION
    assert caught.value.problems == {"job_id": problem}


@pytest.mark.parametrize(
    "value, minimum, maximum, problem",
    [
        pytest.param("0", 1, 1000, "'0' is not a positive integer of at most 1000", id="page_zero"),
        pytest.param(1001, 1, 1000, "1001 is too large: at most 1000", id="page_past_max"),
        pytest.param(-2, -1, 1000, "-2 is not an integer from -1 to 1000", id="pagesize_below_minus_one"),
        pytest.param("x", 0, MAX_INT32, f"'x' is not a non-negative integer of at most {MAX_INT32}", id="int32"),
        pytest.param(2**31, 0, MAX_INT32, f"{2**31} is too large: at most {MAX_INT32}", id="int32_overflow"),
    ],
)
def test_a_narrower_range_is_named_in_the_problem(value, minimum, maximum, problem):
    with pytest.raises(InvalidInput) as caught:
        parse_int(value, "f", minimum=minimum, maximum=maximum)
    assert caught.value.problems == {"f": problem}


@pytest.mark.parametrize(
    "value, minimum, expected", [("-1", -1, -1), (-1, -1, -1), ("0", 0, 0), (" -0 ", 0, 0), ("+0", 0, 0)]
)
def test_a_range_from_zero_or_below_accepts_its_signs(value, minimum, expected):
    assert parse_int(value, "f", minimum=minimum, maximum=1000) == expected


def test_int_value_gathers_the_problem_and_returns_none():
    problems: dict[str, str] = {}
    assert int_value("12", "a", problems) == 12
    assert int_value("²", "b", problems) is None
    assert int_value(True, "c", problems, minimum=0) is None
    assert problems == {"b": "'²' is not a positive integer", "c": "must be a non-negative integer"}


def test_accepted_ints_names_the_range():
    assert accepted_ints(1) == "a positive integer"
    assert accepted_ints(0, 10) == "a non-negative integer of at most 10"
    assert accepted_ints(-1, 10) == "an integer from -1 to 10"


@pytest.mark.parametrize(
    "text, expected", [("0", True), ("0123", True), ("", False), ("²", False), ("٣", False), ("1 ", False)]
)
def test_is_ascii_digits(text, expected):
    assert is_ascii_digits(text) is expected


@given(number=st.integers(min_value=0, max_value=MAX_BIGINT), zeros=st.integers(min_value=0, max_value=25))
def test_agrees_with_int_on_ascii_digits(number, zeros):
    text = "0" * zeros + str(number)
    if number == 0:
        assert parse_int(text, "n", minimum=0) == 0
    else:
        assert parse_int(text, "n") == int(text) == number


@given(text=st.text(max_size=30))
def test_any_text_is_an_int_in_range_or_a_validation_error(text):
    try:
        number = parse_int(text, "n", minimum=-5, maximum=MAX_BIGINT)
    except InvalidInput as exc:
        assert list(exc.problems) == ["n"]
    else:
        stripped = text.strip(" \t\r\n")
        assert stripped.lstrip("+-").isascii() and -5 <= number <= MAX_BIGINT and int(stripped) == number


@pytest.mark.parametrize(
    "value, options, expected, problems",
    [
        ("12", {}, 12, {}),
        (None, {"default": 5}, 5, {}),
        ("", {}, None, {}),
        (None, {"required": True}, None, {"n": "this field is required (a positive integer)"}),
        (
            "",
            {"required": True, "minimum": 0, "maximum": 9},
            None,
            {"n": "this field is required (a non-negative integer of at most 9)"},
        ),
        ("x", {"default": 5}, None, {"n": "'x' is not a positive integer"}),
        ("99", {"maximum": 10}, None, {"n": "'99' is too large: at most 10"}),
    ],
)
def test_int_param_reads_an_integer_that_may_be_left_out(value, options, expected, problems):
    found: dict[str, str] = {}
    assert int_param(value, "n", found, **options) == expected
    assert found == problems


@pytest.mark.parametrize(
    "value, options, expected, problems",
    [
        (None, {}, [], {}),
        ([], {"required": True}, [], {"ids": "this field is required: a non-empty list of positive integers"}),
        ("7", {}, [7], {}),
        ("x", {}, [], {"ids": "'x' is not a positive integer"}),
        ([1, "2", 1], {}, [1, 2, 1], {}),
        ([1, "2", 1], {"unique": True}, [1, 2], {}),
        ([1, None, "", 3], {"skip_blank": True}, [1, 3], {}),
        ([1, "x", 0], {}, [1], {"ids[1]": "'x' is not a positive integer", "ids[2]": "0 is not a positive integer"}),
        ([1, 2, 3], {"max_items": 2}, [], {"ids": "must be a list of at most 2 positive integers"}),
        ({"a": 1}, {"noun": "bk_host_ids"}, [], {"ids": "must be a list of bk_host_ids"}),
    ],
)
def test_int_list_reads_each_integer_and_names_each_bad_one(value, options, expected, problems):
    found: dict[str, str] = {}
    assert int_list(value, "ids", found, **options) == expected
    assert found == problems


@pytest.mark.parametrize(
    "value, options, expected, problems",
    [
        ("", {"noun": "ids"}, [], {}),
        ("", {"noun": "ids", "blank_is_absent": False}, [("l", "")], {}),
        ("a", {"noun": "ids", "single": False}, [], {"l": "must be a list of ids"}),
        (["a", "b"], {"noun": "ids"}, [("l[0]", "a"), ("l[1]", "b")], {}),
    ],
)
def test_list_items_names_each_item(value, options, expected, problems):
    found: dict[str, str] = {}
    assert list_items(value, "l", found, **options) == expected
    assert found == problems
