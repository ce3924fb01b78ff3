"""The process engine (SPEC §6.2): definitions, the instances they start, their steps.

Three kinds of work, each owned and watched (``eventhub.tasks``):

- **Starting**: per definition, a cursor consumer (``eventhub.consume``) of its start trigger.
  Each page's new instances and the cursor past them are one commit, so an event starts one
  instance, also across a crash. Events that name an instance (``cxpinstanceid``) do not
  start one (seed 000), nor do the hub's own instance lifecycle events (no loops).
- **Running**: a task per *Running* instance carries out its steps one at a time and ends
  when the instance sleeps or finishes. A call step is sent like a delivery (the shared
  sender: egress rules, per-owner share, the retry policy), signed with the definition's
  secret, with a ``ce-id`` stable per (instance, step): a crash repeats it identically.
  A wait step takes a buffered event or puts the instance to sleep; a sleeping (*Waiting*)
  instance is a row and nothing else: no task, no timer.
- **Waking and timing out**: the store correlates an ingested event that names an instance
  inside the commit that appends it (``eventhub.log.sqlite.instances.correlate_appended``) and
  tells the engine which instances it woke (``on_instances``): each gets a task again. One
  timer task sleeps until the earliest timeout or buffer expiry (an index lookup) and lets
  the store time out and unroute what is due.

Every change of an instance is a compare-and-set in the store, so a cancel, a wake, the
timer and a running task can race and the first commit wins; the others find the instance
moved and stop.

**Several processes** (PostgreSQL, SPEC §9): instances are spread over partitions
(``partitions.py``), leased to one process at a time like subscriptions (``leases``: on
SQLite ``Local``, everything). A process drives only the instances of the partitions it
holds, runs only the start consumers of definitions whose id falls in them, and the timer
only while it holds partition 0. Losing a partition stops those tasks before the lease is
handed back (the release goes through the group commit, after their queued writes), so
another process never drives an instance at the same time; gaining one reads its Running
instances from the database (a call that was in flight on a dead holder is sent again, with
the same ``ce-id``). A commit on another process that makes an instance Running or sets a
due time reaches this one as ``nudged``; definitions saved or deleted elsewhere are
reloaded (``changed_elsewhere``), and a version this process never loaded is read from the
store when an instance needs it. Their start filters do not wait for that: the first append
after the save, on any process, puts them in the match index (``refresh_starts``).

The parts, each a module and a layer of ``Engine`` (each calls only those below it):
``core`` (the shared state), ``timer``, ``runner`` (instances and their steps),
``starting`` (definitions and their start consumers), ``ownership`` (partitions, reloads);
the runner reads a definition (``_version``) through a declaration in ``core``.
"""

from __future__ import annotations

import asyncio

from eventhub.processes import ownership, partitions, runner, starting

# Task names: /readyz shows these ids only to an admin (Hub.health).
RUNNER_PREFIX = runner.RUNNER_PREFIX
STARTER_PREFIX = starting.STARTER_PREFIX
RELOAD_TASK = "process-definitions"


class Engine(ownership.Ownership):
    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        store = self._store
        current, versions = await store.load_definitions()
        for version in versions:
            self._versions[(version.id, version.version)] = version
        self._listening = True  # from here on, a commit's wake-ups drive instances
        for stored in current:
            self._install(stored)
        self._reloader = self._tasks.watch(RELOAD_TASK, self._reload_loop)
        # The first share is claimed (and ``_changed`` told) before this returns; ``Local``
        # tells nothing: what it holds (everything) is taken up here.
        await self._leases.start(self._tasks, self._changed, self._idle)
        held = {p for p in partitions.ALL if self._leases.holds(partitions.lease_id(p))}
        await self._gain(held - self._active)

    async def stop(self) -> None:
        self._closed = True
        self._listening = False
        running = [w for _, w in self._starters.values()] + list(self._runners.values())
        for side in (self._timer, self._reloader):
            if side is not None:
                running.append(side)
        await asyncio.gather(*(w.stop() for w in running), *self._halting)
        await self._leases.stop()  # after the runners: nobody else drives them before
