"""Integer parameters: the one parser of an integer a caller sent, as a JSON number or as text (a query string,
a path segment, a CSV cell, a header), and of a list of them (``int_list``; ``list_items`` splits any list
parameter, instance_ids too, the same way).

Only a JSON integer (never ``true``/``false`` or ``1.0``) or optional ASCII whitespace, an optional sign and ASCII
digits are integers: ``str.isdigit`` alone also accepts ``"²"`` and ``"٣"``, which ``int()`` refuses or reads as
3. Every integer is checked against a range, by default ``1..MAX_BIGINT``: anything that reaches the store fits
its 64-bit columns (PostgreSQL BIGINT, SQLite INTEGER), so an overflow is the caller's error, never the store's.
Pure: imports only ``nodeops.errors``.
"""

from __future__ import annotations

from nodeops.errors import InvalidInput

MAX_BIGINT = 2**63 - 1  # PostgreSQL BIGINT and SQLite INTEGER: ids, counts, offsets
MAX_INT32 = 2**31 - 1  # PostgreSQL INTEGER: bk_biz_id, bk_cloud_id, ap_id, port
_MAX_DIGITS = len(str(MAX_BIGINT))  # 19: more significant digits than this never fit, whatever the range
_FAST_DIGITS = _MAX_DIGITS - 1  # 18 digits always fit in a BIGINT: no need to count them again
_SPACE = " \t\r\n"


def is_ascii_digits(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits ``0``-``9`` and nothing else (``"²"`` and ``"٣"`` are not)."""
    return text.isascii() and text.isdigit()


def parse_int(value: object, field: str, *, minimum: int = 1, maximum: int = MAX_BIGINT) -> int:
    """The integer ``value`` stands for, in ``minimum..maximum``: a JSON integer, or text of an optional sign and
    ASCII digits (surrounding ASCII whitespace ignored). Raises InvalidInput naming ``field`` and what is
    accepted. Call it for every integer a caller sends; ``int_value`` gathers the problem instead."""
    # the common cases first, with nothing but type checks and one comparison: a JSON integer, or plain digits
    if type(value) is int:
        if minimum <= value <= maximum:
            return value
    elif type(value) is str and len(value) <= _FAST_DIGITS and value.isascii() and value.isdigit():
        number = int(value)
        if minimum <= number <= maximum:
            return number
    return _parse_rest(value, field, minimum, maximum)


def int_value(
    value: object, name: str, problems: dict[str, str], *, minimum: int = 1, maximum: int = MAX_BIGINT
) -> int | None:
    """``parse_int`` for a validation that names every bad field at once: the problem is put in ``problems``
    under ``name`` and None returned."""
    try:
        return parse_int(value, name, minimum=minimum, maximum=maximum)
    except InvalidInput as exc:
        problems.update(exc.problems)
        return None


def int_param(
    value: object,
    name: str,
    problems: dict[str, str],
    *,
    required: bool = False,
    default: int | None = None,
    minimum: int = 1,
    maximum: int = MAX_BIGINT,
) -> int | None:
    """An integer parameter a caller may leave out: absent (None or ``""``), ``default``, or with ``required`` the
    problem "this field is required (a positive integer)"; else ``int_value``. None when there is a problem."""
    # parse_int's fast path first: what nearly every query string holds (the log API)
    if type(value) is str and len(value) <= _FAST_DIGITS and value.isascii() and value.isdigit():
        number = int(value)
        if minimum <= number <= maximum:
            return number
    if value is None or value == "":
        if required:
            problems[name] = f"this field is required ({accepted_ints(minimum, maximum)})"
        return default
    return int_value(value, name, problems, minimum=minimum, maximum=maximum)


def list_items(
    value: object,
    name: str,
    problems: dict[str, str],
    *,
    noun: str,
    required: bool = False,
    max_items: int | None = None,
    single: bool = True,
    blank_is_absent: bool = True,
    skip_blank: bool = False,
) -> list[tuple[str, object]]:
    """The items of a list parameter, each with the name a problem with it is given: ``name[i]``, or ``name``
    for a single value sent instead of a list (with ``single``, it stands for a list of itself). Absent (None,
    ``[]``, and ``""`` when ``blank_is_absent``): no items, or with ``required`` the problem "this field is
    required: a non-empty list of {noun}". Anything else but a list, or more than ``max_items``: the problem
    "must be a list of [at most max_items] {noun}". ``skip_blank`` drops items that are None or ``""``."""
    if value is None or value == [] or (blank_is_absent and value == ""):
        if required:
            problems[name] = f"this field is required: a non-empty list of {noun}"
        return []
    if single and isinstance(value, int | str) and not isinstance(value, bool):
        return [(name, value)]
    if not isinstance(value, list) or (max_items is not None and len(value) > max_items):
        problems[name] = f"must be a list of {_at_most(max_items)}{noun}"
        return []
    return [(f"{name}[{index}]", item) for index, item in enumerate(value) if not (skip_blank and item in (None, ""))]


def _at_most(count: int | None) -> str:
    return "" if count is None else f"at most {count} "


def int_list(
    value: object,
    name: str,
    problems: dict[str, str],
    *,
    noun: str = "positive integers",
    required: bool = False,
    max_items: int | None = None,
    skip_blank: bool = False,
    unique: bool = False,
    minimum: int = 1,
    maximum: int = MAX_BIGINT,
) -> list[int]:
    """The integers of a list parameter (``list_items``), each read by ``int_value``; with ``unique`` the first
    of each, in order. The bad ones are put in ``problems`` and left out."""
    items = list_items(value, name, problems, noun=noun, required=required, max_items=max_items, skip_blank=skip_blank)
    numbers = [int_value(item, where, problems, minimum=minimum, maximum=maximum) for where, item in items]
    found = [number for number in numbers if number is not None]
    return list(dict.fromkeys(found)) if unique else found


def accepted_ints(minimum: int, maximum: int = MAX_BIGINT) -> str:
    """What ``parse_int`` accepts, in words: "a positive integer", "an integer from -1 to 1000"."""
    if minimum not in (0, 1):
        return f"an integer from {minimum} to {maximum}"
    kind = "a positive integer" if minimum == 1 else "a non-negative integer"
    return kind if maximum == MAX_BIGINT else f"{kind} of at most {maximum}"


def _parse_rest(value: object, field: str, minimum: int, maximum: int) -> int:
    """``parse_int`` past its fast path: signs, whitespace, leading zeros and long digit strings, or the error."""
    accepted = accepted_ints(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput.field(field, f"must be {accepted}")
    if isinstance(value, int):
        number = int(value)  # an int subclass (an IntEnum) counts as its value
        # str() of an int of more than 4300 digits raises ValueError: never show a huge one
        shown = str(number) if number.bit_length() <= 256 else "(a huge integer)"
    else:
        shown = _shown(value)
        text = value.strip(_SPACE)
        digits = text[1:] if text[:1] in ("+", "-") else text
        if not is_ascii_digits(digits):
            raise InvalidInput.field(field, f"{shown} is not {accepted}")
        # never int() a long string: it costs time quadratic in its length, and fails past 4300 digits
        if len(digits.lstrip("0")) <= _MAX_DIGITS:
            number = int(text)
        else:
            number = -(MAX_BIGINT + 1) if text[0] == "-" else MAX_BIGINT + 1
    if number > maximum:
        raise InvalidInput.field(field, f"{shown} is too large: at most {maximum}")
    if number < minimum:
        raise InvalidInput.field(field, f"{shown} is not {accepted}")
    return number


def _shown(text: str) -> str:
    """Quote a caller's text for an error message, cut so a huge input cannot flood the answer."""
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")
