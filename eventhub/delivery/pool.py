"""Keep-alive HTTP/1.1 connections per receiver origin, and the time limits of a request.

A request takes the most recently used idle connection of its origin (scheme, host, port) or
opens one (TLS for https, through the loop's own ssl support), writes the request, and waits
for the whole answer. A connection goes back to the pool only after a complete answer that
allows keep-alive; a timeout, an error or a cancellation drops it, since its state is unknown.
Nothing is retried here and redirects are not followed: each request is one delivery attempt.

A new connection goes only to an address the egress rules allow (``egress``): the host is
resolved here, every address checked, and the socket connected to a checked address itself,
never to the name again, so a second DNS answer (rebinding) cannot slip in between. TLS still
verifies the name, and the ``Host`` header still carries it.

Idle connections live at most ``keepalive`` seconds (aiohttp's default, 15 s, which delivery
used before) and at most ``max_idle`` of them are kept; a sweeper task closes the expired ones.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Mapping

from eventhub import tasks
from eventhub.delivery import egress, http1


def default_ssl_context() -> ssl.SSLContext:
    """Verify certificates and host names against the system's CAs (blocking: loads them)."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


_TICK = 0.001


class Pool:
    def __init__(
        self,
        connect_timeout: float,
        total_timeout: float,
        max_idle: int,
        keepalive: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
        rules: egress.Rules = egress.DEFAULT,
    ) -> None:
        self.rules = rules
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._max_idle = max_idle
        self._keepalive = keepalive
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[http1.Connection]] = {}
        self._idle_count = 0
        self._sweeper: tasks.Watched | None = None
        # The answers awaited now and when each expires, watched by one timer for all of them
        # (``_watch``), at most ``delivery_connections`` of them (the sender's gate).
        self._inflight: dict[asyncio.Future[http1.Answer], float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    async def start(self, owner: tasks.Tasks | None = None) -> None:
        """Load the CAs and start the sweeper, watched by ``owner`` (the hub's) or a private
        one."""
        if self._ssl is None:
            self._ssl = await asyncio.to_thread(default_ssl_context)
        self._sweeper = (owner or tasks.Tasks()).watch("delivery-pool-sweeper", self._sweep_forever)

    async def close(self) -> None:
        """Close the idle connections. Requests in flight belong to their tasks, which the hub
        cancels before this; a cancelled request drops its connection itself."""
        if self._sweeper is not None:
            await self._sweeper.stop()
            self._sweeper = None
        for stack in self._idle.values():
            for conn in stack:
                conn.close()
        self._idle.clear()
        self._idle_count = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def idle(self) -> int:
        return self._idle_count

    async def post(
        self, target: http1.Target, headers: Mapping[str, str], body: bytes, keep_body: int = 0
    ) -> http1.Answer:
        """One request and its whole answer within the total time limit; raises the errors
        listed in ``http1``, or ``egress.Refused``."""
        if target.error is not None:
            raise ValueError(target.error)
        request = http1.encode(target, headers, body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._total_timeout
        conn = self._take_idle(target.origin, loop.time())
        if conn is None:
            conn = await self._connect(target, deadline)
        try:
            waiter = conn.send(request, keep_body)
            self._inflight[waiter] = deadline
            if self._timer is None or deadline < self._timer_at:
                self._watch(loop, deadline)
            try:
                answer = await waiter
            finally:
                del self._inflight[waiter]
        except BaseException:
            conn.abort()
            raise
        if answer.keep_alive and not conn.closed:
            self._put_idle(target.origin, conn, loop.time())
        else:
            conn.close()
        return answer

    def _expire(self) -> None:
        """Fail the answers past their deadline, and set the timer for the next deadline.

        One timer for every request in flight instead of a ``call_at`` and a ``cancel`` per
        request (2.4 us of uvloop's a request, ~4% of a fan-out). Every request gets the same
        time limit, so a new request's deadline is rarely earlier than the timer's (only after
        a slow connect: it then moves the timer), and the timer, when it fires, looks through
        at most the sender's connections."""
        self._timer = None
        loop = asyncio.get_running_loop()
        # uvloop's timers tick in milliseconds and may fire a little early: a deadline within
        # the tick is due now, not a timer to set again at once.
        now = loop.time() + _TICK
        earliest: float | None = None
        for waiter, deadline in self._inflight.items():
            if waiter.done():
                continue
            if deadline <= now:
                waiter.set_exception(TimeoutError())
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._watch(loop, earliest)

    def _watch(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(deadline, self._expire)
        self._timer_at = deadline

    async def _connect(self, target: http1.Target, deadline: float) -> http1.Connection:
        loop = asyncio.get_running_loop()
        limit = min(self._connect_timeout, deadline - loop.time())
        context = None
        if target.scheme == "https":
            context = self._ssl if self._ssl is not None else default_ssl_context()
        async with asyncio.timeout(limit):
            addresses = egress.admit(await self._resolve(target.host, target.port), self.rules)
            error: OSError | None = None
            for address in addresses:  # in the resolver's order, as create_connection would
                try:
                    _, conn = await loop.create_connection(
                        http1.Connection,
                        address,
                        target.port,
                        ssl=context,
                        server_hostname=target.host if context is not None else None,
                    )
                except OSError as exc:
                    error = exc
                    continue
                return conn
        assert error is not None
        raise error

    @staticmethod
    async def _resolve(host: str, port: int) -> list[str]:
        """Every address of ``host``; an IP literal is its own (no resolver round trip)."""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return [host]
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        return [str(info[4][0]) for info in infos]

    # -- idle connections --------------------------------------------------------------------

    def _take_idle(self, origin: tuple[str, str, int], now: float) -> http1.Connection | None:
        stack = self._idle.get(origin)
        while stack:
            conn = stack.pop()
            self._idle_count -= 1
            if not conn.closed and now - conn.idle_since < self._keepalive:
                return conn
            conn.close()
        return None

    def _put_idle(self, origin: tuple[str, str, int], conn: http1.Connection, now: float) -> None:
        if self._idle_count >= self._max_idle:
            conn.close()
            return
        conn.idle_since = now
        stack = self._idle.get(origin)
        if stack is None:
            stack = self._idle[origin] = []
        stack.append(conn)  # last in, first out: the spare connections age out
        self._idle_count += 1

    def sweep(self, now: float) -> None:
        """Close idle connections that expired or that the receiver closed."""
        for origin in list(self._idle):
            stack = self._idle[origin]
            alive = []
            for conn in stack:
                if not conn.closed and now - conn.idle_since < self._keepalive:
                    alive.append(conn)
                else:
                    conn.close()
            self._idle_count -= len(stack) - len(alive)
            if alive:
                self._idle[origin] = alive
            else:
                del self._idle[origin]

    async def _sweep_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(1.0, self._keepalive / 3))
            self.sweep(loop.time())
