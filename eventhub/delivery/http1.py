"""One HTTP/1.1 connection to a receiver, and how a delivery request is written on it.

A request is written in one ``transport.write``; the answer is parsed by ``httptools`` (the
llhttp parser uvicorn uses), keeping only what delivery needs: the status, ``Retry-After``,
and a redirect's ``Location`` (to say where it pointed: redirects are never followed).
The body of the answer is read to its end and dropped, so the connection can be reused;
a caller that wants it (a process's call step, whose answer holds variables) asks for up to
``keep_body`` bytes of it.

Errors a request can end with (the sender turns each into a failed attempt):

    OSError                  refused, reset, unreachable (``ConnectionError`` and kin)
      Disconnected           the receiver closed the connection before a whole answer
    TimeoutError             the answer did not come within the time limit
    ProtocolError            an answer that is not HTTP/1.x
    ValueError               a callback URL or header that cannot be sent (``Target.error``)
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote, unquote, urlsplit

import httptools

_FORBIDDEN = frozenset("\r\n\x00")
# Computed per request from the body, or owned by the connection: a subscription's custom
# headers may not set them (aiohttp, which sent deliveries before, computed them too).
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
USER_AGENT = "eventhub"
# RFC 3986 path and query characters, and '%' so existing escapes stay as they are.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Disconnected(ConnectionError):
    """The receiver closed the connection before a whole answer arrived."""


class ProtocolError(Exception):
    """The receiver's answer is not HTTP/1.x."""


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__ (~1.1 us
# against ~0.3), and one is built for every delivery. Nothing changes one once built.
@dataclass(slots=True)
class Answer:
    status: int
    retry_after: str | None
    keep_alive: bool
    location: str | None = None
    body: bytes | None = None  # with ``keep_body``: the body, or None if it was longer


@dataclass(frozen=True, slots=True)
class Target:
    """A callback URL and its custom headers, checked and encoded once per subscription."""

    scheme: str
    host: str
    port: int
    # The request line, Host, User-Agent and the custom headers, ready to send.
    head: bytes
    error: str | None = None  # why nothing can be sent to it; the rest is then empty

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def check_header(name: str, value: str) -> None:
    if not name or not _TOKEN.issuperset(name):
        raise ValueError(f"invalid header name {name!r}")
    if not _FORBIDDEN.isdisjoint(value):
        raise ValueError(f"header {name} holds a line break or NUL")


def _request_target(path: str, query: str) -> str:
    """Path and query as sent: characters a URL may not hold are percent-encoded (as aiohttp's
    yarl did), existing escapes are kept, the fragment is not sent."""
    target = quote(path or "/", safe=_PATH_SAFE)
    return f"{target}?{quote(query, safe=_QUERY_SAFE)}" if query else target


def target(uri: str, headers: Mapping[str, str]) -> Target:
    """Parse ``uri`` and encode ``headers``; never raises: an unusable target has ``error``."""
    try:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme {parts.scheme!r}")
        host = parts.hostname
        if not host:
            raise ValueError("the URL has no host")
        if ":" not in host:  # a name, not an IPv6 address: its ASCII (IDNA) form
            host = host.encode("idna").decode("ascii")
        default_port = 443 if parts.scheme == "https" else 80
        port = parts.port or default_port  # raises ValueError for a bad port
        names = {name.lower() for name in headers}
        lines = [f"POST {_request_target(parts.path, parts.query)} HTTP/1.1"]
        if "host" not in names:
            shown = f"[{host}]" if ":" in host else host
            lines.append(f"Host: {shown}" if port == default_port else f"Host: {shown}:{port}")
        if "user-agent" not in names:
            lines.append(f"User-Agent: {USER_AGENT}")
        if parts.username is not None:  # credentials in the URL: Basic auth, as aiohttp did
            if "authorization" in names:
                raise ValueError("credentials in the URL and an Authorization header conflict")
            user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            lines.append(f"Authorization: Basic {base64.b64encode(user.encode()).decode()}")
        for name, value in headers.items():
            check_header(name, value)
            if name.lower() not in _FRAMING:
                lines.append(f"{name}: {value}")
        head = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    except (ValueError, UnicodeError) as exc:
        return Target("", "", 0, b"", str(exc))
    return Target(parts.scheme, host, port, head)


def _unsafe(text: str) -> bool:
    return "\r" in text or "\n" in text or "\x00" in text


def encode(target: Target, headers: Mapping[str, str], body: bytes) -> bytes:
    """The whole request: the target's head, this delivery's headers, the body."""
    lines = []
    for name, value in headers.items():
        if _unsafe(value) or _unsafe(name):
            raise ValueError(f"header {name!r} holds a line break or NUL")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    return b"".join((target.head, "".join(lines).encode(), body))


class Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time. Also the parser's callback object."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._status = 0
        self._retry_after: str | None = None
        self._location: str | None = None
        self._framed = False  # the answer's length is known (Content-Length or chunked)
        self._headers_done = False
        self._keep = 0  # bytes of the answer's body to keep (0: none)
        self._body: bytearray | None = None  # None: not kept, or longer than _keep

    # -- the caller's side -------------------------------------------------------------------

    def send(self, request: bytes, keep_body: int = 0) -> asyncio.Future[Answer]:
        assert self.transport is not None and self._waiter is None
        if self.closed or self.transport.is_closing():
            raise Disconnected("the receiver closed the connection")
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self._status, self._retry_after, self._location = 0, None, None
        self._framed = self._headers_done = False
        self._keep = keep_body
        self._body = bytearray() if keep_body else None
        self.transport.write(request)
        return waiter

    def abort(self) -> None:
        """Drop the connection at once: its state is unknown (timeout, cancellation)."""
        self.closed = True
        self._waiter = None
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # nothing was asked: a confused or hostile receiver
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"unreadable answer: {exc}"))

    def eof_received(self) -> bool | None:
        self.closed = True  # no second request on it, even before connection_lost
        return False  # close our side too; connection_lost settles a pending answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and not self._framed and exc is None:
            # An answer without a length ends when the receiver closes the connection.
            self._finish(keep_alive=False)
            return
        self._fail(Disconnected("the receiver closed the connection before a whole answer"))

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._waiter is None:  # a second answer to one request: the stream is confused
            self.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"retry-after":
            self._retry_after = value.decode("latin-1")
        elif name == b"location":
            self._location = value.decode("latin-1")
        elif name == b"content-length" or name == b"transfer-encoding":
            self._framed = True

    def on_body(self, chunk: bytes) -> None:
        body = self._body
        if body is not None:
            if len(body) + len(chunk) > self._keep:
                self._body = None  # too long: read on, keep nothing
            else:
                body += chunk

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # an interim answer (100 Continue): the real one follows
            self._status, self._retry_after, self._location = 0, None, None
            self._framed = self._headers_done = False
            self._body = bytearray() if self._keep else None
            return
        self._finish(self._parser.should_keep_alive())

    # -- settling the answer -----------------------------------------------------------------

    def _finish(self, keep_alive: bool) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            body = None if self._body is None else bytes(self._body)
            waiter.set_result(
                Answer(self._status, self._retry_after, keep_alive, self._location, body)
            )

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
