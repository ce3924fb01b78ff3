"""The OpenAPI 3.1 document, built from the operations the app serves (api/operation.py), and
the page that shows it.

``GET /openapi.json`` is the document; ``GET /docs`` is Swagger UI, shipped in the package
(``api/static/docs``, from the swagger-ui-dist package: see its LICENSE there) so that it works
on a machine with no internet. Both are open to anyone: the document describes the API, not
its data. The document is built once, when the app is.

Every error has the one shape of api/errors.py; each operation lists its success statuses and
answers anything else with that shape (the ``default`` response).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response

from eventhub import __version__
from eventhub.api.errors import Error
from eventhub.api.operation import (
    INTEGER,
    PUBLIC,
    Answer,
    Body,
    Content,
    Header,
    Operation,
)
from eventhub.api.static_files import StaticFiles

# The security schemes: an API key as a Bearer token, or as the ``access_token`` query
# parameter (ingest only: the CloudEvents webhook spec's alternative), or a producer's HMAC.
SCHEMES: dict[str, dict[str, Any]] = {
    "key": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`eh_…`): `Authorization: Bearer <key>`.",
    },
    "accessToken": {
        "type": "apiKey",
        "in": "query",
        "name": "access_token",
        "description": "An API key as the query parameter the CloudEvents webhook spec allows.",
    },
    "signature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Eventhub-Hmac",
        "description": (
            "A registered source's HMAC-SHA256 of the body (also `X-Emporix-Hmac`, and"
            " `X-UiPath-Signature` on the UiPath endpoint), for producers that sign rather"
            " than send a key; the source is the event's `source`."
        ),
    },
}


def _ref(name: str) -> str:
    return f"#/components/schemas/{name}"


def document(operations: Sequence[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``."""
    types = [Error, *sorted(_types(operations) - {Error}, key=lambda t: t.__qualname__)]
    found, components = msgspec.json.schema_components(types, ref_template=_ref("{name}"))
    schema_of = dict(zip(types, found, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schema_of)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "eventhub",
            "version": __version__,
            "description": (
                "A self-hosted CloudEvents hub: an append-only log, ordered signed webhook"
                " delivery, traces and process instances. Every error is the `Error` shape."
            ),
        },
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SCHEMES},
    }


def _types(operations: Iterable[Operation]) -> set[type]:
    found: set[type] = set()
    for op in operations:
        for body in (op.body, *op.responses.values()):
            if isinstance(body, Answer):
                body = body.body
            if isinstance(body, type):
                found.add(body)
    return found


def _content(
    body: type | Content | tuple[Content, ...], schema_of: dict[type, Any]
) -> dict[str, Any]:
    if isinstance(body, tuple):
        return {c.media_type: {"schema": dict(c.schema)} for c in body}
    if isinstance(body, Content):
        return {body.media_type: {"schema": dict(body.schema)}}
    assert isinstance(body, type)
    return {"application/json": {"schema": schema_of[body]}}


def _operation(op: Operation, schema_of: dict[type, Any]) -> dict[str, Any]:
    # The tag when there is one: shared endpoints (api/static_files.py) serve several areas.
    area = op.tag or op.endpoint.__module__.rsplit(".", 1)[-1]
    name = op.name or getattr(op.endpoint, "__name__", "")
    out: dict[str, Any] = {
        "operationId": f"{op.method.lower()}_{area}_{name}",
        "summary": op.summary,
        "tags": [area],
    }
    description = op.description
    if op.roles != PUBLIC:
        needs = f"Needs a key with role {' or '.join(op.roles)}."
        description = f"{description}\n\n{needs}" if description else needs
        out["security"] = [{"key": []}, *({name: []} for name in op.also)]
    else:
        out["security"] = []
    if description:
        out["description"] = description
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in op.path_names
    ]
    parameters += [q.parameter() for q in op.query]
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": _content(op.body, schema_of)}
    responses: dict[str, Any] = {}
    for status, body in sorted(op.responses.items()):
        responses[str(status)] = _response(status, body, schema_of)
    responses["default"] = _response(0, _ERROR, schema_of)
    out["responses"] = responses
    return out


# Any answer not listed: the one error shape, with the headers some errors carry.
_ERROR = Answer(
    Error,
    "An error: the status says which kind, `error.code` exactly which.",
    (
        Header("WWW-Authenticate", 'On a 401: `Bearer realm="eventhub"`.'),
        Header("Retry-After", "On a 429: seconds to wait before trying again.", INTEGER),
    ),
)


def _response(status: int, body: Body, schema_of: dict[type, Any]) -> dict[str, Any]:
    headers: tuple[Header, ...] = ()
    described = _PHRASES.get(status, "OK")
    if isinstance(body, Answer):
        described, headers, body = body.description or described, body.headers, body.body
    if isinstance(body, str):
        described, body = body, None
    elif isinstance(body, Content) and body.description:
        described = body.description
    out: dict[str, Any] = {"description": described}
    if headers:
        out["headers"] = {
            h.name: {"description": h.description, "required": h.required, "schema": dict(h.schema)}
            for h in headers
        }
    if body is not None:
        out["content"] = _content(body, schema_of)
    return out


_PHRASES = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    499: "The client went away before the answer",
}


class Docs:
    """``/openapi.json`` and ``/docs`` for one app: the document is encoded once."""

    FILES: ClassVar[dict[str, str]] = {
        "swagger-ui-bundle.js": "text/javascript",
        "swagger-ui.css": "text/css",
        "init.js": "text/javascript",
    }
    # Swagger UI styles some elements inline; it loads nothing from elsewhere.
    POLICY = (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
        " frame-ancestors 'none'"
    )

    def __init__(self, served: Sequence[Operation]) -> None:
        """The document of ``served`` and of this object's own ``operations``, which serve
        it and its page: a client reading the document finds these paths in it too."""
        page = "The page; its script and styles are /docs/{name}, from this package."
        headers = {"Content-Security-Policy": self.POLICY, "Cache-Control": "public, max-age=3600"}
        self._files = StaticFiles("docs", "/docs", self.FILES, headers)
        self.operations = (
            Operation(
                "GET",
                "/openapi.json",
                self.openapi,
                "This document",
                PUBLIC,
                {200: Content("application/json", {"type": "object"})},
                name="openapi",
                tag="docs",
            ),
            Operation(
                "GET",
                "/docs",
                self._files.page,
                "The API's documentation, as a page (Swagger UI)",
                PUBLIC,
                {200: Content("text/html", {"type": "string"}, page)},
                name="page",
                tag="docs",
            ),
            Operation(
                "GET",
                "/docs/{name}",
                self._files.asset,
                "A file of the documentation page",
                PUBLIC,
                {
                    200: (
                        Content("text/javascript", {"type": "string"}),
                        Content("text/css", {"type": "string"}),
                    )
                },
                name="asset",
                tag="docs",
            ),
        )
        self.body = orjson.dumps(document([*served, *self.operations]))

    async def openapi(self, request: Request) -> Response:
        return Response(self.body, media_type="application/json")
