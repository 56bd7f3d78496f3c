"""Matching log lines for search: the query, each line's level, and the matched spans. Pure, no I/O.

A line is ``[YYYY-MM-DD HH:MM:SS LEVEL] text`` (spec §7.1); lines of a multi-line message, and host output
without that prefix, have no level. Queries are a plain substring or a Python regular expression of at most
``MAX_PATTERN`` characters; patterns whose nested repetition could backtrack without end are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nodeops.errors import InvalidInput

MAX_PATTERN = 256
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LEVEL = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR)\]")
# a repeated group holding a repetition, e.g. (a+)+ or (x*y)*: the shapes of catastrophic backtracking
_NESTED_REPEAT = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{]")


def line_level(line: str) -> str | None:
    """The level of a line from its ``[time LEVEL]`` prefix, or None."""
    match = _LEVEL.match(line)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class Matcher:
    """A compiled query: ``spans(line)`` are the matched character ranges (empty: no match)."""

    pattern: re.Pattern[str]

    def spans(self, line: str) -> list[tuple[int, int]]:
        return [m.span() for m in self.pattern.finditer(line) if m.end() > m.start()]


def compile_query(q: object, *, regex: bool, case: bool) -> Matcher:
    """The matcher of ``q``; raises InvalidInput naming ``q`` when it is empty, too long or not a valid
    regular expression."""
    if not isinstance(q, str) or not q:
        raise InvalidInput.field("q", "this field is required: the text (or, with regex=true, the pattern) to find")
    if len(q) > MAX_PATTERN:
        raise InvalidInput.field("q", f"must be at most {MAX_PATTERN} characters (it has {len(q)})")
    flags = 0 if case else re.IGNORECASE
    if not regex:
        return Matcher(re.compile(re.escape(q), flags))
    if _NESTED_REPEAT.search(q):
        raise InvalidInput.field(
            "q", "a repeated group that itself repeats (such as (a+)+) can take forever to match; simplify the pattern"
        )
    try:
        return Matcher(re.compile(q, flags))
    except re.error as exc:
        raise InvalidInput.field("q", f"is not a valid regular expression: {exc}") from None
