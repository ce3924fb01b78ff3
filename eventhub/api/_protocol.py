"""uvicorn's httptools protocol with the connection limits of SPEC §8, on every route.

uvicorn's ``HttpToolsProtocol`` reads a request head of any size for any time, and takes every
connection the kernel hands it. This subclass adds, before the app sees anything:

- ``header_timeout``: a request head (request line and headers) must be complete this long
  after the connection opens, or after its first byte on a keep-alive connection; else 408 and
  close. Between requests uvicorn's own ``timeout_keep_alive`` closes an idle connection.
- ``max_header_bytes``: a larger head is answered 431 and the connection closed. The count
  runs as chunks arrive, so at most one read (uvloop reads 256 KiB at most) is buffered past
  the limit, never the whole head.
- ``max_connections``: at the cap, a new connection closes the oldest one that has no request
  in progress (idle keep-alive, nothing sent yet, or a head still arriving); only when every
  connection has a request in progress is the new one closed at once. Idle sockets therefore
  cannot lock a client out: an attacker must open ``max_connections`` sockets in the time a
  real client takes to send its head to push that client out, and the client then retries on
  a fresh connection.
- Errors uvicorn answers in plain text (a malformed request) are answered in eventhub's JSON
  shape (``api/errors.http1_error``).
- ``POST /events`` is served by the ingest endpoint directly, without the ASGI stack
  (``api/_direct.py``), when the app offers it (``direct_ingest``); every limit above applies
  to it as to any request, since it is decided only once the head has passed them.

Keep-alive, flow control and pipelining stay uvicorn's: this class only observes the parser
callbacks and calls up. On the hot path (a head that arrives in one read) it adds a few
attribute updates and no timer; the header timer is armed once per connection and again only
for a head that spans reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from eventhub import errors
from eventhub.api import _direct
from eventhub.api import errors as api_errors

log = logging.getLogger(__name__)

# How long, and how many bytes, a refused connection drains the client's bytes before it closes.
LINGER = 2.0
LINGER_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    header_timeout: float
    max_header_bytes: int
    max_connections: int


class Connections:
    """The open connections of one server, and which may be closed to admit a new one.

    ``_idle`` holds the connections with no request in progress, in the order they became
    idle (dicts keep insertion order), so the first one is the one idle the longest."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._open: set[LimitedProtocol] = set()
        self._idle: dict[LimitedProtocol, None] = {}
        self._quiet_until = 0.0

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, conn: LimitedProtocol) -> bool:
        """Count ``conn`` in, closing the longest-idle connection if at the cap; False if every
        open connection has a request in progress (then ``conn`` must be closed)."""
        if len(self._open) >= self.cap:
            now = time.monotonic()
            if now >= self._quiet_until:
                # An operator should know the cap is reached, but not once per connection.
                self._quiet_until = now + 60.0
                log.warning(
                    "max_connections (%d) reached: closing idle connections for new ones, or"
                    " new ones when none is idle (next notice in 60 s at most)",
                    self.cap,
                )
            victim = next(iter(self._idle), None)
            if victim is None:
                return False
            self.forget(victim)
            victim.evict()
        self._open.add(conn)
        self._idle[conn] = None
        return True

    def idle(self, conn: LimitedProtocol) -> None:
        if conn in self._open:
            self._idle.pop(conn, None)
            self._idle[conn] = None

    def busy(self, conn: LimitedProtocol) -> None:
        self._idle.pop(conn, None)

    def forget(self, conn: LimitedProtocol) -> None:
        self._open.discard(conn)
        self._idle.pop(conn, None)


class LimitedProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection under ``Limits``. Use ``protocol_class`` to get a class bound
    to one server's limits and connection registry."""

    limits: ClassVar[Limits]
    registry: ClassVar[Connections]

    # Per-connection state, on top of uvicorn's.
    _header_timer: asyncio.TimerHandle | None = None
    _linger_timer: asyncio.TimerHandle | None = None
    _head_started = False  # between on_message_begin and on_headers_complete
    _in_body = False  # between on_headers_complete and on_message_complete
    _heads = 0  # request heads completed on this connection
    _header_bytes = 0  # bytes of the current head, counted from whole reads
    _read_bytes = 0  # size of the read being parsed
    _refused = False  # an error answer was sent or is due: ignore further bytes
    _drained = 0  # bytes ignored since
    _direct_ingest: _direct.Direct | None = None  # how POST /events is served without ASGI
    _waiting: _direct.DirectCycle | None = None  # a POST /events whose body is in this read
    _idle_since: float | None = None  # loop time the last answer left nothing in progress
    _keepalive_timer: asyncio.TimerHandle | None = None  # see "keep-alive" below

    # -- connection ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.registry.admit(self):
            # Every connection has a request in progress: the newcomer is the one refused.
            self._refused = True
            transport.close()
            return
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._head_timeout)
        direct = getattr(self.config.app, "direct_ingest", None)
        # The ASGI way wherever the direct one would differ from it (api/_direct.py).
        if not self.root_path and self.limit_concurrency is None:
            self._direct_ingest = direct

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.forget(self)
        self._cancel_timers()
        super().connection_lost(exc)

    def evict(self) -> None:
        """Close this idle connection to admit a newer one."""
        self._refused = True
        self.transport.close()

    # -- keep-alive -----------------------------------------------------------------------------
    # uvicorn cancels its keep-alive timer as each request's bytes arrive and arms a new one
    # as each answer completes: a libuv timer made and cancelled a request (~2 µs, a few % of
    # a single-event ingest). Here a connection has one timer, armed when it becomes idle if
    # none is pending; the bytes of a request only mark it busy, and the timer, when it fires,
    # closes the connection if it has been idle ``timeout_keep_alive`` seconds, else waits
    # out the rest (busy: the answer that ends the request arms it again).

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None

    def on_response_complete(self) -> None:
        """uvicorn's, with the keep-alive timer above."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        # Nothing more in progress: idle from now on.
        self._idle_since = self.loop.time()
        if self._keepalive_timer is None:
            self._keepalive_timer = self.loop.call_later(
                self.timeout_keep_alive, self._keepalive_due
            )
        self.registry.idle(self)

    def _keepalive_due(self) -> None:
        self._keepalive_timer = None
        since = self._idle_since
        if since is None:
            return
        left = since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self._keepalive_timer = self.loop.call_later(left, self._keepalive_due)
        else:
            self.timeout_keep_alive_handler()

    # -- reading -------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """uvicorn's ``data_received``, with the head counted and errors answered in JSON."""
        if self._refused:
            # Answered already: drain (a lingering close), but not without end.
            self._drained += len(data)
            if self._drained > LINGER_BYTES:
                self.transport.close()
            return
        idle_since = self._idle_since
        self._unset_keepalive_if_required()
        in_body, heads = self._in_body, self._heads
        self._read_bytes = len(data)
        try:
            try:
                self.parser.feed_data(data)
            finally:
                # Before any error is answered: a cycle started is one _answer waits for.
                self._start_waiting()
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, errors.EventHubError):
                self._answer(exc.__context__)
                return
            self._answer(errors.InvalidRequest(f"malformed HTTP request: {exc}"))
            return
        except httptools.HttpParserError as exc:
            self._answer(errors.InvalidRequest(f"malformed HTTP request: {exc}"))
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if not self._head_started:
            if idle_since is not None and heads == self._heads:
                # Blank lines between requests (RFC 9112 §2.2) start no head, so no
                # header_timeout watches them: the connection is still idle since its last
                # answer, and its keep-alive timer (still pending) must close it on time.
                self._idle_since = idle_since
            return
        # A head is still incomplete. If this read neither finished a body nor a head, every
        # byte of it belongs to that head; otherwise the split is unknown and the read is not
        # counted (at most one read per head escapes the count; on_headers_complete checks the
        # parsed head anyway).
        if not in_body and heads == self._heads:
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._answer(self._too_large())
                return
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.limits.header_timeout, self._head_timeout
            )

    def on_message_begin(self) -> None:
        self._head_started = True
        self._header_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._head_started = False
        self._in_body = True
        self._heads += 1
        self._cancel_header_timer()
        limit = self.limits.max_header_bytes
        # Cheap test first: only a head that may be too large is measured.
        if self._header_bytes + self._read_bytes > limit and self._head_size() > limit:
            # Raised through httptools; data_received answers it.
            raise self._too_large()
        # Only now is a request in progress: a head still arriving may be evicted at the cap.
        self.registry.busy(self)
        if self._direct_ingest is not None and self.parser.get_method() == b"POST":
            query = _direct.query_of(self.url)
            if query is not None and not self.parser.should_upgrade():
                self._start_direct(self._direct_ingest, query)
                return
        super().on_headers_complete()

    def _start_direct(self, direct: _direct.Direct, query: bytes) -> None:
        """uvicorn's ``on_headers_complete`` for ``POST /events``, with a ``DirectCycle``:
        the same scope, keep-alive and pipelining."""
        http_version = self.parser.get_http_version()
        scope = self.scope
        scope["method"] = "POST"
        if http_version != "1.1":
            scope["http_version"] = http_version
        scope["path"] = "/events"
        scope["raw_path"] = b"/events"
        scope["query_string"] = query
        existing_cycle = self.cycle
        cycle = self.cycle = _direct.DirectCycle(
            scope=scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=http_version != "1.0" and self.parser.should_keep_alive(),
            on_response=self.on_response_complete,
        )
        cycle.direct = direct
        cycle.launch = self._start_asgi_task
        if existing_cycle is None or existing_cycle.response_complete:
            if self.expect_100_continue:
                self._start_asgi_task(cycle, self.app)
            else:
                # Served by on_message_complete if the body completes in this read (no task),
                # else started as a task once the read is parsed (data_received).
                self._waiting = cycle
        else:
            # Pipelined: queued as uvicorn queues its own cycles.
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()
        cycle = self._waiting
        if cycle is not None:
            self._waiting = None
            if not cycle.serve_now():
                self._start_asgi_task(cycle, self.app)

    def _start_waiting(self) -> None:
        """A ``POST /events`` whose body did not complete in the read that brought its head
        runs as uvicorn runs a cycle: a task that reads the rest."""
        cycle = self._waiting
        if cycle is not None:
            self._waiting = None
            self._start_asgi_task(cycle, self.app)

    # -- answers -------------------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own callers of this (none on this path today) get the JSON shape too.
        self._answer(errors.InvalidRequest(msg))

    def _head_size(self) -> int:
        """The parsed head's size, as near the bytes on the wire as the parser lets us see."""
        size = len(self.url) + 16  # method, spaces, version, line ends
        for name, value in self.headers:
            size += len(name) + len(value) + 4
        return size

    def _too_large(self) -> errors.HeadersTooLarge:
        return errors.HeadersTooLarge(
            f"the request line and headers exceed {self.limits.max_header_bytes} bytes"
            " (max_header_bytes)"
        )

    def _head_timeout(self) -> None:
        self._header_timer = None
        self._answer(
            errors.RequestTimeout(
                f"the request line and headers did not arrive within"
                f" {self.limits.header_timeout:g} s (header_timeout)"
            )
        )

    def _unsupported_upgrade_warning(self) -> None:
        # uvicorn warns twice for every request that names an Upgrade: any client could flood
        # the log with them. No route speaks WebSocket; the request is served as plain HTTP.
        self.logger.debug("an Upgrade request, served as plain HTTP")

    def _answer(self, exc: errors.EventHubError) -> None:
        """Answer ``exc`` and close, unless a response to an earlier request is still being
        written: then that response ends the connection, and nothing is interleaved with it."""
        self._refused = True
        self._cancel_header_timer()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        self.transport.write(api_errors.http1_error(exc, self.server_state.default_headers))
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # Lingering close: closing with the client's bytes unread would send a reset, and the
        # client's kernel would drop our answer unread. Half-close instead, keep reading (and
        # discarding) until the client closes, LINGER seconds or LINGER_BYTES at most.
        self.transport.write_eof()
        self._linger_timer = self.loop.call_later(LINGER, self.transport.close)

    def _cancel_timers(self) -> None:
        self._cancel_header_timer()
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None


def protocol_class(limits: Limits) -> type[LimitedProtocol]:
    """A protocol class for one server: its limits, and one registry of its connections shared
    by every connection it accepts (uvicorn instantiates the class once per connection)."""

    class BoundProtocol(LimitedProtocol):
        pass

    BoundProtocol.limits = limits
    BoundProtocol.registry = Connections(limits.max_connections)
    return BoundProtocol
