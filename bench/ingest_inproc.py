"""Single-event ingest's CPU a request, in one process: eventhub's own protocol and app with
a real SQLite store, fed the bytes of binary-mode requests on 64 connections whose transports
keep what they are given, against the bare Starlette endpoint (bench/bare_app.py) under
uvicorn's protocol on the same bytes. No sockets, no load generator: what differs between
the modes is only the server's Python, so the figures hold on a busy machine, where
bench/ingest.py's rates swing by ±25%. Process CPU time (the commit thread's included),
modes alternating round by round, in reverse order every other round.

Modes: ``bare`` (the ceiling), ``direct`` (``POST /events`` answered by the protocol,
api/_direct.py), ``asgi`` (the same hub with the direct path off: uvicorn's cycle and the
ASGI app, as before issue 13).

    PYTHONPATH=. .venv/bin/python bench/ingest_inproc.py --rounds 7 --batches 300
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bench import bare_app
from bench.protocol import NullTransport
from eventhub import app as app_module
from eventhub import server as eventhub_server
from eventhub.settings import Settings

KEY = "bench-admin-key-0123456789abcdef"
CONNECTIONS = 64
DATA = b'{"job": "' + b"x" * 780 + b'"}'


def request(n: int, mode: str) -> bytes:
    """A binary-mode event as bench/ingest.py sends it (~0.8 KB of JSON data)."""
    return (
        b"POST /events HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer "
        + KEY.encode()
        + b"\r\nce-specversion: 1.0\r\nce-id: "
        + f"{mode}-{n}".encode()
        + b"\r\nce-source: /uipath/orchestrator\r\nce-type: job.completed"
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(DATA)).encode()
        + b"\r\n\r\n"
        + DATA
    )


class Answers:
    """Counts the answers written on every connection; wakes the driver at a target."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.statuses: dict[bytes, int] = {}
        self.done = asyncio.Event()

    def seen(self, data: bytes) -> None:
        if data.startswith(b"HTTP/1.1 "):
            status = data[9:12]
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.count += 1
            if self.count >= self.target:
                self.done.set()


class Transport(NullTransport):
    """``protocol.py``'s in-memory transport, keeping the status of what is written."""

    def __init__(self, answers: Answers) -> None:
        super().__init__()
        self._answers = answers

    def write(self, data: Any) -> None:
        self._answers.seen(bytes(data[:12]))


async def per_request_us(
    cls: type[HttpToolsProtocol], config: uvicorn.Config, mode: str, batches: int, first: int
) -> float:
    """``batches`` times: one request on each of the 64 connections, then wait for all 64
    answers (so a flush holds up to 64 events, as with wrk's 64 connections)."""
    answers = Answers()
    state = ServerState()
    conns = []
    for _ in range(CONNECTIONS):
        protocol = cls(config=config, server_state=state, app_state={})
        protocol.connection_made(Transport(answers))
        conns.append(protocol)
    payloads = [
        [request(first + b * CONNECTIONS + i, mode) for i in range(CONNECTIONS)]
        for b in range(batches)
    ]
    start = time.process_time()
    for batch in payloads:
        answers.target += CONNECTIONS
        answers.done.clear()
        for protocol, payload in zip(conns, batch, strict=True):
            protocol.data_received(payload)
        await answers.done.wait()
    elapsed = time.process_time() - start
    for protocol in conns:
        protocol.connection_lost(None)
    wanted = b"204" if mode == "bare" else b"200"
    assert answers.statuses == {wanted: batches * CONNECTIONS}, answers.statuses
    return elapsed / (batches * CONNECTIONS) * 1e6


async def measure(rounds: int, batches: int, modes: list[str]) -> None:
    folder = Path(tempfile.mkdtemp(prefix="eventhub-inproc-"))
    settings = Settings(host="127.0.0.1", port=8080, data=folder / "eventhub.db", admin_key=KEY)
    app = app_module.build(settings)
    hub = app.state.hub
    await hub.start()
    eventhub_server.tune_gc()  # as ``eventhub serve`` does once the hub has started
    hub_config = eventhub_server.config(app, settings, log_level="warning")
    hub_config.load()
    hub_cls = hub_config.http
    assert isinstance(hub_cls, type)
    bare_config = uvicorn.Config(bare_app.app, log_level="warning")
    bare_config.load()
    direct = app.direct_ingest  # type: ignore[attr-defined]
    figures: dict[str, list[float]] = {mode: [] for mode in modes}
    first = 0
    try:
        for round_ in range(rounds):
            # Every other round in reverse: what runs first in a round gains nothing.
            for mode in list(figures)[:: 1 if round_ % 2 == 0 else -1]:
                if mode == "bare":
                    cls, config = HttpToolsProtocol, bare_config
                else:
                    # The protocol reads the app's direct path as a connection opens.
                    app.direct_ingest = direct if mode == "direct" else None  # type: ignore[attr-defined]
                    cls, config = hub_cls, hub_config
                figures[mode].append(await per_request_us(cls, config, mode, batches, first))
                first += batches * CONNECTIONS
    finally:
        app.direct_ingest = direct  # type: ignore[attr-defined]
        await hub.stop()
    medians = {mode: statistics.median(values) for mode, values in figures.items()}
    for mode, values in figures.items():
        spread = f"{min(values):.1f} to {max(values):.1f}"
        print(f"{mode:7s} {medians[mode]:7.1f} µs/request (median of {rounds}; {spread})")
    if "direct" in figures and "asgi" in figures:
        # Each round's pair ran back to back: their ratio holds better than the medians do
        # when the machine's load moves between rounds.
        paired = [a / d for d, a in zip(figures["direct"], figures["asgi"], strict=True)]
        rounds_text = " ".join(f"{r:.2f}" for r in paired)
        print(
            f"asgi/direct, round by round: {rounds_text} (median {statistics.median(paired):.3f})"
        )
    for mode in ("direct", "asgi") if "bare" in medians else ():
        if mode not in medians:
            continue
        print(
            f"bare/{mode} (CPU ratio, the throughput ratio at one core): "
            f"{medians['bare'] / medians[mode]:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--modes", default="bare,direct,asgi", help="comma-separated")
    args = parser.parse_args()
    uvloop.run(measure(args.rounds, args.batches, args.modes.split(",")))


if __name__ == "__main__":
    main()
