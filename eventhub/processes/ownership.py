"""The process engine across several processes (PostgreSQL, SPEC §9): instances are spread
over partitions (``partitions.py``), leased to one process at a time like subscriptions
(``leases``: on SQLite ``Local``, everything).

A process drives only the instances of the partitions it holds, runs only the start
consumers of definitions whose id falls in them, and the timer only while it holds partition
0. Losing a partition stops those tasks before the lease is handed back (the release goes
through the group commit, after their queued writes), so another process never drives an
instance at the same time; gaining one reads its Running instances from the database (a call
that was in flight on a dead holder is sent again, with the same ``ce-id``). A commit on
another process that makes an instance Running or sets a due time reaches this one as
``nudged``; a cancel committed there stops the instance's task here
(``cancelled_elsewhere``); definitions saved or deleted elsewhere are reloaded
(``changed_elsewhere``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Set as AbstractSet

from eventhub import tasks
from eventhub.processes import partitions, starting, timer

log = logging.getLogger(__name__)


class Ownership(starting.Starting):
    async def _changed(self, gained: AbstractSet[str], lost: AbstractSet[str]) -> None:
        """The lease task's word: stop what was lost first (before the release commits),
        then take up what was gained."""
        await self._lose({int(p) for p in lost})
        await self._gain({int(p) for p in gained})

    def _idle(self, held: AbstractSet[str]) -> set[str]:
        """Of the ``held`` partitions (lease ids), those with no instance task here: releasing
        one abandons no call in flight (a task runs while its instance has a step to make or a
        call to retry; a waiting instance has none). The start consumers and the timer resume
        from the database without repeating a call."""
        busy = {partitions.lease_id(partitions.partition_of(i)) for i in self._runners}
        return {p for p in held if p not in busy}

    async def _gain(self, gained: set[int]) -> None:
        """Take up ``gained``; if the database fails meanwhile, the reload task tries again
        (the lease task tells a gain once)."""
        try:
            await self._take_up(gained)
        except Exception:
            log.warning("taking up %d instance partitions failed; retrying", len(gained))
            self._regain |= gained
            self._reload_wake.set()

    async def _lose(self, lost: set[int]) -> None:
        if not lost:
            return
        self._active -= lost
        self._regain -= lost
        stopping: list[tasks.Watched] = []
        for definition_id in [d for d in self._starters if partitions.partition_of(d) in lost]:
            stopping.append(self._starters.pop(definition_id)[1])
        for instance_id in [i for i in self._runners if partitions.partition_of(i) in lost]:
            stopping.append(self._runners.pop(instance_id))
            self._again.discard(instance_id)
            self._fresh.pop(instance_id, None)
        if partitions.TIMER_PARTITION in lost and self._timer is not None:
            stopping.append(self._timer)
            self._timer = None
        await asyncio.gather(*(w.stop() for w in stopping))

    async def _take_up(self, gained: set[int]) -> None:
        """Start what runs in ``gained``: the start consumers (from the cursors in the
        database: the previous holder moved them), the Running instances, the timer."""
        if not gained or self._closed:
            return
        self._active |= gained
        async with self._lock:
            await self._reload_definitions(None, gained)
        for stored in list(self.definitions.values()):
            if partitions.partition_of(stored.definition.id) in gained:
                self._start_consumer(stored)
        for instance in await self._store.running_instances():
            if partitions.partition_of(instance.id) in gained:
                self._drive(instance.id)
        if partitions.TIMER_PARTITION in gained and self._timer is None and not self._closed:
            self._planned = None
            self._timer = self._tasks.watch(timer.TIMER_TASK, self._timer_loop)

    def nudged(self, ids: set[str], due: float | None) -> None:
        """Another process's commit made ``ids`` Running, or set a due time: drive those
        this process holds (the others are their holders' business)."""
        if not self._listening:
            return
        for instance_id in ids:
            self._drive(instance_id)
        if due is not None:
            self._due(due)

    def cancelled_elsewhere(self, ids: set[str]) -> None:
        """Another process's commit cancelled ``ids``: stop the tasks this process runs for
        them now (a call in flight is abandoned, no retry follows), as a cancel made here
        does; without this they would run on until their next compare-and-set."""
        for instance_id in ids:
            runner = self._runners.pop(instance_id, None)
            self._again.discard(instance_id)
            self._fresh.pop(instance_id, None)
            if runner is not None:
                halting = asyncio.ensure_future(runner.stop())
                self._halting.add(halting)
                halting.add_done_callback(self._halting.discard)

    def changed_elsewhere(self, definition_id: str | None) -> None:
        """Another process saved or deleted ``definition_id`` (None: maybe any): reload."""
        if self._closed:
            return
        self._to_reload.add(definition_id)
        self._reload_wake.set()

    async def _reload_loop(self) -> None:
        while True:
            await self._reload_wake.wait()
            self._reload_wake.clear()
            ids, self._to_reload = self._to_reload, set()
            if ids:
                try:
                    async with self._lock:
                        await self._reload_definitions(None if None in ids else ids)
                except Exception:
                    # The database is away: the copies stay until the next change, or until
                    # a runner needs a version (``_version``) or a partition is gained.
                    log.warning("reloading %d process definitions failed", len(ids), exc_info=True)
            if self._regain:
                again, self._regain = set(self._regain), set()
                await self._clock.sleep(1.0)  # not in a tight loop while the database is away
                await self._gain(again & self._active)
