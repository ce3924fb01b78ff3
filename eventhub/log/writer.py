"""Group commit: many concurrent requests, one writer, one commit for all of them.

Requests hand their validated rows to ``submit`` and wait. The writer flushes whatever has
queued as soon as it is free (no timer: a timer stalls at moderate load, see PERF-NOTES.md),
then resolves every request whose rows that commit holds. The flush is a coroutine: the
store writes its rows on the event loop (a thread hand-off per row or per batch of rows costs
more than it saves, PERF-NOTES.md: 16.6k vs 12.8k req/s) and awaits only the commit, so what
arrives meanwhile queues up for the next flush.

A flush that fails is retried one submission at a time, so one bad submission does not fail
the others that shared its commit; except when the storage itself failed (``errors.
InsufficientStorage``, a full disk): that is no submission's fault, and N more commits would
only fail N more times, so every submission of the flush gets the error at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from eventhub import errors, tasks

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

_GATHER_PASSES = 4


class WriterClosed(RuntimeError):
    pass


class GroupCommitWriter(Generic[T, R]):
    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[list[R]]],
        name: str = "group-commit",
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        self._flush = flush
        self._observe = observe  # (writes, seconds) of each commit that succeeded: metrics
        self._name = name
        self._queue: list[tuple[T, asyncio.Future[R] | None]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: tasks.Watched | None = None

    def start(self, owner: tasks.Tasks | None = None) -> None:
        """Start the writer task, watched by ``owner`` (the hub's) or a private one."""
        self._task = (owner or tasks.Tasks()).watch(self._name, self._run)

    async def submit(self, item: T) -> R:
        return await self.queue(item)

    def queue(self, item: T) -> asyncio.Future[R]:
        """``submit`` without its coroutine: queue ``item`` for the next flush and return the
        future that flush resolves (its result, or its error) once committed. For a caller in
        a plain callback (api/_direct.py), which reads the result from a done-callback."""
        if self._closing:
            raise WriterClosed("the log is shutting down")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._wake.set()
        return future

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
            await self._task.wait()

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
            try:
                await self._commit(pending)
            except BaseException as exc:
                # Not expected (a failed flush is handled in _commit), but nobody may be left
                # waiting forever: fail them, and let the watcher restart the task.
                _fail(pending, exc if isinstance(exc, Exception) else WriterClosed("stopped"))
                raise

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
        started = time.perf_counter()
        try:
            results = await self._flush([item for item, _ in pending])
        except errors.InsufficientStorage as exc:
            log.warning("group commit of %d submissions failed: %s", len(pending), exc)
            _fail(pending, exc)
            return
        except Exception:
            log.exception(
                "group commit of %d submissions failed; retrying one by one", len(pending)
            )
            await self._commit_each(pending)
            return
        if self._observe is not None:
            self._observe(len(pending), time.perf_counter() - started)
        for (_, future), result in zip(pending, results, strict=True):
            if future is not None and not future.done():  # its request may have gone
                future.set_result(result)

    async def _commit_each(self, pending: list[tuple[T, asyncio.Future[R] | None]]) -> None:
        """One failing submission must not fail the others that shared its commit."""
        for i, (item, future) in enumerate(pending):
            try:
                (result,) = await self._flush([item])
            except errors.InsufficientStorage as exc:
                _fail(pending[i:], exc)  # the rest would fail the same way
                return
            except Exception as exc:
                if future is None:
                    log.error("a queued write failed", exc_info=exc)
                elif not future.done():
                    future.set_exception(exc)
            else:
                if future is not None and not future.done():
                    future.set_result(result)


def _fail(pending: list[tuple[T, asyncio.Future[R] | None]], exc: Exception) -> None:
    dropped = 0
    for _, future in pending:
        if future is None:
            dropped += 1
        elif not future.done():
            future.set_exception(exc)
    if dropped:
        # Queued writes have nobody waiting; theirs are the writes whose loss is harmless
        # (``enqueue``): a delivery cursor not advanced only re-delivers.
        log.warning("%d queued writes dropped: %s", dropped, exc)
