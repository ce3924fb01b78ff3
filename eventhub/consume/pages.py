"""Trigger pages shared by the consumers of one trigger (the supervisors, today).

When an event is appended, every subscription of its trigger wakes and reads the page after
its cursor. In a fan-out those cursors are mostly equal, so 10,000 supervisors would run the
same query 10,000 times (~12% of the hub's CPU in a fan-out): they share the first answer.

A page of a trigger changes only when an event of that trigger is appended (the log only
grows, and its trigger index only gains rows), so a trigger's pages are dropped on every
commit that appended to it, before its supervisors are woken. A read that was in flight
while such a commit landed is not kept: each trigger has a generation, and a page is cached
only if the generation did not move during its read. The cache holds at most ``max_events``
events (an empty page counts as one), and no page of more than a quarter of that; the least
recently used pages go first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from eventhub.events import StoredEvent
from eventhub.log.base import TriggerIndex

# ~1-2 KB an event: a few MB. A fan-out needs one page; drifting cursors need a few more.
MAX_EVENTS = 4096

_Key = tuple[int, int, int]  # (trigger, after offset, limit)


class Pages:
    def __init__(self, store: TriggerIndex, max_events: int = MAX_EVENTS) -> None:
        self._store = store
        self._max = max_events
        self._pages: OrderedDict[_Key, tuple[StoredEvent, ...]] = OrderedDict()
        self._by_trigger: dict[int, set[_Key]] = {}
        self._generation: dict[int, int] = {}
        self._held = 0

    @property
    def held(self) -> int:
        return self._held

    async def read(self, tid: int, after: int, limit: int) -> Sequence[StoredEvent]:
        """Up to ``limit`` events of trigger ``tid`` after offset ``after``, in offset order.
        Shared with other readers: never mutate what this returns."""
        key = (tid, after, limit)
        page = self._pages.get(key)
        if page is not None:
            self._pages.move_to_end(key)
            return page
        generation = self._generation.get(tid, 0)
        page = tuple(await self._store.read_trigger_after(tid, after, limit))
        unchanged = self._generation.get(tid, 0) == generation
        if unchanged and key not in self._pages and len(page) < self._max // 4:
            self._keep(key, page)
        return page

    def appended(self, tids: Iterable[int]) -> None:
        """Events of these triggers were committed: their cached pages may be short."""
        for tid in tids:
            self._generation[tid] = self._generation.get(tid, 0) + 1
            for key in self._by_trigger.pop(tid, ()):
                self._held -= 1 + len(self._pages.pop(key))

    def _keep(self, key: _Key, page: tuple[StoredEvent, ...]) -> None:
        self._pages[key] = page
        self._by_trigger.setdefault(key[0], set()).add(key)
        self._held += 1 + len(page)
        while self._held > self._max:
            old, dropped = self._pages.popitem(last=False)
            self._held -= 1 + len(dropped)
            keys = self._by_trigger[old[0]]
            keys.discard(old)
            if not keys:
                del self._by_trigger[old[0]]
