"""Run the app under uvicorn (uvloop + httptools). uvicorn owns the signals: on SIGTERM or
SIGINT it stops accepting, lets in-flight requests finish, then the lifespan closes the hub
(the writer flushes what is queued, the database is checkpointed and closed)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from eventhub import app as app_module
from eventhub.api import _fds, _protocol
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
    Server(config(app_module.build(settings), settings)).run()
