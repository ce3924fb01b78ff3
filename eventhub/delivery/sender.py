"""The outbound HTTP edge: one shared aiohttp session for every subscription.

aiohttp, not httpx: PERF-NOTES.md measured httpx's pool at ~30x slower under concurrency.
Redirects are not followed: a 3xx is a failed delivery, like any other non-2xx.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None  # None: no answer (refused, reset, timed out)
    retry_after: str | None
    error: str | None
    latency_ms: float


class Sender:
    def __init__(self, connections: int, connect_timeout: float, total_timeout: float) -> None:
        self._connections = connections
        self._timeout = aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None
        # Requests wait for a connection here, not inside aiohttp: there every waiter already
        # holds a timeout timer and request objects, which made a fan-out to 10,000
        # subscriptions spend its time on bookkeeping.
        self._slots = asyncio.Semaphore(connections)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=0)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, auto_decompress=False
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, uri: str, headers: dict[str, str], body: bytes) -> Answer:
        assert self._session is not None, "sender is not started"
        async with self._slots:
            return await self._post(self._session, uri, headers, body)

    async def _post(
        self, session: aiohttp.ClientSession, uri: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        started = time.perf_counter()
        try:
            async with session.post(
                uri, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                return Answer(
                    response.status,
                    response.headers.get("Retry-After"),
                    None if response.status < 300 else f"HTTP {response.status}",
                    (time.perf_counter() - started) * 1000,
                )
        except TimeoutError:
            error = "timed out"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except (OSError, ValueError) as exc:  # e.g. an unusable callback URL
            error = f"{type(exc).__name__}: {exc}"
        return Answer(None, None, error, (time.perf_counter() - started) * 1000)
