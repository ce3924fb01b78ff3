"""Group commit: many concurrent requests, one writer, one commit for all of them.

Requests hand their validated rows to ``submit`` and wait. The writer flushes whatever has
queued as soon as it is free (no timer: a timer stalls at moderate load, see PERF-NOTES.md),
then resolves every request whose rows that commit holds. The flush is a coroutine: the
store writes its rows on the event loop (a thread hand-off per row or per batch of rows costs
more than it saves, PERF-NOTES.md: 16.6k vs 12.8k req/s) and awaits only the commit, so what
arrives meanwhile queues up for the next flush.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

_GATHER_PASSES = 4


class WriterClosed(RuntimeError):
    pass


class GroupCommitWriter(Generic[T, R]):
    def __init__(
        self, flush: Callable[[list[T]], Awaitable[list[R]]], name: str = "group-commit"
    ) -> None:
        self._flush = flush
        self._name = name
        self._queue: list[tuple[T, asyncio.Future[R] | None]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def submit(self, item: T) -> R:
        if self._closing:
            raise WriterClosed("the log is shutting down")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._wake.set()
        return await future

    def enqueue(self, item: T) -> None:
        """Queue ``item`` for the next flush without waiting for it (a failure is logged).
        For writes whose loss in a crash is harmless, like a delivery cursor moving forward:
        losing it re-delivers, it never skips."""
        if self._closing:
            raise WriterClosed("the log is shutting down")
        self._queue.append((item, None))
        self._wake.set()

    async def stop(self) -> None:
        """Flush what is queued, then end the writer task."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            await self._gather()
            pending, self._queue = self._queue, []
            await self._commit(pending)

    async def _gather(self) -> None:
        """Let the requests that are already runnable queue their rows first: yield to the
        loop until a pass adds nothing (a few passes at most, so a steady stream of arrivals
        cannot hold the commit back). No timer, so an idle hub commits at once."""
        queued = -1
        for _ in range(_GATHER_PASSES):
            if len(self._queue) == queued:
                return
            queued = len(self._queue)
            await asyncio.sleep(0)

    async def _commit(self, pending: list[tuple[T, asyncio.Future[R] | None]]) -> None:
        try:
            results = await self._flush([item for item, _ in pending])
        except Exception:
            log.exception(
                "group commit of %d submissions failed; retrying one by one", len(pending)
            )
            await self._commit_each(pending)
            return
        for (_, future), result in zip(pending, results, strict=True):
            if future is not None and not future.done():  # its request may have gone
                future.set_result(result)

    async def _commit_each(self, pending: list[tuple[T, asyncio.Future[R] | None]]) -> None:
        """One failing submission must not fail the others that shared its commit."""
        for item, future in pending:
            try:
                (result,) = await self._flush([item])
            except Exception as exc:
                if future is None:
                    log.error("a queued write failed", exc_info=exc)
                elif not future.done():
                    future.set_exception(exc)
            else:
                if future is not None and not future.done():
                    future.set_result(result)
