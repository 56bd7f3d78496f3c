"""The search query: RE2 patterns and plain text, what is refused and why, spans in characters, the bounds."""

from __future__ import annotations

import time

import pytest

from nodeops.domain.log_search import MAX_LINE_CHARS, MAX_MATCHES, compile_query
from nodeops.errors import InvalidInput


@pytest.mark.parametrize(
    ("q", "regex", "case", "line", "finds", "spans"),
    [
        ("disk", False, False, "a DISK and a disk", True, [(2, 6), (13, 17)]),
        ("disk", False, True, "a DISK and a disk", True, [(13, 17)]),
        ("d.sk", False, False, "a disk", False, []),  # plain text: the dot is a dot
        ("d.sk", True, False, "a disk", True, [(2, 6)]),
        ("(?i)DISK", True, True, "a disk", True, [(2, 6)]),
        ("ÄRGER", False, False, "das ärger", True, [(4, 9)]),
        ("升级.*失败", True, True, "执行升级脚本 失败", True, [(2, 9)]),
        (r"\p{Han}+", True, True, "ab 日志 cd", True, [(3, 5)]),
        ("x*", True, True, "abxxcx", True, [(2, 4), (5, 6)]),  # as grep: an empty match finds the line
        ("^", True, True, "anything", True, []),
        ("(a|aa)*c", True, True, "a" * 34, False, []),
        ("(.|..)*QZ", True, True, "[2021-09-16 15:06:05 INFO] the agent took 1 s to stop", False, []),
        ("(a+)+$", True, True, "a" * 40 + "!", False, []),
        ("a", False, True, "\ud800a", True, [(1, 2)]),  # a lone surrogate is one character, as any
        (r"\\C", True, True, "日志 a\\C", True, [(4, 6)]),  # an escaped backslash, then C
    ],
)
def test_matcher_finds_lines_and_their_spans(q, regex, case, line, finds, spans):
    matcher = compile_query(q, regex=regex, case=case)
    assert matcher.finds(line) is finds
    assert matcher.spans(line) == spans


@pytest.mark.parametrize(
    ("q", "says"),
    [
        ("disk(?= ok)", "lookahead (?=…) is not supported"),
        ("disk(?! ok)", "negative lookahead"),
        ("(?<=disk) ok", "lookbehind (?<=…) is not supported"),
        ("(?<!disk) ok", "negative lookbehind"),
        (r"(d)\1", "backreferences"),
        (r"(?P<d>d)\k<d>", "backreferences"),
        ("(?P<d>d)(?P=d)", "backreferences"),
        ("(?>disk)", "atomic groups"),
        (r"ok\Z", r"use \z"),
        ("a++", "possessive"),
        ("a{1001}", "over 1000"),
        ("(a{100}){100}", "over 1000"),
        (r"\pL{1000}", "1024 KiB"),
        ("(", "missing )"),
        ("[z-a]", "invalid character class range"),
        (r"日\C", r"\C (one byte)"),
    ],
)
def test_patterns_re2_refuses_name_q_and_say_why(q, says):
    with pytest.raises(InvalidInput) as refused:
        compile_query(q, regex=True, case=False)
    assert list(refused.value.problems) == ["q"]
    assert says in refused.value.problems["q"] and "RE2" in refused.value.problems["q"]


@pytest.mark.parametrize(
    ("q", "says"),
    [(None, "required"), ("", "required"), ("x" * 257, "at most 256"), ("\ud800", "Unicode")],
)
def test_queries_that_are_not_text_to_find_are_refused(q, says):
    with pytest.raises(InvalidInput, match=says):
        compile_query(q, regex=False, case=False)


def test_a_line_gets_at_most_max_matches_looked_at_and_is_read_up_to_max_line_chars():
    matcher = compile_query("a", regex=False, case=True)
    assert len(matcher.spans("a" * 1000)) == MAX_MATCHES
    assert not matcher.finds("x" * MAX_LINE_CHARS + "a")
    assert matcher.finds("x" * (MAX_LINE_CHARS - 1) + "a")


def test_spans_of_a_pattern_that_would_scan_the_rest_of_the_line_for_each_match_stay_bounded():
    # each match of the second alternative is found only after the first has been tried to the end of the
    # line: all of a long line's matches would take time quadratic in its length
    matcher = compile_query("a[^Q]*QZ|a", regex=True, case=True)
    started = time.monotonic()
    assert len(matcher.spans("a" * MAX_LINE_CHARS)) == MAX_MATCHES
    assert time.monotonic() - started < 1.0
