"""CloudEvents SQL (CESQL 1.0, refs/cloudevents/cesql-spec.md): the ``sql`` filter dialect.

``compile_expression`` parses once (a ParseError is a 400 when the trigger is saved);
``Expression.evaluate`` returns the value and the list of errors the spec asks for, and
``Expression.matches`` is the filter: true only for the value TRUE with no error.

Values are Python ``bool``, ``int`` (32-bit) and ``str``. Every operator and function is
total: an error yields the zero value of the result type plus an entry in the error list.
A missing attribute yields the zero value of whatever consumes it, with MissingAttribute.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from eventhub import errors

Value = bool | int | str

PARSE = "parse"
MATH = "math"
CAST = "cast"
MISSING_ATTRIBUTE = "missingAttribute"
MISSING_FUNCTION = "missingFunction"
FUNCTION_EVALUATION = "functionEvaluation"

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_KEYWORDS = {"AND", "OR", "XOR", "NOT", "LIKE", "IN", "EXISTS", "TRUE", "FALSE"}


class ParseError(errors.InvalidRequest):
    pass


class _Missing:
    """What an absent attribute evaluates to, until an operator gives it a type."""


MISSING = _Missing()


# -- tokens ------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<int>\d+)
    | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op><>|!=|<=|>=|[=<>+\-*/%(),])
    )""",
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # int, str, word, op, end
    text: str


def _tokens(source: str) -> list[_Token]:
    out: list[_Token] = []
    position = 0
    while position < len(source):
        if source[position:].strip() == "":
            break
        m = _TOKEN.match(source, position)
        if m is None or m.end() == position:
            raise ParseError(f"CESQL: unexpected character at {position}: {source[position:]!r}")
        kind = m.lastgroup or ""
        text = m.group(kind)
        if kind == "str":
            quote = text[0]
            text = text[1:-1].replace("\\" + quote, quote)
        out.append(_Token(kind, text))
        position = m.end()
    out.append(_Token("end", ""))
    return out


# -- casts -------------------------------------------------------------------------------------


def _wrap(value: int) -> int:
    return (value - _INT_MIN) % 2**32 + _INT_MIN


def to_int(value: Value, errs: list[str]) -> int:
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int):
        return value
    text = value.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        number = int(text)
        if _INT_MIN <= number <= _INT_MAX:
            return number
    errs.append(CAST)
    return 0


def to_bool(value: Value, errs: list[str]) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    errs.append(CAST)
    return False


def to_str(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _cast_like(value: Value, target: Value, errs: list[str]) -> Value:
    """``value`` cast to the type of ``target`` (the right operand decides, spec 3.7)."""
    if isinstance(target, bool):
        return to_bool(value, errs)
    if isinstance(target, int):
        return to_int(value, errs)
    return to_str(value)


# -- the tree ----------------------------------------------------------------------------------

Event = Mapping[str, Any]
Node = Callable[[Event, list[str]], "Value | _Missing"]


def _attribute(name: str) -> Node:
    def node(event: Event, errs: list[str]) -> Value | _Missing:
        value = event.get(name)
        if value is None:
            errs.append(MISSING_ATTRIBUTE)
            return MISSING
        if isinstance(value, bool | int | str):
            return value
        return str(value)

    return node


def _literal(value: Value) -> Node:
    return lambda event, errs: value


def _operands(*nodes: Node) -> Callable[[Event, list[str]], list[Value] | None]:
    """Evaluate every operand; None when one of them failed (a missing attribute, a math or
    cast error below): the operator then yields its zero value, as the TCK expects."""

    def run(event: Event, errs: list[str]) -> list[Value] | None:
        before = len(errs)
        values = [n(event, errs) for n in nodes]
        if len(errs) > before:
            return None
        return values  # type: ignore[return-value]

    return run


def _one(node: Node, event: Event, errs: list[str]) -> Value | None:
    before = len(errs)
    value = node(event, errs)
    return None if len(errs) > before else value  # type: ignore[return-value]


def _arith(op: str, left: Node, right: Node) -> Node:
    both = _operands(left, right)

    def node(event: Event, errs: list[str]) -> Value:
        values = both(event, errs)
        if values is None:
            return 0
        x, y = to_int(values[0], errs), to_int(values[1], errs)
        if op in "/%" and y == 0:
            errs.append(MATH)
            return 0
        if op == "+":
            return _wrap(x + y)
        if op == "-":
            return _wrap(x - y)
        if op == "*":
            return _wrap(x * y)
        quotient = abs(x) // abs(y) * (1 if (x >= 0) == (y >= 0) else -1)
        return _wrap(quotient) if op == "/" else _wrap(x - quotient * y)

    return node


def _compare(op: str, left: Node, right: Node) -> Node:
    both = _operands(left, right)

    def node(event: Event, errs: list[str]) -> Value:
        values = both(event, errs)
        if values is None:
            return False
        x, y = values
        if op in ("=", "!=", "<>"):
            before = len(errs)
            x = _cast_like(x, y, errs)
            if len(errs) > before:
                return False
            return (x == y) if op == "=" else (x != y)
        a, b = to_int(x, errs), to_int(y, errs)
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]

    return node


def _logic(op: str, left: Node, right: Node) -> Node:
    def node(event: Event, errs: list[str]) -> Value:
        x = _one(left, event, errs)
        if x is None:
            return False
        a = to_bool(x, errs)
        if op == "AND" and not a:
            return False
        if op == "OR" and a:
            return True
        y = _one(right, event, errs)
        if y is None:
            return False
        b = to_bool(y, errs)
        return (a and b) if op == "AND" else (a or b) if op == "OR" else (a != b)

    return node


def _not(operand: Node) -> Node:
    def node(event: Event, errs: list[str]) -> Value:
        value = _one(operand, event, errs)
        if value is None:
            return False
        if isinstance(value, int) and not isinstance(value, bool):
            errs.append(CAST)  # NOT is not defined on integers (the TCK's reading of 3.7)
            return True
        return not to_bool(value, errs)

    return node


def _negate(operand: Node) -> Node:
    def node(event: Event, errs: list[str]) -> Value:
        value = _one(operand, event, errs)
        if value is None:
            return 0
        return _wrap(-to_int(value, errs))

    return node


def _like_pattern(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "%_":
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _like(operand: Node, pattern: str, negated: bool) -> Node:
    compiled = _like_pattern(pattern)

    def node(event: Event, errs: list[str]) -> Value:
        value = _one(operand, event, errs)
        if value is None:
            return False
        matched = compiled.fullmatch(to_str(value)) is not None
        return matched != negated

    return node


def _in(operand: Node, members: list[Node], negated: bool) -> Node:
    def node(event: Event, errs: list[str]) -> Value:
        value = _one(operand, event, errs)
        if value is None:
            return False
        found = False
        for member in members:
            candidate = _one(member, event, errs)
            if candidate is None:
                return False
            if _cast_like(candidate, value, errs) == value:
                found = True
                break
        return found != negated

    return node


def _exists(name: str) -> Node:
    return lambda event, errs: event.get(name) is not None


# -- functions ---------------------------------------------------------------------------------


def _fn_left(x: str, n: int, errs: list[str]) -> Value:
    if n < 0:
        errs.append(FUNCTION_EVALUATION)
        return x
    return x[:n]


def _fn_right(x: str, n: int, errs: list[str]) -> Value:
    if n < 0:
        errs.append(FUNCTION_EVALUATION)
        return x
    return x[len(x) - n :] if n < len(x) else x


def _fn_substring(x: str, pos: int, length: int | None, errs: list[str]) -> Value:
    if pos > len(x) or pos < -len(x) or (length is not None and length < 0):
        errs.append(FUNCTION_EVALUATION)
        return ""
    if pos == 0:
        return ""
    start = pos - 1 if pos > 0 else len(x) + pos
    return x[start:] if length is None else x[start : start + length]


def _fn_abs(x: int, errs: list[str]) -> Value:
    if x == _INT_MIN:
        errs.append(MATH)
        return _INT_MAX
    return abs(x)


def _is_int(x: str) -> Value:
    scratch: list[str] = []
    to_int(x, scratch)
    return not scratch


def _is_bool(x: str) -> Value:
    scratch: list[str] = []
    to_bool(x, scratch)
    return not scratch


# name -> {arity: (parameter types, implementation)}; "*" is the variadic overload.
_S, _I, _B = "s", "i", "b"
_FUNCTIONS: dict[str, dict[Any, tuple[str, Callable[..., Value]]]] = {
    "LENGTH": {1: (_S, lambda x, e: len(x))},
    "CONCAT": {"*": ("", lambda *a: "".join(a[:-1]))},
    "CONCAT_WS": {"*": (_S, lambda d, *a: d.join(a[:-1]))},
    "LOWER": {1: (_S, lambda x, e: x.lower())},
    "UPPER": {1: (_S, lambda x, e: x.upper())},
    "TRIM": {1: (_S, lambda x, e: x.strip())},
    "LEFT": {2: (_S + _I, _fn_left)},
    "RIGHT": {2: (_S + _I, _fn_right)},
    "SUBSTRING": {
        2: (_S + _I, lambda x, p, e: _fn_substring(x, p, None, e)),
        3: (_S + _I + _I, _fn_substring),
    },
    "ABS": {1: (_I, _fn_abs)},
    "INT": {1: (_I, lambda x, e: x)},
    "BOOL": {1: (_B, lambda x, e: x)},
    "STRING": {1: (_S, lambda x, e: x)},
    "IS_INT": {1: (_S, lambda x, e: _is_int(x))},
    "IS_BOOL": {1: (_S, lambda x, e: _is_bool(x))},
}
_ZERO: dict[str, Value] = {_S: "", _I: 0, _B: False}
_RETURNS = {"LENGTH": _I, "ABS": _I, "INT": _I, "BOOL": _B, "IS_INT": _B, "IS_BOOL": _B}


def _function(name: str, args: list[Node]) -> Node:
    overloads = _FUNCTIONS.get(name.upper())
    chosen = None
    if overloads is not None:
        chosen = overloads.get(len(args))
        if chosen is None and "*" in overloads and len(args) >= len(overloads["*"][0]):
            chosen = overloads["*"]
    if chosen is None:

        def missing(event: Event, errs: list[str]) -> Value:
            errs.append(MISSING_FUNCTION)
            return False

        return missing
    types, implementation = chosen
    fixed = len(types)
    returns = _RETURNS.get(name.upper(), _S)

    arguments = _operands(*args)

    def node(event: Event, errs: list[str]) -> Value:
        values = arguments(event, errs)
        if values is None:
            return _ZERO[returns]
        cast: list[Value] = []
        for index, value in enumerate(values):
            kind = types[index] if index < fixed else _S
            if kind == _I:
                cast.append(to_int(value, errs))
            elif kind == _B:
                cast.append(to_bool(value, errs))
            else:
                cast.append(to_str(value))
        return implementation(*cast, errs)

    return node


# -- the parser --------------------------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.at = 0

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def keyword(self, *words: str) -> str | None:
        token = self.peek()
        if token.kind == "word" and token.text.upper() in words:
            self.at += 1
            return token.text.upper()
        return None

    def expect(self, text: str) -> None:
        token = self.take()
        if token.kind != "op" or token.text != text:
            raise ParseError(f"CESQL: expected {text!r}, found {token.text or 'the end'!r}")

    def parse(self) -> Node:
        node = self.logic()
        if self.peek().kind != "end":
            raise ParseError(f"CESQL: unexpected {self.peek().text!r}")
        return node

    def logic(self) -> Node:
        node = self.comparison()
        while (op := self.keyword("AND", "OR", "XOR")) is not None:
            node = _logic(op, node, self.comparison())
        return node

    def comparison(self) -> Node:
        node = self.additive()
        while self.peek().kind == "op" and self.peek().text in (
            "=",
            "!=",
            "<>",
            "<",
            "<=",
            ">",
            ">=",
        ):
            op = self.take().text
            node = _compare(op, node, self.additive())
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.peek().kind == "op" and self.peek().text in ("+", "-"):
            op = self.take().text
            node = _arith(op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Node:
        node = self.postfix()
        while self.peek().kind == "op" and self.peek().text in ("*", "/", "%"):
            op = self.take().text
            node = _arith(op, node, self.postfix())
        return node

    def postfix(self) -> Node:
        node = self.unary()
        while True:
            start = self.at
            negated = self.keyword("NOT") is not None
            if self.keyword("LIKE"):
                pattern = self.take()
                if pattern.kind != "str":
                    raise ParseError("CESQL: LIKE takes a string literal pattern")
                node = _like(node, pattern.text, negated)
            elif self.keyword("IN"):
                self.expect("(")
                members = [self.logic()]
                while self.peek().kind == "op" and self.peek().text == ",":
                    self.take()
                    members.append(self.logic())
                self.expect(")")
                node = _in(node, members, negated)
            else:
                self.at = start
                return node

    def unary(self) -> Node:
        if self.keyword("NOT"):
            return _not(self.unary())
        token = self.peek()
        if token.kind == "op" and token.text == "-":
            self.take()
            following = self.peek()
            if following.kind == "int":  # a negative literal: -2147483648 is in range
                self.take()
                return _literal(self._int(f"-{following.text}"))
            return _negate(self.unary())
        if token.kind == "op" and token.text == "+":
            self.take()
            return self.unary()
        return self.primary()

    def _int(self, text: str) -> int:
        value = int(text)
        if not _INT_MIN <= value <= _INT_MAX:
            raise ParseError(f"CESQL: {text} is outside the 32-bit integer range")
        return value

    def primary(self) -> Node:
        token = self.take()
        if token.kind == "int":
            return _literal(self._int(token.text))
        if token.kind == "str":
            return _literal(token.text)
        if token.kind == "op" and token.text == "(":
            node = self.logic()
            self.expect(")")
            return node
        if token.kind == "word":
            upper = token.text.upper()
            if upper in ("TRUE", "FALSE"):
                return _literal(upper == "TRUE")
            if upper == "EXISTS":
                name = self.take()
                if name.kind != "word" or name.text.upper() in _KEYWORDS:
                    raise ParseError("CESQL: EXISTS takes an attribute name")
                return _exists(name.text.lower())
            if self.peek().kind == "op" and self.peek().text == "(":
                self.take()
                args: list[Node] = []
                if not (self.peek().kind == "op" and self.peek().text == ")"):
                    args.append(self.logic())
                    while self.peek().kind == "op" and self.peek().text == ",":
                        self.take()
                        args.append(self.logic())
                self.expect(")")
                return _function(token.text, args)
            if upper in _KEYWORDS or not re.fullmatch(r"[A-Za-z0-9]+", token.text):
                raise ParseError(f"CESQL: {token.text!r} is not an attribute name")
            return _attribute(token.text.lower())
        raise ParseError(f"CESQL: unexpected {token.text or 'end of expression'!r}")


@dataclass(frozen=True, slots=True)
class Expression:
    source: str
    root: Node

    def evaluate(self, event: Event) -> tuple[Value, list[str]]:
        errs: list[str] = []
        value = self.root(event, errs)
        return (False if value is MISSING else value), errs  # type: ignore[return-value]

    def matches(self, event: Event) -> bool:
        value, errs = self.evaluate(event)
        return value is True and not errs


def compile_expression(source: str) -> Expression:
    if not isinstance(source, str) or not source.strip():
        raise ParseError("CESQL: the 'sql' filter takes a non-empty expression string")
    return Expression(source, _Parser(source).parse())
