"""A receiver for process call steps: it can hold every call at its door until the test
opens the gate (a call "in flight" for as long as the test needs, without a real-time
stall), and answer with a body (a call's JSON answer becomes the instance's variables)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from aiohttp import web

from tests.e2e.receiver import Receiver, Seen


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"


class CallReceiver(Receiver):
    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()  # open unless a test closes it
        self.entered: list[Seen] = []  # every call that reached the door, held or not
        self._came = asyncio.Event()
        self.answers: deque[Answer] = deque()  # answered in turn; then ``default``

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(dict(request.headers), await request.read())
        self.entered.append(seen)
        self._came.set()
        await self.gate.wait()
        if not self.answers:
            return await self._answer_default(seen)
        answer = self.answers.popleft()
        self.seen.append(seen)
        self.arrived.set()
        return web.Response(
            status=answer.status, body=answer.body, content_type=answer.content_type
        )

    async def _answer_default(self, seen: Seen) -> web.StreamResponse:
        act = self.script.popleft() if self.script else self.default
        self.seen.append(seen)
        self.arrived.set()
        return web.Response(status=act.status, headers=act.headers)

    async def until_entered(self, n: int, timeout: float = 10.0) -> list[Seen]:
        """Until ``n`` calls reached the door (answered or held at the gate)."""
        async with asyncio.timeout(timeout):
            while len(self.entered) < n:
                self._came.clear()
                await self._came.wait()
        return self.entered
