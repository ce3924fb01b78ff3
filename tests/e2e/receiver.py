"""A real webhook receiver on 127.0.0.1, scripted per request: answer a status (with headers),
stall past the sender's timeout, or reset the connection. Records every request it saw."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Seen:
    headers: dict[str, str]
    body: bytes


@dataclass
class Act:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 0.0  # seconds to wait before answering
    reset: bool = False  # close the connection without an answer


OK = Act()


def reset() -> Act:
    return Act(reset=True)


def status(code: int, **headers: str) -> Act:
    return Act(status=code, headers={k.replace("_", "-"): v for k, v in headers.items()})


class Receiver:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.script: deque[Act] = deque()
        self.default: Act = OK
        self.decide: Callable[[Seen], Act] | None = None
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        # A test may end while the hub is still calling (a process's next step): stopping
        # must not wait aiohttp's minute for a keep-alive connection to go quiet.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(dict(request.headers), await request.read())
        if self.script:
            act = self.script.popleft()
        elif self.decide is not None:
            act = self.decide(seen)
        else:
            act = self.default
        if act.reset:
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)  # never reaches the client
        if act.stall:
            await asyncio.sleep(act.stall)
        self.seen.append(seen)
        self.arrived.set()
        return web.Response(status=act.status, headers=act.headers)

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[Seen]:
        """Until ``n`` requests were answered (any status)."""
        async with asyncio.timeout(timeout):
            while len(self.seen) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return self.seen

    def json_bodies(self) -> list[Any]:
        import orjson

        return [orjson.loads(s.body) for s in self.seen]
