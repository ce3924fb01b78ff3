"""The CESQL LIKE matcher (catalog/like.py): the TCK's cases, escapes, edge cases, agreement
with a plain dynamic-programming reference, and time that grows with the value, not
exponentially or polynomially with the number of ``%``."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventhub.catalog.like import compile_like, like

# (value, pattern, matches). Patterns are the pattern's characters: "\\%" is backslash, %.
CASES = [
    # like_expression.yaml and subscriptions_api_recreations.yaml of the TCK
    ("abc", "abc", True),
    ("ab\\c", "ab\\c", True),
    ("abc", "a%b%c", True),
    ("azbc", "a%b%c", True),
    ("azzzbzzzc", "a%b%c", True),
    ("a%b%c", "a%b%c", True),
    ("ac", "abc", False),
    ("", "abc", False),
    (".ab.cde.", ".%.%.", True),
    ("ab.cde", ".%.%.", False),
    ("abc", "a_b_c", False),
    ("a_b_c", "a_b_c", True),
    ("abzc", "a_b_c", False),
    ("azbc", "a_b_c", False),
    ("azbzc", "a_b_c", True),
    (".a.b.", "._._.", True),
    ("abcd.", "._._.", False),
    ("a_b_c", "a\\_b\\_c", True),
    ("azbzc", "a\\_b\\_c", False),
    ("abc", "a\\_b\\_c", False),
    ("abc", "a\\%b\\%c", False),
    ("a%b%c", "a\\%b\\%c", True),
    ("azbzc", "a\\%b\\%c", False),
    ("abc123123%456_dzf", "abc%123\\%456\\_d_f", True),
    ("234", "23_", True),
    ("2344", "23%", True),
    ("2344", "23_", False),
    ("true", "tr%", True),
    ("true", "%ue", True),
    ("false", "tr%", False),
    ("https://example.com", "https://%", True),
    ("http://example.com", "https://%", False),
    ("com.github.error", "%.error", True),
    ("com.github.success", "%.error", False),
    # empty values and patterns
    ("", "", True),
    ("a", "", False),
    ("", "%", True),
    ("", "%%", True),
    ("", "_", False),
    ("", "%_", False),
    ("anything", "%", True),
    # %% is one %; wildcards next to each other
    ("abc", "a%%c", True),
    ("ac", "a%%c", True),
    ("abc", "%_%", True),
    ("ab", "___", False),
    ("abc", "___", True),
    ("abcd", "___", False),
    ("abcd", "_%_", True),
    ("a", "_%_", False),
    # the prefix and suffix of a pattern may not overlap
    ("aba", "ab%ba", False),
    ("abba", "ab%ba", True),
    ("aa", "a%a", True),
    ("a", "a%a", False),
    # a middle segment is placed leftmost, and that is always right
    ("xaaby", "x%ab%y", True),
    ("xabaaby", "x%a_y", True),
    ("xabbz", "%ab_z", True),
    ("aab", "%ab", True),
    ("abab", "%a_%b", True),
    ("abac", "%b_c", True),
    # backslashes: only before % or _ do they escape; elsewhere they are literal
    ("a\\b", "a\\b", True),
    ("a\\", "a\\", True),
    ("a\\%", "a\\\\%", True),  # \\% is a literal backslash, then a literal %
    ("a\\x", "a\\\\%", False),
    ("%", "\\%", True),
    ("x", "\\%", False),
    ("_", "\\_", True),
    ("x", "\\_", False),
    ("50%", "%\\%", True),
    ("50", "%\\%", False),
    # case sensitive
    ("ABC", "abc", False),
    ("ABC", "a%", False),
    # unicode code points, newlines
    ("żółw", "ż_łw", True),
    ("żółw", "%łw", True),
    ("日本語", "日_語", True),
    ("日本語", "__", False),
    ("😀x", "_x", True),
    ("a\nb", "a_b", True),
    ("a\nb\nc", "a%c", True),
    # regex metacharacters are plain characters
    ("a.c", "a.c", True),
    ("abc", "a.c", False),
    ("(a)*[b]+?", "(a)*[b]+?", True),
    ("a$^|b", "a%|_", True),
]


@pytest.mark.parametrize(("value", "pattern", "expected"), CASES)
def test_like_cases(value: str, pattern: str, expected: bool) -> None:
    assert like(value, pattern) is expected
    assert compile_like(pattern)(value) is expected


def _reference(value: str, pattern: str) -> bool:
    """The textbook dynamic program over (pattern token, value position)."""
    tokens: list[str | None] = []  # None: %, "": _, else one literal character
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            tokens.append(pattern[i + 1])
            i += 2
            continue
        tokens.append(None if pattern[i] == "%" else "" if pattern[i] == "_" else pattern[i])
        i += 1
    reachable = [True] + [False] * len(value)
    for token in tokens:
        if token is None:
            for j in range(1, len(value) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            reachable = [False] + [
                reachable[j] and (token == "" or token == value[j]) for j in range(len(value))
            ]
    return reachable[-1]


@pytest.mark.parametrize(("value", "pattern", "expected"), CASES)
def test_the_reference_agrees_with_the_cases(value: str, pattern: str, expected: bool) -> None:
    assert _reference(value, pattern) is expected


alphabet = st.sampled_from(["a", "b", "%", "_", "\\", "\n", "ż"])


@settings(max_examples=3000, deadline=None)
@given(value=st.text(alphabet, max_size=10), pattern=st.text(alphabet, max_size=8))
def test_like_agrees_with_the_reference(value: str, pattern: str) -> None:
    assert like(value, pattern) is _reference(value, pattern)


@pytest.mark.parametrize(
    ("pattern", "value"),
    [
        ("%a" * 8 + "b", "a" * 40),
        ("%a" * 30 + "b", "a" * 20_000),
        ("%a_" * 30 + "b", "a" * 20_000),
        ("%" + "a" * 50 + "b%", "a" * 20_000),
        ("%" + "a_" * 25 + "b%", "a" * 20_000),
        ("_" * 50 + "%b", "a" * 20_000),
    ],
    ids=["tck-report", "many-percent", "percent-underscore", "long-segment", "sparse", "head"],
)
def test_pathological_patterns_take_milliseconds(pattern: str, value: str) -> None:
    """The regex translation took seconds on the first case and would never finish the
    others; here the worst case is len(value) * len(pattern) character steps."""
    matches = compile_like(pattern)
    started = time.monotonic()
    assert matches(value) is False
    assert time.monotonic() - started < 0.5
