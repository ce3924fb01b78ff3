"""The API edge's typed pieces (api/operation.py): body decoding, query parameters, and the
document built from operations (api/openapi.py)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest
from starlette.requests import Request
from starlette.responses import Response

from eventhub import errors
from eventhub.api import openapi
from eventhub.api.operation import (
    ADMIN,
    PUBLIC,
    ChoiceQuery,
    Content,
    IntQuery,
    Operation,
    decode,
)


class Inner(msgspec.Struct):
    size: Annotated[int, msgspec.Meta(ge=1, le=10)]


class Body(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """A body."""

    name: str
    inner: Inner | None = None
    tags: list[str] = []


def refused(raw: bytes) -> errors.EventHubError:
    with pytest.raises(errors.EventHubError) as caught:
        decode(raw, Body)
    return caught.value


def test_decode_takes_a_fitting_body() -> None:
    assert decode(b'{"name": "a", "inner": {"size": 3}}', Body) == Body("a", Inner(3))


@pytest.mark.parametrize(
    ("raw", "message", "where"),
    [
        (b'{"name": 1}', "name: expected `str`, got `int`", "name"),
        (b'{"name": "a", "inner": {"size": 0}}', "inner.size: expected `int` >= 1", "inner.size"),
        (b'{"name": "a", "tags": ["x", 2]}', "tags[1]: expected `str`, got `int`", "tags[1]"),
        (b"{}", "the body: object missing required field `name`", None),
        (b"[]", "the body: expected `object`, got `array`", None),
        (b'{"name": "a", "extra": 1}', "the body: object contains unknown field `extra`", None),
        (b'{"name": "a", "inner": {}}', "inner: object missing required field `size`", "inner"),
    ],
)
def test_decode_refusals_name_the_field(raw: bytes, message: str, where: str | None) -> None:
    error = refused(raw)
    assert type(error) is errors.InvalidRequest
    assert error.message == message
    assert [(p.reason, p.attribute) for p in error.details] == [(message, where)]


def test_decode_tells_bad_json_apart() -> None:
    error = refused(b'{"name": ')
    assert type(error) is errors.InvalidJson
    assert error.message.startswith("request body is not valid JSON")


def request_with(query: bytes) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": query})


LIMIT = IntQuery.of("limit", "how many", 100, 1, 1000)


@pytest.mark.parametrize(
    ("query", "value"), [(b"", 100), (b"limit=1", 1), (b"limit=1000", 1000), (b"other=5", 100)]
)
def test_int_query_reads_its_value(query: bytes, value: int) -> None:
    assert LIMIT.read(request_with(query)) == value


@pytest.mark.parametrize(
    "raw", [b"0", b"1001", b"-1", b"1_0", b"+1", b"%20" + b"1", b"%D9%A3", b"1" * 30, b"x"]
)
def test_int_query_refuses_what_no_client_means(raw: bytes) -> None:
    with pytest.raises(errors.InvalidRequest, match="'limit'"):
        LIMIT.read(request_with(b"limit=" + raw))


def test_choice_query() -> None:
    state = ChoiceQuery.of("state", "which", ["Active", "Paused"])
    assert state.read(request_with(b"state=Paused")) == "Paused"
    assert state.read(request_with(b"")) is None
    with pytest.raises(errors.InvalidRequest, match="state must be one of Active, Paused"):
        state.read(request_with(b"state=active"))


async def endpoint(request: Request) -> Response:
    return Response()


def test_the_document_describes_each_operation() -> None:
    ops = (
        Operation(
            "PUT",
            "/things/{thingId}",
            endpoint,
            "Put a thing",
            ADMIN,
            {200: Body, 204: None},
            Body,
            (LIMIT,),
            route="/things/{rest:path}",
        ),
        Operation(
            "GET",
            "/open",
            endpoint,
            "Open",
            PUBLIC,
            {200: Content("text/plain", {"type": "string"})},
        ),
    )
    doc = openapi.document(ops)
    assert doc["openapi"].startswith("3.1")
    put = doc["paths"]["/things/{thingId}"]["put"]
    assert put["security"] == [{"key": []}] and "role admin" in put["description"]
    assert [p["name"] for p in put["parameters"]] == ["thingId", "limit"]
    assert put["parameters"][1]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 100,
    }
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Body"
    }
    assert set(put["responses"]) == {"200", "204", "default"}
    assert "content" not in put["responses"]["204"]
    schemas: dict[str, Any] = doc["components"]["schemas"]
    assert schemas["Inner"]["properties"]["size"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10,
    }
    assert schemas["Body"]["required"] == ["name"] and schemas["Body"]["description"] == "A body."
    assert set(schemas["Error"]["properties"]) == {"error"}
    opened = doc["paths"]["/open"]["get"]
    assert opened["security"] == []
    assert opened["responses"]["200"]["content"] == {"text/plain": {"schema": {"type": "string"}}}


def test_a_required_int_query_has_no_default_and_refuses_absence() -> None:
    offset = IntQuery.of("fromOffset", "where", 0, 0, 10, required=True)
    assert offset.parameter()["required"] is True and "default" not in offset.parameter()["schema"]
    assert offset.read(request_with(b"fromOffset=0")) == 0
    with pytest.raises(errors.InvalidRequest, match="'fromOffset' is required"):
        offset.read(request_with(b""))
