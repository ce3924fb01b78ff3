"""An API operation: its route, and everything the OpenAPI document says of it (api/openapi.py).

Each API module ends with its ``OPERATIONS``; ``app.py`` routes exactly those and
``openapi.py`` describes exactly those, so a path cannot be served undocumented or documented
unserved. Request bodies are msgspec types that both validate the request (``decode``) and
give the document its schema; so are responses (``respond`` encodes one). Query parameters are
``Query`` objects that read, check and describe themselves the same way.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from eventhub import errors
from eventhub.api import _http

T = TypeVar("T")

# A Starlette endpoint, or a raw ASGI app (the ingest endpoints: api/ingest.py).
Endpoint = Callable[[Request], Awaitable[Response]] | ASGIApp

# Who may call an operation: the roles of the keys it takes (auth.ROLES), or PUBLIC for no key.
PUBLIC: tuple[str, ...] = ()
ADMIN = ("admin",)
READERS = ("admin", "consumer")


@dataclass(frozen=True)
class Content:
    """A response or request body that is not one JSON schema type: its media type, and the
    JSON schema of what it holds (``{}``: anything)."""

    media_type: str
    schema: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


INTEGER: Mapping[str, Any] = {"type": "integer"}

# A body: a msgspec type (JSON), or a Content (or several, by media type).
Payload = type | Content | tuple[Content, ...]


@dataclass(frozen=True)
class Header:
    """A response header, as the document describes it."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Answer:
    """A response with more to say than its body: a description and the headers it carries."""

    body: Payload | None
    description: str = ""
    headers: tuple[Header, ...] = ()


# What a status answers with: a Payload, an Answer, a description alone for a body-less
# answer, or None.
Body = Payload | Answer | str | None


@dataclass(frozen=True)
class Query:
    """A query parameter (or, ``where="header"``, a request header) as the document
    describes it."""

    name: str
    description: str
    schema: Mapping[str, Any]
    required: bool = False
    where: str = "query"

    def parameter(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.where,
            "required": self.required,
            "description": self.description,
            "schema": dict(self.schema),
        }


@dataclass(frozen=True)
class IntQuery(Query):
    """An integer query parameter in ``[low, high]``, ``default`` when absent."""

    default: int = 0
    low: int = 0
    high: int = 2**63 - 1

    @classmethod
    def of(
        cls,
        name: str,
        description: str,
        default: int,
        low: int,
        high: int,
        *,
        required: bool = False,
    ) -> IntQuery:
        """An integer parameter; ``required`` ones have no default: absent is a 400."""
        schema: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
        if not required:
            schema["default"] = default
        return cls(name, description, schema, required, "query", default, low, high)

    def read(self, request: Request) -> int:
        """The value, in ASCII digits with a leading ``-`` only: ``int()`` alone also takes
        ``1_000``, `` 1``, ``+1`` and other scripts' digits (``%D9%A3`` is Arabic-Indic 3),
        which no client means and a cache or proxy reads otherwise."""
        raw = request.query_params.get(self.name)
        if raw is None:
            if self.required:
                raise errors.InvalidRequest(f"query parameter {self.name!r} is required")
            return self.default
        low, high = self.low, self.high
        digits = raw[1:] if raw.startswith("-") and low < 0 else raw
        if not (digits.isascii() and digits.isdigit()):
            raise errors.InvalidRequest(
                f"query parameter {self.name!r} must be an integer in ASCII digits"
            )
        # Longer than any 64-bit bound: refused before int() (which gives up past 4,300 digits).
        value = int(raw) if len(digits) <= 20 else high + 1
        if not low <= value <= high:
            raise errors.InvalidRequest(
                f"query parameter {self.name!r} must be between {low} and {high}"
            )
        return value


@dataclass(frozen=True)
class ChoiceQuery(Query):
    """A query parameter that takes one of ``choices``; None when absent."""

    choices: tuple[str, ...] = ()

    @classmethod
    def of(cls, name: str, description: str, choices: Sequence[str]) -> ChoiceQuery:
        schema = {"type": "string", "enum": list(choices)}
        return cls(name, description, schema, False, "query", tuple(choices))

    def read(self, request: Request) -> str | None:
        raw = request.query_params.get(self.name)
        if raw is not None and raw not in self.choices:
            raise errors.InvalidRequest(f"{self.name} must be one of {', '.join(self.choices)}")
        return raw


@dataclass(frozen=True)
class TextQuery(Query):
    """A free-text query parameter; None when absent."""

    @classmethod
    def of(cls, name: str, description: str) -> TextQuery:
        return cls(name, description, {"type": "string"})

    def read(self, request: Request) -> str | None:
        return request.query_params.get(self.name)


@dataclass(frozen=True)
class Operation:
    """One method on one path. ``path`` is as the document writes it (``/admin/keys/{keyId}``);
    ``route`` is the Starlette path that serves it when that differs (a ``{rest:path}`` whose
    endpoint splits the raw path itself, so that ``%2F`` stays inside a segment)."""

    method: str
    path: str
    endpoint: Endpoint
    summary: str
    roles: tuple[str, ...]
    responses: Mapping[int, Body]
    body: Payload | None = None
    query: tuple[Query, ...] = ()
    route: str | None = None
    description: str = ""
    tag: str = ""
    # Extra ways to authenticate, by security scheme name (api/openapi.py SCHEMES).
    also: tuple[str, ...] = ()
    # The operationId; by default ``<method>_<module>_<function>``.
    name: str = ""

    @property
    def route_path(self) -> str:
        return self.route or self.path

    @property
    def path_names(self) -> list[str]:
        return re.findall(r"{([^}:]+)}", self.path)


def decode(body: bytes, type_: type[T]) -> T:
    """``body`` as a ``type_``, or 400: ``invalid_json`` when it is not JSON, else
    ``invalid_request`` naming the field and what it should be."""
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        message, where = errors.explain_schema(str(exc))
        raise errors.InvalidRequest(message, [errors.Problem(message, where)]) from None
    except msgspec.DecodeError as exc:
        raise errors.InvalidJson(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        # msgspec nests as deep as Python's recursion limit allows (orjson stopped at 254),
        # then raises this: a trigger's filters 1000 levels deep are a 400, not a 500.
        raise errors.InvalidJson("request body is not valid JSON: it nests too deeply") from None


# The most an API body (not an ingest one) may hold: every typed body is far smaller.
BODY_LIMIT = 1024 * 1024


async def read_as(request: Request, type_: type[T], limit: int = BODY_LIMIT) -> T:
    """The request's body, bounded in size and time (``_http.read_body``), as a ``type_``."""
    return decode(await _http.read_body(request, limit), type_)


_ENCODER = msgspec.json.Encoder()


def respond(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response from a msgspec Struct (or builtins): encoded as the schema says."""
    return Response(_ENCODER.encode(value), status, headers, media_type="application/json")
