"""CloudEvents SQL (CESQL 1.0, refs/cloudevents/cesql-spec.md): the ``sql`` filter dialect.

``compile_expression`` parses once (a ParseError is a 400 when the trigger is saved);
``Expression.evaluate`` returns the value and the list of errors the spec asks for, and
``Expression.matches`` is the filter: true only for the value TRUE with no error.

Values are Python ``bool``, ``int`` (32-bit) and ``str``. Every operator and function is
total: an error yields the zero value of the result type plus an entry in the error list.
A missing attribute yields the zero value of whatever consumes it, with MissingAttribute.

Limits, checked while parsing so that no expression can reach Python's recursion limit, in
the parser or later in ``evaluate``: at most ``MAX_LENGTH`` characters, and at most
``MAX_DEPTH`` levels of nesting, counting parentheses, function calls, ``IN`` lists, ``NOT``,
unary minus and every level of the compiled tree (``x LIKE 'a' LIKE 'b'`` is two). A chain of
one binary operator (``a AND b AND c``, ``1 + 2 - 3``) is one node evaluated in a loop, so
long flat chains cost no depth. Both limits are far above any hand-written filter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from eventhub import errors
from eventhub.catalog.like import compile_like

Value = bool | int | str

PARSE = "parse"
MATH = "math"
CAST = "cast"
MISSING_ATTRIBUTE = "missingAttribute"
MISSING_FUNCTION = "missingFunction"
FUNCTION_EVALUATION = "functionEvaluation"

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_KEYWORDS = {"AND", "OR", "XOR", "NOT", "LIKE", "IN", "EXISTS", "TRUE", "FALSE"}

MAX_LENGTH = 16384
MAX_DEPTH = 32


class ParseError(errors.InvalidRequest):
    pass


class _Missing:
    """What an absent attribute evaluates to, until an operator gives it a type."""


MISSING = _Missing()


# -- tokens ------------------------------------------------------------------------------------

_SPACE = re.compile(r"\s*")
_INTEGER = re.compile(r"[+-]?\d+")
_TOKEN = re.compile(
    r"""(?:
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


def _skip_space(source: str, position: int) -> int:
    m = _SPACE.match(source, position)
    return position if m is None else m.end()


def _tokens(source: str) -> list[_Token]:
    """The tokens of ``source`` and an ``end`` token, in one linear pass."""
    out: list[_Token] = []
    position = _skip_space(source, 0)
    while position < len(source):
        m = _TOKEN.match(source, position)
        if m is None or m.end() == position:
            near = source[position : position + 20]
            raise ParseError(f"CESQL: unexpected character at {position}: {near!r}")
        kind = m.lastgroup or ""
        text = m.group(kind)
        if kind == "str":
            quote = text[0]
            text = text[1:-1].replace("\\" + quote, quote)
        out.append(_Token(kind, text))
        position = _skip_space(source, m.end())
    out.append(_Token("end", ""))
    return out


# -- casts -------------------------------------------------------------------------------------


def _wrap(value: int) -> int:
    return (value - _INT_MIN) % 2**32 + _INT_MIN


def parse_int(text: str) -> int | None:
    """The 32-bit integer a decimal text (optional sign) spells, or None. Leading zeros go
    before ``int()``, which refuses texts of more than 4300 digits with a ValueError."""
    if _INTEGER.fullmatch(text) is None:
        return None
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 10:
        return None
    number = -int(digits) if text[0] == "-" else int(digits)
    return number if _INT_MIN <= number <= _INT_MAX else None


def to_int(value: Value, errs: list[str]) -> int:
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int):
        return value
    number = parse_int(value.strip())
    if number is None:
        errs.append(CAST)
        return 0
    return number


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


def _arith_step(op: str, left: Value, right: Value, errs: list[str]) -> Value:
    x, y = to_int(left, errs), to_int(right, errs)
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


def _compare_step(op: str, x: Value, y: Value, errs: list[str]) -> Value:
    if op in ("=", "!=", "<>"):
        before = len(errs)
        x = _cast_like(x, y, errs)
        if len(errs) > before:
            return False
        return (x == y) if op == "=" else (x != y)
    a, b = to_int(x, errs), to_int(y, errs)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


Step = Callable[[str, Value, Value, list[str]], Value]
Chain = list[tuple[str, Node]]


def _strict_chain(first: Node, rest: Chain, step: Step, zero: Value) -> Node:
    """``first op1 r1 op2 r2 ...``, left-associative, in a loop rather than one nested call
    per operator. Exactly what the nested binary nodes would compute: every operand is
    evaluated, and once any of them (or a step) has failed, each later step yields ``zero``."""

    def node(event: Event, errs: list[str]) -> Value:
        start = len(errs)
        x = first(event, errs)
        for op, operand in rest:
            y = operand(event, errs)
            x = zero if len(errs) > start else step(op, x, y, errs)  # type: ignore[arg-type]
        return x  # type: ignore[return-value]

    return node


def _logic_chain(first: Node, rest: Chain) -> Node:
    """``a AND b OR c XOR d ...`` (one precedence level, left-associative) in a loop, with the
    short circuits of the nested form: a failed left side yields FALSE and stops there."""

    def node(event: Event, errs: list[str]) -> Value:
        start = len(errs)
        x = first(event, errs)
        for op, operand in rest:
            if len(errs) > start:
                return False
            a = to_bool(x, errs)  # type: ignore[arg-type]
            if op == "AND" and not a:
                x = False
                continue
            if op == "OR" and a:
                x = True
                continue
            y = _one(operand, event, errs)
            if y is None:
                return False
            b = to_bool(y, errs)
            x = (a and b) if op == "AND" else (a or b) if op == "OR" else (a != b)
        return x  # type: ignore[return-value]

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


def _like(operand: Node, pattern: str, negated: bool) -> Node:
    matches = compile_like(pattern)

    def node(event: Event, errs: list[str]) -> Value:
        value = _one(operand, event, errs)
        if value is None:
            return False
        return matches(to_str(value)) != negated

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


_COMPARISONS = ("=", "!=", "<>", "<", "<=", ">", ">=")


class _Parser:
    """Recursive descent, one method per precedence level. ``nesting`` counts the open
    parentheses, function calls and IN lists (each re-enters ``logic``: eight Python frames
    per level) and ``heights`` the height of each compiled node (its evaluation depth); both
    stop at ``MAX_DEPTH``, so neither parsing nor evaluating recurses without bound."""

    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.at = 0
        self.nesting = 0
        # id(node) -> (height, node); the node is kept so that its id is never reused.
        self.heights: dict[int, tuple[int, Node]] = {}

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

    def is_op(self, *texts: str) -> bool:
        token = self.peek()
        return token.kind == "op" and token.text in texts

    def expect(self, text: str) -> None:
        token = self.take()
        if token.kind != "op" or token.text != text:
            raise ParseError(f"CESQL: expected {text!r}, found {token.text or 'the end'!r}")

    def too_deep(self) -> ParseError:
        return ParseError(f"CESQL: the expression nests deeper than {MAX_DEPTH} levels")

    def made(self, node: Node, *children: Node) -> Node:
        """Record ``node``'s height (one more than its highest child; a leaf is 1)."""
        height = 1 + max((self.heights.get(id(c), (1, c))[0] for c in children), default=0)
        if height > MAX_DEPTH:
            raise self.too_deep()
        self.heights[id(node)] = (height, node)
        return node

    def nested(self) -> Node:
        """A full expression inside parentheses, an argument list or an IN list."""
        if self.nesting >= MAX_DEPTH:
            raise self.too_deep()
        self.nesting += 1
        node = self.logic()
        self.nesting -= 1
        return node

    def parse(self) -> Node:
        node = self.logic()
        if self.peek().kind != "end":
            raise ParseError(f"CESQL: unexpected {self.peek().text!r}")
        return node

    def logic(self) -> Node:
        first = self.comparison()
        rest: Chain = []
        while (op := self.keyword("AND", "OR", "XOR")) is not None:
            rest.append((op, self.comparison()))
        if not rest:
            return first
        return self.made(_logic_chain(first, rest), first, *(n for _, n in rest))

    def comparison(self) -> Node:
        first = self.additive()
        rest: Chain = []
        while self.is_op(*_COMPARISONS):
            op = self.take().text
            rest.append((op, self.additive()))
        if not rest:
            return first
        chain = _strict_chain(first, rest, _compare_step, False)
        return self.made(chain, first, *(n for _, n in rest))

    def additive(self) -> Node:
        first = self.multiplicative()
        rest: Chain = []
        while self.is_op("+", "-"):
            op = self.take().text
            rest.append((op, self.multiplicative()))
        if not rest:
            return first
        return self.made(_strict_chain(first, rest, _arith_step, 0), first, *(n for _, n in rest))

    def multiplicative(self) -> Node:
        first = self.postfix()
        rest: Chain = []
        while self.is_op("*", "/", "%"):
            op = self.take().text
            rest.append((op, self.postfix()))
        if not rest:
            return first
        return self.made(_strict_chain(first, rest, _arith_step, 0), first, *(n for _, n in rest))

    def postfix(self) -> Node:
        node = self.unary()
        while True:
            start = self.at
            negated = self.keyword("NOT") is not None
            if self.keyword("LIKE"):
                pattern = self.take()
                if pattern.kind != "str":
                    raise ParseError("CESQL: LIKE takes a string literal pattern")
                node = self.made(_like(node, pattern.text, negated), node)
            elif self.keyword("IN"):
                self.expect("(")
                members = [self.nested()]
                while self.is_op(","):
                    self.take()
                    members.append(self.nested())
                self.expect(")")
                node = self.made(_in(node, members, negated), node, *members)
            else:
                self.at = start
                return node

    def unary(self) -> Node:
        """Prefix operators in a loop (``NOT NOT - x``), applied innermost first."""
        prefixes: list[str] = []
        while True:
            if self.keyword("NOT"):
                prefixes.append("NOT")
            elif self.is_op("+"):
                self.take()
            elif self.is_op("-"):
                self.take()
                following = self.peek()
                if following.kind == "int":  # a negative literal: -2147483648 is in range
                    self.take()
                    node = _literal(self._int(f"-{following.text}"))
                    break
                prefixes.append("-")
            else:
                node = self.primary()
                break
        for prefix in reversed(prefixes):
            node = self.made(_not(node) if prefix == "NOT" else _negate(node), node)
        return node

    def _int(self, text: str) -> int:
        value = parse_int(text)
        if value is None:
            raise ParseError(f"CESQL: {text[:20]} is outside the 32-bit integer range")
        return value

    def primary(self) -> Node:
        token = self.take()
        if token.kind == "int":
            return _literal(self._int(token.text))
        if token.kind == "str":
            return _literal(token.text)
        if token.kind == "op" and token.text == "(":
            node = self.nested()
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
            if self.is_op("("):
                self.take()
                args: list[Node] = []
                if not self.is_op(")"):
                    args.append(self.nested())
                    while self.is_op(","):
                        self.take()
                        args.append(self.nested())
                self.expect(")")
                return self.made(_function(token.text, args), *args)
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
    """Parse ``source`` once; a ParseError (400) names what is wrong, a limit included."""
    if not isinstance(source, str) or not source.strip():
        raise ParseError("CESQL: the 'sql' filter takes a non-empty expression string")
    if len(source) > MAX_LENGTH:
        raise ParseError(f"CESQL: the expression is longer than {MAX_LENGTH} characters")
    return Expression(source, _Parser(source).parse())
