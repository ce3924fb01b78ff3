"""A real eventhub served from a thread, for synchronous clients such as Hypothesis tests
(which cannot share the test's event loop), and a one-shot HTTP/1.1 client with a timeout."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from eventhub import app as app_module
from eventhub.settings import Settings


@contextmanager
def threaded_server(settings: Settings) -> Iterator[int]:
    """Serve ``settings`` on 127.0.0.1 in a thread; yields the port, stops the server after."""
    server = uvicorn.Server(
        uvicorn.Config(
            app_module.build(settings),
            host="127.0.0.1",
            port=settings.port,
            lifespan="on",
            log_level="critical",
        )
    )
    thread = threading.Thread(target=server.run, name="threaded-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        assert thread.is_alive(), "server thread died while starting"
        time.sleep(0.01)
    try:
        yield settings.port
    finally:
        server.should_exit = True
        thread.join(10)


def call(
    port: int,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """One request on a fresh connection; a server that hangs fails it after ``timeout``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
