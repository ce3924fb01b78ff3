"""Raw ASGI for the ingest endpoints: a request is its scope, its headers read once into a dict,
and a body read straight from ``receive``; an answer is two ``send`` calls.

Ingest is bound by per-request Python (bench/README.md), and Starlette's Request and Response
objects, its routing and its exception wrappers cost as much as eventhub's own validation
does. The other endpoints keep Starlette; errors of both kinds become responses in
``api/errors.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from eventhub import errors
from eventhub.api._deadlines import Deadlines, Expired


class Incoming:
    """One request: its scope, its headers (lower-case names; the last of repeated ones wins, as
    ``_http.header`` has it) and its body, read on demand."""

    __slots__ = ("events", "headers", "mode", "ready", "receive", "scope")

    def __init__(
        self, scope: Scope, receive: Receive, ready: Callable[[], bytes | None] | None = None
    ) -> None:
        self.scope = scope
        self.receive = receive
        # The body when the server already holds all of it (api/_direct.py), else None.
        self.ready = ready
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        # What the handler found the request to be, for /metrics (ops/metrics.py): its mode
        # (binary, structured, batch, webhook) and how many events it parsed.
        self.mode = "unknown"
        self.events = 0

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    async def body(self, limit: int, deadlines: Deadlines) -> bytes:
        """The whole body, refused before it is read when too large or unsized, and given up on
        when the client takes longer than ``deadlines.seconds`` to send it (it holds a slot)."""
        check_length(self.header(b"content-length"), limit)
        if self.ready is not None:
            # Arrived whole with the head (the common case): no read, so no deadline either.
            body = self.ready()
            if body is not None:
                return body
        try:
            return await deadlines.within(_collect(self.receive))
        except Expired:
            raise errors.RequestTimeout(
                f"the body did not arrive within {deadlines.seconds:g} s; send it faster or in"
                " smaller parts"
            ) from None


def check_content_type(incoming: Incoming) -> None:
    """Refuse a Content-Type with bytes past ASCII: media types are ASCII (RFC 9110 §8.3), and
    such a value would be stored as ``datacontenttype`` decoded as Latin-1, i.e. mojibake."""
    value = incoming.headers.get(b"content-type")
    if value is not None and not value.isascii():
        raise errors.InvalidRequest(
            "the Content-Type header must be ASCII (a media type and its parameters)"
        )


def check_length(length: str | None, limit: int) -> None:
    """Refuse an unsized body (chunked: 411) or one over ``limit`` bytes (413) before reading it."""
    if length is None:
        raise errors.LengthRequired("send a Content-Length header (chunked bodies are refused)")
    try:
        size = int(length)
    except ValueError:
        raise errors.InvalidRequest("Content-Length is not a number") from None
    if size > limit:
        raise errors.PayloadTooLarge(f"the body is {size} bytes; the limit is {limit}")


async def _collect(receive: Receive) -> bytes:
    """What Starlette's ``Request.body`` does, without the Request and its async generator."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


_JSON = (b"content-type", b"application/json")


async def send_json(send: Send, body: bytes, status: int = 200) -> None:
    """The headers Starlette's ``Response(body, status, media_type="application/json")`` sends."""
    headers = [(b"content-length", str(len(body)).encode("latin-1")), _JSON]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_empty(send: Send, status: int = 204) -> None:
    """``Response(status_code=204)``: no headers of its own, an empty body."""
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})
