"""Run the app under uvicorn (uvloop + httptools). uvicorn owns the signals: on SIGTERM or
SIGINT it stops accepting, lets in-flight requests finish, then the lifespan closes the hub
(the writer flushes what is queued, the database is checkpointed and closed)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from eventhub import app as app_module
from eventhub import errors
from eventhub.api import _fds, _protocol
from eventhub.hub import Hub
from eventhub.ops import logs
from eventhub.settings import Settings


class Server(uvicorn.Server):
    """uvicorn, with two changes. uvicorn re-raises a caught SIGTERM after its graceful
    shutdown, so the process would die of the signal (exit status 143) even though it shut
    down cleanly: a clean shutdown exits 0. And a shutdown first ends the long polls
    (``GET /events?wait=``), which would otherwise hold it for up to their 30 seconds."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = getattr(self.config.app, "state", None)
        hub = getattr(state, "hub", None)
        if hub is not None:
            hub.head.close()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def config(app: ASGIApp, settings: Settings, log_level: str | None = None) -> uvicorn.Config:
    """The one uvicorn configuration every hub runs with, ``eventhub serve`` and the test
    suite's alike: uvloop, httptools under the connection limits of SPEC §8, no access log."""
    limits = _protocol.Limits(
        header_timeout=settings.header_timeout,
        max_header_bytes=settings.max_header_bytes,
        max_connections=_fds.fit_connections(
            settings.max_connections, settings.delivery_connections
        ),
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=_protocol.protocol_class(limits),
        # No route upgrades; without this a websocket upgrade would leave our protocol.
        ws="none",
        lifespan="on",
        access_log=False,  # ops/logs.py writes the access line, cheaper (app.py)
        # uvicorn's own lines go through the root logger, so they take log_format too.
        log_config=None,
        log_level=(log_level or settings.log_level).lower(),
        # uvicorn annotates int, but only hands it to loop.call_later: a float is fine.
        timeout_keep_alive=settings.keepalive_timeout,  # type: ignore[arg-type]
        timeout_graceful_shutdown=30,
        backlog=4096,
    )


def run(settings: Settings) -> None:
    # Everything this process creates is its user's alone (SPEC §8). The store makes its
    # own files private explicitly (eventhub/files.py) whatever the umask; this covers what
    # it does not name: SQLite's temporary and journal files, and any file a later feature
    # writes without going through files.py.
    os.umask(0o077)
    logs.configure(settings.log_format, settings.log_level)
    check_address(settings.host, settings.port)
    app = app_module.build(settings)
    server = Server(config(app, settings))
    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        runner.run(_serve(server, app.state.hub))


async def _serve(server: Server, hub: Hub) -> None:
    """Start the hub, then serve. The lifespan would start it too (and does in the tests), but
    there a refusal (a catalogue file, a database) becomes uvicorn's traceback and exit
    status 3; started here first, it propagates to ``eventhub serve``, which prints it as one
    line. The lifespan still stops the hub, after the server's graceful shutdown.

    SIGTERM or SIGINT while the hub starts (a long migration) lets the start finish, then
    stops the hub without serving, as uvicorn does for a signal during its lifespan start."""
    with server.capture_signals():
        await hub.start()
    if server.should_exit:
        await hub.stop()
        return
    tune_gc()
    await server.serve()


# The first generation's threshold while serving (CPython's default is 700).
GC_THRESHOLD = 10_000


def tune_gc() -> None:
    """Collect the first generation after 10,000 net container allocations, not 700.

    Under load the requests in flight hold a thousand or so containers (frames, dicts,
    events): at 700 the collector ran every ~66 requests and scanned them all each time,
    5-7 µs of CPU a single-event request (bench/README.md, issue 13), and about every
    hundredth pass was a full collection of the hub's heap (20-30 ms in the request path).
    What a request allocates is freed by reference counting when it ends; only cycles
    wait for the collector, and 10,000 of them are a few MB at most."""
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, second, third)


def check_address(host: str, port: int) -> None:
    """Refuse, naming the settings, an address the server could not listen on (taken, not
    this machine's, not resolvable), before the database is touched. uvicorn would find out
    only after the hub started, and say so in its own log lines with exit status 3. The
    probe binds as asyncio's ``create_server`` will (``SO_REUSEADDR``, IPv6 only on IPv6)
    and lets go at once; a port taken in between still fails, in uvicorn's words."""
    where = f"settings 'host' and 'port': cannot listen on {host}:{port}"
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise errors.InvalidRequest(f"{where}: {getattr(exc, 'strerror', None) or exc}") from None
    for family, kind, proto, _, address in found:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise errors.InvalidRequest(f"{where}: {exc.strerror or exc}") from None
