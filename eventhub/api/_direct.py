"""``POST /events`` answered at the HTTP protocol layer, without the ASGI stack.

A single-event ingest request is mostly fixed cost (bench/README.md, "issue 13"): under
uvicorn it went through ``ProxyHeadersMiddleware``, ``_App``, ``ServerErrorMiddleware`` and
two ASGI ``send`` messages, each a dict that uvicorn's ``RequestResponseCycle.send`` checks
header by header with regular expressions, and written to the socket in two writes. Here the
protocol (``api/_protocol.py``) recognises ``POST /events`` when its head completes and starts
a ``DirectCycle`` in place of uvicorn's cycle. The request is then served by the same
``ingest.Endpoint`` (auth, admission, body limits and deadline, validation, the commit, the
metrics), and a successful answer is written in one ``transport.write`` from bytes prepared
once per second (the ``date`` header). When the whole body came in the read that completed
the head, not even a task is started: the request is served from the protocol's callbacks
and answered from its commit's (``DirectCycle.serve_now``).

What stays uvicorn's, because ``DirectCycle`` *is* its cycle: the body buffered by the
protocol's ``on_body``, ``Expect: 100-continue`` (written on the first ``receive``),
pipelining (the protocol queues cycles and starts the next on ``on_response_complete``),
keep-alive, flow control, disconnects, and the exception aftermath of ``run_asgi``. Errors
(4xx, 5xx) are answered through the cycle's ASGI ``send``, exactly as before. The access
line is written as ``_App`` writes it (app.py).

Every other route, and ``POST /events`` in forms this path does not take (absolute-form
target, a ``root_path``, uvicorn's ``limit_concurrency``, an app in debug mode), goes to the
ASGI app as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

from eventhub.api import errors as api_errors
from eventhub.ops import logs

if TYPE_CHECKING:
    from eventhub.api.ingest import Endpoint, Pending

_JSON_HEAD = b"content-type: application/json\r\n"
_CLOSE = b"connection: close\r\n"


class Direct:
    """What a server's protocol needs to answer ``POST /events`` itself: the endpoint, and
    the app (for ``scope["app"]``, as ``_App._dispatch`` sets it)."""

    __slots__ = ("app", "endpoint")

    def __init__(self, endpoint: Endpoint, app: Any) -> None:
        self.endpoint = endpoint
        self.app = app


def query_of(url: bytes) -> bytes | None:
    """The query string of a request target that is exactly ``/events`` (with or without a
    query), or None for any other target: those go the ASGI way."""
    if url == b"/events":
        return b""
    if url.startswith(b"/events?") and b"#" not in url:
        return url[8:]
    return None


class _Heads:
    """The status line and the server's default headers (``server``, ``date``) as bytes.
    uvicorn replaces its ``default_headers`` list once a second (the date): the bytes are
    rebuilt when the list is another one."""

    __slots__ = ("_source", "empty", "ok")

    def __init__(self) -> None:
        self._source: object = None
        self.ok = b""
        self.empty = b""

    def refresh(self, defaults: list[tuple[bytes, bytes]]) -> None:
        if defaults is self._source:
            return
        common = b"".join(name + b": " + value + b"\r\n" for name, value in defaults)
        self.ok = STATUS_LINE[200] + common
        self.empty = STATUS_LINE[204] + common
        self._source = defaults


_HEADS = _Heads()

# Answers waiting for a slow client's transport to drain (``DirectCycle._committed``): held
# here, since the loop keeps only weak references to tasks.
_LATE: set[asyncio.Task[None]] = set()


class DirectCycle(RequestResponseCycle):
    """uvicorn's request/response cycle for one ``POST /events``, served by ``Direct``.

    Two ways. A request whose whole body came with its head (the common case) is served by
    ``serve_now`` from the protocol's ``on_message_complete``, with no task and no
    coroutine: ``Endpoint.begin`` queues its events for the group commit, and the commit
    future's done-callback writes the answer. Any other (a body still arriving, ``100
    Continue``, a pipelined request, an error) runs as uvicorn runs a cycle, in a task
    (``run_asgi``), through ``Endpoint.handle``, or ``Endpoint.refuse`` for an error found
    by ``serve_now``."""

    direct: Direct
    # Starts this cycle's task, as the protocol starts uvicorn's (tracked for shutdown).
    launch: Callable[[RequestResponseCycle, Any], None]
    _status: int | None = None
    _pending: Pending | None = None  # begun by serve_now

    async def run_asgi(self, app: Any) -> None:
        # uvicorn's wrapper (an unexpected error is logged, answered 500 if nothing was sent,
        # else the connection closed), around the endpoint instead of the ASGI app.
        await super().run_asgi(self._serve)  # type: ignore[arg-type]

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """What ``_App`` and ``ServerErrorMiddleware`` do for ``POST /events``: the access
        line, and an unexpected error answered by the app's handler for ``Exception``."""
        scope["app"] = self.direct.app
        logged = logs.ACCESS.isEnabledFor(logging.INFO)
        pending = self._pending
        started = time.perf_counter() if pending is None else pending.started
        try:
            if pending is not None:
                await self.direct.endpoint.refuse(pending, scope, receive, send)
            else:
                await self.direct.endpoint.handle(
                    scope, receive, send, self.answer, self.ready_body
                )
        except Exception as exc:
            if not self.response_started:
                handler = api_errors.HANDLERS[Exception]
                response = await handler(Request(scope), exc)
                await response(scope, receive, send)
            raise
        finally:
            if logged:
                logs.access(scope, self.status, time.perf_counter() - started)

    def serve_now(self) -> bool:
        """Serve this request from the protocol's callback, its body whole (the protocol's
        ``on_message_complete``): False when it must run as a task instead (``100
        Continue`` owed, or a store that cannot queue without a coroutine), or to answer an
        error found here (``refuse``, in the task: errors are rare and the ASGI answer of
        each is exact)."""
        endpoint = self.direct.endpoint
        if not endpoint.immediate:
            return False
        body = self.ready_body()
        if body is None:
            return False
        scope: Scope = self.scope  # type: ignore[assignment]  # uvicorn's TypedDict
        scope["app"] = self.direct.app
        pending = self._pending = endpoint.begin(scope, body)
        if pending.future is None:
            return False
        pending.future.add_done_callback(self._committed)
        return True

    def _committed(self, future: asyncio.Future[Any]) -> None:
        """The commit of a request begun by ``serve_now`` is done: its answer, or its error
        answered in a task (``refuse``). A client gone meanwhile gets nothing written, as
        ``answer`` writes nothing then; its slot is released all the same."""
        pending = self._pending
        assert pending is not None
        endpoint = self.direct.endpoint
        try:
            reply = endpoint.end(pending)
        except asyncio.CancelledError:
            endpoint.record(pending, "aborted")
            self._access(pending.started)
            self.transport.close()
            return
        except Exception as exc:
            pending.error = exc
            self.launch(self, None)
            return
        if self.flow.write_paused and not self.disconnected:
            # The client reads slowly: wait for the transport to drain, in a task (rare).
            task = asyncio.get_running_loop().create_task(self._answer_later(pending, reply))
            _LATE.add(task)
            task.add_done_callback(_LATE.discard)
            return
        self._write(reply)
        endpoint.record(pending, "ok")
        self._access(pending.started)

    async def _answer_later(self, pending: Pending, reply: bytes) -> None:
        outcome = "aborted"
        try:
            await self.answer(reply)
            outcome = "ok"
        finally:
            self.direct.endpoint.record(pending, outcome)
            self._access(pending.started)

    def _access(self, started: float) -> None:
        if logs.ACCESS.isEnabledFor(logging.INFO):
            scope: Scope = self.scope  # type: ignore[assignment]
            logs.access(scope, self.status, time.perf_counter() - started)

    @property
    def status(self) -> int | None:
        """The status sent (None: none was): for the access line."""
        return self._status

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            self._status = message["status"]
        await super().send(message)

    def ready_body(self) -> bytes | None:
        """The whole body when it has already arrived and nothing is owed before reading it
        (no ``100 Continue`` to write), else None: then ``receive`` reads it as before."""
        if self.more_body or self.waiting_for_100_continue or self.disconnected:
            return None
        body = bytes(self.body)
        self.body = bytearray()
        return body

    async def answer(self, body: bytes | None) -> None:
        """Write the success answer in one write: 200 with the JSON ``body``, or 204 when
        None. The same bytes as the ASGI way (``_asgi.send_json``/``send_empty`` through
        uvicorn): default headers, then the endpoint's, then ``connection: close`` when the
        connection is not kept alive."""
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        self._write(body)

    def _write(self, body: bytes | None) -> None:
        """``answer``'s write, once the transport takes it (nothing when the client is gone)."""
        if self.disconnected:
            return
        self.response_started = True
        self.waiting_for_100_continue = False
        _HEADS.refresh(self.default_headers)
        close = b"" if self.keep_alive else _CLOSE
        if body is None:
            self._status = 204
            self.transport.write(_HEADS.empty + close + b"\r\n")
        else:
            self._status = 200
            length = b"content-length: %d\r\n" % len(body)
            self.transport.write(_HEADS.ok + length + _JSON_HEAD + close + b"\r\n" + body)
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()
