"""Matching log lines for search: the query, each line's level, and the matched spans. Pure, no I/O.

A line is ``[YYYY-MM-DD HH:MM:SS LEVEL] text`` (spec §7.1); lines of a multi-line message, and host output
without that prefix, have no level. A query is a plain substring or, with ``regex``, an RE2 regular expression
(https://github.com/google/re2/wiki/Syntax) of at most ``MAX_PATTERN`` characters. RE2 matches in time linear in
the line, whatever the pattern: it has no backtracking, so it has no backreferences and no lookaround, and
refuses them when the pattern is compiled. This module is the only one that imports ``re2``: every user's
pattern (the API's search, the CLI's ``--grep``) is compiled and matched here. Its module has no type hints;
the little of it used here is typed at this boundary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import islice
from typing import Any

import re2

from nodeops.errors import InvalidInput

MAX_PATTERN = 256
PATTERN_MAX_MEM_BYTES = 1 << 20  # RE2's memory for one compiled pattern: bounds compiling to a few ms
MAX_MATCHES = 100  # matches looked at per line for its spans
MAX_LINE_CHARS = 16_384  # of a line that is matched (lines are written cut at 8,192 characters)
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LEVEL = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR)\]")
# what RE2's compile errors start with, and what a person can do about each
_REFUSED = (
    ("invalid perl operator: (?=", "lookahead (?=…) is not supported (RE2 has no lookaround)"),
    ("invalid perl operator: (?!", "negative lookahead (?!…) is not supported (RE2 has no lookaround)"),
    ("invalid perl operator: (?<=", "lookbehind (?<=…) is not supported (RE2 has no lookaround)"),
    ("invalid perl operator: (?<!", "negative lookbehind (?<!…) is not supported (RE2 has no lookaround)"),
    ("invalid perl operator: (?>", "atomic groups (?>…) are not supported by RE2"),
    ("invalid escape sequence: \\Z", "\\Z is not supported by RE2: use \\z (end of line)"),
    (
        "pattern too large",
        f"compiles to more than RE2's {PATTERN_MAX_MEM_BYTES // 1024} KiB limit; use smaller "
        "counted repetitions ({n}) or character classes",
    ),
    ("bad repetition operator", "repeats a repetition (a** or the possessive a++), which RE2 refuses"),
    ("invalid repetition size", "has a counted repetition over 1000 (RE2's limit for {n} and {n,m}, nesting included)"),
)
# \1, \k<name> and (?P=name): RE2 says only "invalid escape sequence: \1" or "invalid perl operator: (?P"
_BACKREFERENCE = re.compile(r"invalid escape sequence: \\[1-9k]|invalid perl operator: \(\?P$")


def line_level(line: str) -> str | None:
    """The level of a line from its ``[time LEVEL]`` prefix, or None."""
    match = _LEVEL.match(line)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class Matcher:
    """A compiled query. Each call takes time linear in the line (at most ``MAX_LINE_CHARS`` of it is read),
    and releases the GIL while RE2 scans, so a search thread never holds up the event loop."""

    pattern: Any  # re2's compiled pattern

    def finds(self, line: str) -> bool:
        """Whether the query matches anywhere in ``line`` (as grep: an empty match counts)."""
        return self.pattern.search(_matchable(line)) is not None

    def spans(self, line: str) -> list[tuple[int, int]]:
        """The ``[start, end)`` character ranges of the non-empty matches among the first ``MAX_MATCHES``."""
        found: list[tuple[int, int]] = []
        for match in islice(self.pattern.finditer(_matchable(line)), MAX_MATCHES):
            start, end = match.span()
            if end > start:
                found.append((int(start), int(end)))
        return found


def _matchable(line: str) -> str:
    # RE2 reads UTF-8: a lone surrogate (never written by the engine) becomes "?", one character for one
    line = line[:MAX_LINE_CHARS]
    try:
        line.encode()
    except UnicodeEncodeError:
        return line.encode(errors="replace").decode()
    return line


def compile_query(q: object, *, regex: bool, case: bool) -> Matcher:
    """The matcher of ``q`` (a substring, or with ``regex`` an RE2 pattern; ``case``: case-sensitive); raises
    InvalidInput naming ``q`` when it is empty, too long or a pattern RE2 does not accept, saying why."""
    if not isinstance(q, str) or not q:
        raise InvalidInput.field("q", "this field is required: the text (or, with regex=true, the pattern) to find")
    if len(q) > MAX_PATTERN:
        raise InvalidInput.field("q", f"must be at most {MAX_PATTERN} characters (it has {len(q)})")
    try:
        q.encode()
    except UnicodeEncodeError:
        raise InvalidInput.field("q", "is not valid Unicode text (it holds a lone surrogate)") from None
    if regex and _has_byte_escape(q):
        raise InvalidInput.field(
            "q", "is not a regular expression this search accepts: RE2's \\C (one byte) can split a character; use ."
        )
    options = re2.Options()
    options.max_mem = PATTERN_MAX_MEM_BYTES
    options.log_errors = False  # a client's bad pattern is its answer, not a line in the service's log
    options.never_capture = True  # only the whole match is used: no submatch work
    options.case_sensitive = case
    options.literal = not regex
    try:
        return Matcher(re2.compile(q, options))
    except re2.error as exc:
        raise InvalidInput.field("q", _refusal(exc)) from None


def _has_byte_escape(q: str) -> bool:
    """Whether ``q`` has RE2's ``\\C`` (any one byte): its matches would end inside a character."""
    index = 0
    while index < len(q):
        if q[index] == "\\":
            if q[index + 1 : index + 2] == "C":
                return True
            index += 2
        else:
            index += 1
    return False


def _refusal(exc: Exception) -> str:
    """What to tell the person whose pattern RE2 refused."""
    detail = exc.args[0] if exc.args else ""
    text = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
    if _BACKREFERENCE.match(text):
        return (
            "is not a regular expression RE2 accepts: backreferences (\\1, \\k<name>, (?P=name)) are not "
            "supported (RE2 matches in linear time, which they would make impossible)"
        )
    for start, advice in _REFUSED:
        if text.startswith(start):
            return f"is not a regular expression RE2 accepts: {advice}"
    return f"is not a valid regular expression (RE2 syntax): {text}"
