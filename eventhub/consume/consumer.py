"""The cursor consumer: read a trigger's events after a cursor, hand them to a handler one page
at a time, in offset order, and move the cursor only when the handler says the page is done.

A webhook subscription is a consumer whose handler renders, signs and sends
(``eventhub.delivery.supervisor``); a process engine waiting for events is one whose handler
correlates them. Both share what is written here once:

- **Wake-up**: ``wake()`` is called by the hub's on-commit for the consumer's trigger. A
  consumer with nothing to read waits on it, never on a poll. The event is cleared *before*
  each read, so a commit that lands during the read wakes the next wait.
- **Paging**: the events after the cursor are read ``read_ahead`` at a time through the
  trigger's shared ``Pages`` (a fan-out reads once for all), and handed out ``page_size`` at
  a time. The read-ahead lives in ``run``'s frame only: it is never kept across a restart.
- **Memory**: a consumer holds its ``Permit`` from before a read until its page is handled,
  so the pages in memory at once are bounded; it gives the permit back while it waits for a
  wake-up or a retry.
- **The handler's answer** (``handle(page)``):

  ``Outcome.COMMIT``  the page is done: the consumer calls ``commit(page)``, which moves the
                      cursor to ``page[-1].offset`` in memory (and writes it when it likes:
                      the supervisor queues the write without waiting for it).
  ``Outcome.MOVED``   the handler moved the cursor itself (a skipped page saved at once).
  ``Retry(delay)``    not now: the consumer sleeps ``delay`` seconds on the clock without its
                      permit, then hands the *same* page again.
  ``Outcome.STOP``    no more pages (the subscription failed, say): ``run`` returns with the
                      cursor where the handler left it.

- **The cursor** itself is the caller's (``position()`` reads it, in memory): the consumer
  never writes it, so a state kept beside it (a subscription's counters, an instance's
  progress) moves with it in the same ``commit``.

What a crash (an exception out of ``handle`` or ``commit``) or a stop (cancellation) means at
each point, given that the caller runs ``run`` under ``eventhub.tasks`` (restarted, after a
delay, from the in-memory cursor):

- while waiting for a permit, a read or a wake-up: nothing was handed out; the restart reads
  again from the cursor.
- inside ``handle``: the page was not committed; the restart hands it again (at least once).
  A handler whose side effect is not idempotent gives it a stable id (``webhook-id``).
- inside a retry's sleep: the same, with the retry count starting over.
- after ``commit`` moved the cursor in memory but before its write is durable: the restart
  goes on after the page (the in-memory cursor survives a task crash); only a crash of the
  *process* re-handles the page, from the cursor last written.

Order holds throughout: the next page is handed out only once the one before it has been
committed (or moved past), and every restart begins at the cursor. The permit is released on
every way out of ``run``.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from eventhub.clock import Clock
from eventhub.consume.pages import Pages
from eventhub.consume.permit import Permit
from eventhub.events import StoredEvent

# One-event-a-request handlers read this many events at a time: a query per page cost more
# than a webhook delivery's own rendering and signing.
READ_AHEAD = 10


class Outcome(enum.Enum):
    COMMIT = "commit"
    MOVED = "moved"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class Retry:
    """Hand the same page again after ``delay`` seconds, holding no permit meanwhile."""

    delay: float


Result = Outcome | Retry
# page -> what became of it
Handle = Callable[[Sequence[StoredEvent]], Awaitable[Result]]
# page -> move the cursor (in memory) to page[-1].offset; persisting it is the caller's choice
Commit = Callable[[Sequence[StoredEvent]], None]
# -> the cursor now: the offset after which the next page starts
Position = Callable[[], int]


class Consumer:
    """One trigger, one cursor, one handler. ``run`` it as a watched task; ``wake`` it from
    the hub's on-commit for ``tid``."""

    def __init__(
        self,
        tid: int,
        pages: Pages,
        permit: Permit,
        clock: Clock,
        *,
        position: Position,
        handle: Handle,
        commit: Commit,
        page_size: int = 1,
        read_ahead: int = READ_AHEAD,
    ) -> None:
        self.tid = tid
        self._pages = pages
        self._permit = permit
        self._clock = clock
        self._position = position
        self._handle = handle
        self._commit = commit
        self._size = page_size
        self._read_ahead = max(page_size, read_ahead)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Events of the trigger were committed: read again."""
        self._wake.set()

    async def read(self, limit: int) -> Sequence[StoredEvent]:
        """Up to ``limit`` events after the cursor, outside the loop (a recovery probe)."""
        return await self._pages.read(self.tid, self._position(), limit)

    async def run(self) -> None:
        """Hand out pages until the handler answers ``STOP``; forever otherwise."""
        permit, wake, size, handle = self._permit, self._wake, self._size, self._handle
        ahead: Sequence[StoredEvent] = ()  # read after the cursor, not handed out yet
        try:
            while True:
                await permit.acquire()
                if not ahead:
                    wake.clear()  # before the read, so a commit during it is not missed
                    ahead = await self._pages.read(self.tid, self._position(), self._read_ahead)
                    if not ahead:
                        permit.release()
                        await wake.wait()
                        continue
                page, ahead = ahead[:size], ahead[size:]
                result = await handle(page)
                while isinstance(result, Retry):
                    permit.release()  # a backoff holds no permit: others go on meanwhile
                    await self._clock.sleep(result.delay)
                    await permit.acquire()
                    result = await handle(page)
                if result is Outcome.COMMIT:
                    self._commit(page)
                elif result is Outcome.STOP:
                    return
                elif self._position() != page[-1].offset:
                    ahead = ()  # moved elsewhere than past the page: what was read is stale
                permit.release()
        finally:
            permit.release()
