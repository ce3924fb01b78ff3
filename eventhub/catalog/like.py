"""The CESQL ``LIKE`` operator (cesql-spec 3.6) without regular expressions.

A pattern is literal text with two wildcards: ``%`` (any run of characters, also none) and
``_`` (exactly one character). A backslash before ``%`` or ``_`` makes that character
literal; any other backslash is itself literal (``'ab\\c' LIKE 'ab\\c'`` is TRUE in the TCK).
Matching is case sensitive, character by character (Unicode code points), and ``_`` matches
any character, a newline included.

Why not a regex: ``%`` as ``.*`` backtracks polynomially (``'%a%a%a%a%a%a%a%ab'`` against
forty ``a`` took seconds), and a trigger's pattern runs on the event loop for every appended
event. Here the pattern is split at its ``%`` into fixed-length segments: the first must
start the value, the last must end it, and each middle one is placed at its leftmost
occurrence after the previous one. Leftmost is always safe (a later placement leaves less
room for what follows), so there is no backtracking: the cost is at most
``len(value) * len(pattern)`` character comparisons, and one ``str.find`` per segment in the
usual case of segments without ``_``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Matcher = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class _Segment:
    """Text between two ``%``: ``length`` characters, where ``pieces`` are the literal runs
    as ``(offset, text)`` and every other position is a ``_``."""

    length: int
    pieces: tuple[tuple[int, str], ...]

    def at(self, value: str, start: int) -> bool:
        """Whether the segment matches ``value`` at ``start`` (the caller checks room)."""
        return all(value.startswith(text, start + offset) for offset, text in self.pieces)

    def find(self, value: str, start: int, end: int) -> int:
        """The leftmost position in ``[start, end - length]`` where the segment matches, or
        -1. The first literal piece is searched with ``str.find`` to skip the hopeless ones."""
        last = end - self.length
        if not self.pieces:
            return start if start <= last else -1
        offset, text = self.pieces[0]
        position = start
        while position <= last:
            found = value.find(text, position + offset, last + offset + len(text))
            if found < 0:
                return -1
            position = found - offset
            if self.at(value, position):
                return position
            position += 1
        return -1


def _segments(pattern: str) -> list[_Segment]:
    """``pattern`` split at its unescaped ``%``: always one more segment than ``%``."""
    segments: list[_Segment] = []
    pieces: list[tuple[int, str]] = []
    run: list[str] = []
    length = 0

    def close_run() -> None:
        if run:
            pieces.append((length - len(run), "".join(run)))
            run.clear()

    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            run.append(pattern[i + 1])
            length += 1
            i += 2
            continue
        if ch == "%":
            close_run()
            segments.append(_Segment(length, tuple(pieces)))
            pieces, length = [], 0
        elif ch == "_":
            close_run()
            length += 1
        else:
            run.append(ch)
            length += 1
        i += 1
    close_run()
    segments.append(_Segment(length, tuple(pieces)))
    return segments


def _literal(segment: _Segment) -> str | None:
    """The segment's text if it has no ``_``."""
    if segment.length == 0:
        return ""
    if len(segment.pieces) == 1 and len(segment.pieces[0][1]) == segment.length:
        return segment.pieces[0][1]
    return None


def compile_like(pattern: str) -> Matcher:
    """A predicate telling whether a value matches the LIKE ``pattern`` (see the module)."""
    segments = _segments(pattern)
    texts = [_literal(s) for s in segments]
    if len(segments) == 1:
        only, text = segments[0], texts[0]
        if text is not None:
            return text.__eq__
        return lambda value: len(value) == only.length and only.at(value, 0)
    least = sum(s.length for s in segments)
    if all(text is not None for text in texts):
        return _literal_segments([t or "" for t in texts], least)
    first, *middle, last = segments

    def matches(value: str) -> bool:
        if len(value) < least:
            return False
        end = len(value) - last.length
        if not (first.at(value, 0) and last.at(value, end)):
            return False
        position = first.length
        for segment in middle:
            found = segment.find(value, position, end)
            if found < 0:
                return False
            position = found + segment.length
        return True

    return matches


def _literal_segments(texts: list[str], least: int) -> Matcher:
    """The usual case, no ``_``: string methods only (the common shapes as one call)."""
    head, *middle, tail = texts
    if not middle:
        if not tail:
            return lambda value: value.startswith(head)
        if not head:
            return lambda value: value.endswith(tail)
        return lambda value: len(value) >= least and value.startswith(head) and value.endswith(tail)
    if len(middle) == 1 and not head and not tail:
        inner = middle[0]
        return lambda value: inner in value

    def matches(value: str) -> bool:
        if len(value) < least or not (value.startswith(head) and value.endswith(tail)):
            return False
        position, end = len(head), len(value) - len(tail)
        for text in middle:
            found = value.find(text, position, end)
            if found < 0:
                return False
            position = found + len(text)
        return True

    return matches


def like(value: str, pattern: str) -> bool:
    """Whether ``value`` matches the LIKE ``pattern``; compile once with ``compile_like``
    when the pattern is used more than once."""
    return compile_like(pattern)(value)
