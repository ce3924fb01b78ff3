"""The one place where exceptions become HTTP responses, all in one JSON shape:
``{"error": {"code": "...", "message": "...", "details": [...]}}``.

``HANDLERS`` serves Starlette's endpoints; ``respond`` serves the raw ASGI ingest endpoints
(api/ingest.py) from the same map; ``http1_error`` serves the HTTP layer itself
(api/_protocol.py), which answers before any app runs."""

from __future__ import annotations

import http
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from eventhub import errors

log = logging.getLogger(__name__)

# On a 410 below_retained_range: the first offset the log still holds.
FIRST_OFFSET_HEADER = "Eventhub-First-Offset"


class ErrorDetail(msgspec.Struct):
    """One thing wrong with a request: what, and where when it is about one field or event."""

    reason: str
    attribute: str | None = None
    index: int | None = None


class ErrorInfo(msgspec.Struct):
    code: str
    message: str
    details: list[ErrorDetail]


class Error(msgspec.Struct):
    """Every error eventhub answers: a machine-readable ``code`` and a human ``message``."""

    error: ErrorInfo


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "invalid_request"}


def _error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "details": details or []}})


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = _error_body(code, message, details)
    return Response(body, status, headers=headers, media_type="application/json")


async def eventhub_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.EventHubError)
    headers = None
    if isinstance(exc, errors.TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, errors.Unauthorized):
        headers = {"WWW-Authenticate": 'Bearer realm="eventhub"'}
    elif isinstance(exc, errors.BelowRetention):
        headers = {FIRST_OFFSET_HEADER: str(exc.first_offset)}
    details = [p.to_json() for p in exc.details]
    return error_response(exc.status, exc.code, exc.message, details, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def client_gone(request: Request, exc: Exception) -> Response:
    # The client hung up mid-body: nobody is left to answer and nothing was stored.
    log.debug("client disconnected during %s %s", request.method, request.url.path)
    return Response(status_code=499)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error; see the server log")


HANDLERS = {
    errors.EventHubError: eventhub_error,
    HTTPException: http_error,
    ClientDisconnect: client_gone,
    Exception: unexpected_error,
}


async def respond(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """Answer ``exc``, raised by a raw ASGI endpoint before it started its response, as
    Starlette's ExceptionMiddleware would with ``HANDLERS``. An error no handler but
    ``Exception``'s claims is unexpected: it is re-raised for ServerErrorMiddleware, which logs
    it, answers 500 and hands it on to the server, as for any other endpoint."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            break
        handler = HANDLERS.get(cls)
        if handler is not None:
            response = await handler(Request(scope, receive, send), exc)
            await response(scope, receive, send)
            return
    raise exc


def http1_error(exc: errors.EventHubError, headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """The raw HTTP/1.1 response for ``exc`` when the HTTP layer answers it (a malformed request,
    a head too large or too slow): the one JSON shape, then ``connection: close``, since after
    such an error the rest of the stream cannot be trusted. ``headers`` are the server's
    defaults (``server``, ``date``)."""
    body = _error_body(exc.code, exc.message, [p.to_json() for p in exc.details])
    phrase = http.HTTPStatus(exc.status).phrase
    lines = [f"HTTP/1.1 {exc.status} {phrase}".encode()]
    lines += [name + b": " + value for name, value in headers]
    lines += [
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
