"""The HTTP layer's own cost: uvicorn's ``HttpToolsProtocol`` against eventhub's
``LimitedProtocol`` (api/_protocol.py: header timeout and size cap, connection registry), in one
process, on the same keep-alive request bytes, with a trivial ASGI app and a transport that
drops what it is given. No sockets and no other process: what differs is only the protocol's
Python, so the figure holds on a busy machine, where the ingest benchmark's throughput varies
by ±20%. Process CPU time, rounds alternating between the two.

    .venv/bin/python bench/protocol.py --rounds 25 --requests 20000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# This checkout's eventhub, not an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from eventhub.api import _protocol

# A binary-mode ingest request as bench/ingest.py sends it, ~0.8 KB of data.
REQUEST = (
    b"POST /events HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer "
    + b"k" * 32
    + b"\r\nce-specversion: 1.0\r\nce-id: 0123456789abcdef\r\nce-source: /uipath/orchestrator"
    + b"\r\nce-type: job.completed\r\nContent-Type: application/json\r\nContent-Length: 800"
    + b"\r\n\r\n"
    + b"x" * 800
)


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


class NullTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        addresses = {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}
        return addresses.get(name, default)

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def per_request_us(cls: type[HttpToolsProtocol], requests: int) -> float:
    config = uvicorn.Config(app, log_level="warning")
    config.load()
    protocol = cls(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(NullTransport())
    start = time.process_time()
    for _ in range(requests):
        protocol.data_received(REQUEST)
        # Two turns of the loop: the app's task runs, answers, and the next request may come.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    elapsed = time.process_time() - start
    protocol.connection_lost(None)
    return elapsed / requests * 1e6


async def measure(rounds: int, requests: int) -> None:
    limited = _protocol.protocol_class(_protocol.Limits(10.0, 65536, 2048))
    figures: dict[str, list[float]] = {"uvicorn": [], "eventhub": []}
    for _ in range(rounds):
        figures["uvicorn"].append(await per_request_us(HttpToolsProtocol, requests))
        figures["eventhub"].append(await per_request_us(limited, requests))
    base, ours = (statistics.median(figures[k]) for k in ("uvicorn", "eventhub"))
    print(f"uvicorn HttpToolsProtocol  {base:6.2f} µs/request (median of {rounds})")
    print(f"eventhub LimitedProtocol   {ours:6.2f} µs/request")
    print(f"added                      {ours - base:6.2f} µs/request")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    uvloop.run(measure(args.rounds, args.requests))


if __name__ == "__main__":
    main()
