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
store when an instance needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from eventhub import auth, errors, notifications, tasks, traces
from eventhub.catalog.service import Catalog
from eventhub.clock import Clock, rfc3339
from eventhub.codec import jsontext
from eventhub.consume.consumer import Consumer, Outcome, Result
from eventhub.consume.pages import Pages
from eventhub.consume.permit import Permit
from eventhub.delivery import http1, policy, signing
from eventhub.delivery.leases import Leases, Local
from eventhub.delivery.owners import PerOwner
from eventhub.delivery.policy import RetryPolicy, Verdict
from eventhub.delivery.sender import Sender
from eventhub.events import StoredEvent
from eventhub.log.base import ProcessStore
from eventhub.processes import definitions, lifecycle, partitions
from eventhub.processes.definitions import Call, Definition, Stored, Wait
from eventhub.processes.instances import (
    CALLED,
    RETRYING,
    Advanced,
    Entry,
    Instance,
    Opened,
    State,
    Then,
    Woken,
    instance_named,
)

log = logging.getLogger(__name__)

# Task names: /readyz shows these ids only to an admin (Hub.health).
RUNNER_PREFIX = "instance-"
STARTER_PREFIX = "process-start-"
TIMER_TASK = "process-timer"
RELOAD_TASK = "process-definitions"
# A call's answer is read up to this many bytes for its variables; a longer one is taken as
# a success that sets none (said in the history).
MAX_ANSWER_BYTES = 1024 * 1024
START_PAGE = 100
EXPIRE_BATCH = 500
_START_PAGES = 16  # start pages in memory at once, over every definition
_OWNER = "processes"  # the start consumers' share of that budget
PRIVATE_MODEL = "process/"  # the match-index name of a definition's own start filters


class Engine:
    def __init__(
        self,
        store: ProcessStore,
        catalog: Catalog,
        sender: Sender,
        clock: Clock,
        retry: RetryPolicy,
        owner: tasks.Tasks,
        leases: Leases | None = None,
    ) -> None:
        self._leases: Leases = leases or Local()
        self._active: set[int] = set()  # the partitions whose work runs here
        self._to_reload: set[str | None] = set()  # definitions changed elsewhere (None: all)
        self._reload_wake = asyncio.Event()
        self._reloader: tasks.Watched | None = None
        self._regain: set[int] = set()  # partitions whose taking up failed: tried again
        self._store = store
        self._catalog = catalog
        self._sender = sender
        self._clock = clock
        self._retry = retry
        self._tasks = owner
        self.definitions: dict[str, Stored] = {}
        self._versions: dict[tuple[str, int], Definition] = {}
        self._signers: dict[str, signing.Signer] = {}
        self._targets: dict[tuple[str, int, int], http1.Target] = {}
        self._starters: dict[str, tuple[Consumer, tasks.Watched]] = {}
        self._by_tid: dict[int, set[str]] = {}
        self._runners: dict[str, tasks.Watched] = {}
        self._again: set[str] = set()  # woken while their task was still finishing
        self._fresh: dict[str, tuple[Instance, StoredEvent]] = {}  # handed over by a commit
        self._pages = Pages(store)
        self._permits = asyncio.Semaphore(_START_PAGES)
        self._shares = PerOwner(_START_PAGES)
        self._lock = asyncio.Lock()  # definition changes, one at a time
        self._timer: tasks.Watched | None = None
        self._timer_wake = asyncio.Event()
        self._planned: float | None = None  # when the timer means to wake next
        self._closed = False
        self._listening = False  # start() .. stop(): woken() drives instances

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
        await self._leases.start(self._tasks, self._changed)
        held = {p for p in partitions.ALL if self._leases.holds(partitions.lease_id(p))}
        await self._gain(held - self._active)

    async def stop(self) -> None:
        self._closed = True
        self._listening = False
        running = [w for _, w in self._starters.values()] + list(self._runners.values())
        for side in (self._timer, self._reloader):
            if side is not None:
                running.append(side)
        await asyncio.gather(*(w.stop() for w in running))
        await self._leases.stop()  # after the runners: nobody else drives them before

    # -- partitions (several processes: ``partitions.py``) -----------------------------------

    def _holds(self, key: str) -> bool:
        """Whether the instance (or definition start) ``key`` is driven by this process."""
        return partitions.partition_of(key) in self._active

    async def _changed(self, gained: AbstractSet[str], lost: AbstractSet[str]) -> None:
        """The lease task's word: stop what was lost first (before the release commits),
        then take up what was gained."""
        await self._lose({int(p) for p in lost})
        await self._gain({int(p) for p in gained})

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
            self._timer = self._tasks.watch(TIMER_TASK, self._timer_loop)

    def nudged(self, ids: set[str], due: float | None) -> None:
        """Another process's commit made ``ids`` Running, or set a due time: drive those
        this process holds (the others are their holders' business)."""
        if not self._listening:
            return
        for instance_id in ids:
            self._drive(instance_id)
        if due is not None:
            self._due(due)

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

    async def _reload_definitions(
        self, ids: AbstractSet[str | None] | None, cursors_of: AbstractSet[int] = frozenset()
    ) -> None:
        """Under ``_lock``: make the copies of ``ids`` (None: all) what the database holds,
        every version included; and take the stored cursors of definitions whose start
        falls in ``cursors_of`` (partitions being gained)."""
        current, versions = await self._store.load_definitions()
        for version in versions:
            self._versions.setdefault((version.id, version.version), version)
        fresh = {s.definition.id: s for s in current}
        wanted = set(fresh) | set(self.definitions) if ids is None else ids
        for definition_id in wanted:
            if definition_id is None:
                continue
            stored, previous = fresh.get(definition_id), self.definitions.get(definition_id)
            if stored is None:
                if previous is not None:
                    await self._uninstall(previous, keep_index=False)
                    del self.definitions[definition_id]
                    self._signers.pop(definition_id, None)
                continue
            if previous is not None and previous.definition.version == stored.definition.version:
                if partitions.partition_of(definition_id) in cursors_of:
                    previous.cursor = max(previous.cursor, stored.cursor)
                continue
            if previous is not None:
                await self._uninstall(previous, keep_index=previous.start_tid == stored.start_tid)
                stored.cursor = max(stored.cursor, previous.cursor)
            self._install(stored)

    async def _version(self, definition_id: str, version: int) -> Definition:
        """The definition an instance runs on; one saved on another process and not heard
        of yet (or whose secret is not here yet) is read from the store."""
        found = self._versions.get((definition_id, version))
        if found is None or definition_id not in self._signers:
            async with self._lock:
                # Looked at again: runners that queued here for one definition read it once.
                found = self._versions.get((definition_id, version))
                if found is None or definition_id not in self._signers:
                    await self._reload_definitions({definition_id})
                    found = self._versions.get((definition_id, version))
            if found is None:
                raise errors.NotFound(f"no version {version} of process {definition_id!r}")
        return found

    def on_commit(self, tids: Sequence[int]) -> None:
        """After a commit that appended events of these triggers: start consumers read on."""
        self._pages.appended(tids)
        for tid in tids:
            for definition_id in self._by_tid.get(tid, ()):
                found = self._starters.get(definition_id)
                if found is not None:  # else another process holds its partition
                    found[0].wake()

    def step_id(self, definition_id: str, version: int, index: int) -> str | None:
        found = self._versions.get((definition_id, version))
        return None if found is None else found.step_id(index)

    # -- definitions -------------------------------------------------------------------------

    async def put(
        self, definition_id: str, body: definitions.ProcessBody, who: auth.Principal
    ) -> tuple[Stored, bool]:
        """Create or replace a definition (a new version); True if it was created. Running
        instances go on with the version they started on."""
        definition = definitions.parse(definition_id, body, self._sender.rules)
        async with self._lock:
            previous = self.definitions.get(definition_id)
            definition = definitions.keep_masked(
                definition, None if previous is None else previous.definition
            )
            tid = await self._start_tid(definition)
            if previous is not None:
                await self._uninstall(previous, keep_index=previous.start_tid == tid)
            now = rfc3339(self._clock.now())
            if previous is not None and previous.start_tid == tid:
                cursor = previous.cursor
            else:
                cursor = await self._store.trigger_head(tid)
            stored = Stored(
                definition,
                who.key_id,
                previous.secret if previous is not None else signing.new_secret(),
                tid,
                cursor,
                previous.created_at if previous is not None else now,
                now,
            )
            try:
                version, stored.cursor = await self._store.save_definition(stored)
            except BaseException:
                if previous is not None:
                    self._install(previous)
                raise
            stored.definition = dataclasses.replace(definition, version=version)
            self._versions[(definition_id, version)] = stored.definition
            self._install(stored)
            return stored, previous is None

    async def delete(self, definition_id: str, cancel_instances: bool) -> None:
        """Remove a definition; 409 while it has live instances, unless they are cancelled
        first (``cancel_instances``). Its instances stay readable."""
        async with self._lock:
            stored = self._definition(definition_id)
            await self._uninstall(stored, keep_index=True)  # no new instance from here on
            try:
                live = await self._store.live_instances(definition_id)
                if live and not cancel_instances:
                    raise errors.Conflict(
                        f"process {definition_id!r} has {len(live)} live instance(s); cancel"
                        " them first, or delete with ?cancelInstances=true"
                    )
                for instance_id in live:
                    with contextlib.suppress(errors.Conflict):  # it finished meanwhile
                        await self.cancel(instance_id, "its process definition was deleted")
                await self._store.delete_definition(definition_id)
            except BaseException:
                self._install(stored)
                raise
            if stored.definition.start.filters is not None:
                self._catalog.index.remove(stored.start_tid)
            del self.definitions[definition_id]
            self._signers.pop(definition_id, None)

    def get(self, definition_id: str) -> Stored:
        return self._definition(definition_id)

    def _definition(self, definition_id: str) -> Stored:
        stored = self.definitions.get(definition_id)
        if stored is None:
            raise errors.NotFound(f"no process definition {definition_id!r}")
        return stored

    async def _start_tid(self, definition: Definition) -> int:
        start = definition.start
        if start.filters is not None:
            return await self._store.ensure_trigger(PRIVATE_MODEL + definition.id, "start")
        assert start.km is not None and start.trigger is not None
        try:
            _, tid = self._catalog.trigger(start.km, start.trigger)
        except errors.NotFound as exc:
            raise errors.InvalidRequest(f"start: {exc.message}") from None
        return tid

    def _install(self, stored: Stored) -> None:
        """Adopt ``stored``: its start filters in the match index, its start consumer on
        (where this process holds the partition of its id)."""
        definition = stored.definition
        self.definitions[definition.id] = stored
        self._versions.setdefault((definition.id, definition.version), definition)
        self._signers[definition.id] = signing.Signer(stored.secret)
        if definition.start.filters is not None:
            self._catalog.index.add(stored.start_tid, list(definition.start.filters))
        self._by_tid.setdefault(stored.start_tid, set()).add(definition.id)
        self._start_consumer(stored)

    def _start_consumer(self, stored: Stored) -> None:
        definition = stored.definition
        if self._closed or definition.id in self._starters or not self._holds(definition.id):
            return
        consumer = Consumer(
            stored.start_tid,
            self._pages,
            Permit(self._permits, self._shares, _OWNER),
            self._clock,
            position=lambda: stored.cursor,
            handle=lambda page: self._start_page(stored, page),
            commit=lambda page: None,  # the handler commits (MOVED): instances and cursor
            page_size=START_PAGE,
            read_ahead=START_PAGE,
        )
        task = self._tasks.watch(STARTER_PREFIX + definition.id, consumer.run)
        self._starters[definition.id] = (consumer, task)

    async def _uninstall(self, stored: Stored, keep_index: bool) -> None:
        definition_id = stored.definition.id
        found = self._starters.pop(definition_id, None)
        if found is not None:
            await found[1].stop()
        self._by_tid.get(stored.start_tid, set()).discard(definition_id)
        if not keep_index and stored.definition.start.filters is not None:
            self._catalog.index.remove(stored.start_tid)

    async def _start_page(self, stored: Stored, page: Sequence[StoredEvent]) -> Result:
        """The start consumer's handler: an instance per event that may start one, and the
        cursor past the page, in one commit."""
        definition = stored.definition
        now = self._clock.now()
        text = rfc3339(now)
        started: list[tuple[Instance, str | None]] = []
        causes: dict[str, StoredEvent] = {}
        for event in page:
            if instance_named(event.attributes) is not None or _own_instance_event(event):
                continue
            instance = Instance(
                id=secrets.token_hex(8),
                definition_id=definition.id,
                version=definition.version,
                state=State.RUNNING,
                step=0,
                variables=traces.flat_properties(event.kind, event.data),
                buffer_for=definition.buffer_seconds,
                started_by={"source": event.source, "id": event.id, "offset": event.offset},
                last_offset=event.offset,
                created_at=text,
                updated_at=text,
            )
            started.append((instance, definition.step_id(0)))
            causes[instance.id] = event
        last = page[-1].offset

        def settled(write: asyncio.Future[list[str]]) -> None:
            # Also when this consumer was stopped meanwhile (a definition update): what the
            # write started must run, and the cursor must not be read stale.
            if write.cancelled() or write.exception() is not None:
                return
            stored.cursor = max(stored.cursor, last)
            fresh = {i.id: i for i, _ in started}
            for instance_id in write.result():
                self._drive(instance_id, (fresh[instance_id], causes[instance_id]))

        write = asyncio.ensure_future(self._store.start_instances(definition.id, last, started))
        write.add_done_callback(settled)
        await asyncio.shield(write)
        return Outcome.MOVED

    # -- instances ---------------------------------------------------------------------------

    async def cancel(self, instance_id: str, reason: str = "cancelled") -> Instance:
        """Running or Waiting -> Cancelled; 404 if there is no such instance, 409 if it has
        finished. A call in flight is abandoned (its receiver may still have it)."""
        runner = self._runners.get(instance_id)
        self._fresh.pop(instance_id, None)
        if runner is not None:
            await runner.stop()
            if self._runners.get(instance_id) is runner:
                del self._runners[instance_id]
        ended = await self._store.finish_instance(
            instance_id, (State.RUNNING, State.WAITING), State.CANCELLED, reason
        )
        if ended is None:
            found = await self._store.get_instance(instance_id)
            if found is None:
                raise errors.NotFound(f"no instance {instance_id!r}")
            raise errors.Conflict(f"instance {instance_id} is {found.state}: nothing to cancel")
        log.info("instance %s cancelled: %s", instance_id, reason)
        return ended

    def woken(self, woken: list[Woken], earliest: float | None) -> None:
        """The store's word after a commit (its ``on_instances`` hook, through the hub): these
        instances woke (as they are now, with the event that woke them); something is
        buffered until ``earliest``. Ignored before ``start`` (which drives every running
        instance it reads) and after ``stop``."""
        if not self._listening:
            return
        for found in woken:
            self._drive(found.instance.id, (found.instance, found.cause))
        if earliest is not None:
            self._due(earliest)

    def _drive(self, instance_id: str, fresh: tuple[Instance, StoredEvent] | None = None) -> None:
        """Make sure a task carries ``instance_id`` on (it is Running); ``fresh``: the instance
        as just committed and its cause, so the task need not read them back."""
        if self._closed or not self._holds(instance_id):
            return  # another process's (``_gain`` there reads it from the database)
        if instance_id in self._runners:
            self._again.add(instance_id)  # it may be on its way out: it looks again first
            return
        if fresh is not None:
            self._fresh[instance_id] = fresh
        self._runners[instance_id] = self._tasks.watch(
            RUNNER_PREFIX + instance_id, lambda: self._run(instance_id)
        )

    async def _run(self, instance_id: str) -> None:
        """The task of one Running instance (restarted from the stored state after a crash,
        so a call in flight then is sent again, with the same ``ce-id``)."""
        while True:
            self._again.discard(instance_id)
            # What the commit that made it Running handed over, only the first time: after a
            # crash or a second look, the stored state.
            fresh = self._fresh.pop(instance_id, None)
            if fresh is None:
                instance, cause = await self._store.load_instance(instance_id), None
            else:
                instance, cause = fresh
            if instance is not None and instance.state is State.RUNNING:
                await self._steps(instance, cause)
            if instance_id not in self._again:
                # No await between the look and the leaving: a wake after this starts a task.
                self._runners.pop(instance_id, None)
                return

    async def _steps(self, instance: Instance, cause: StoredEvent | None) -> None:
        """Carry ``instance`` on until it sleeps, finishes, or was moved by someone else.
        ``cause``: the event at ``instance.last_offset``, if at hand."""
        store = self._store
        while True:
            definition = await self._version(instance.definition_id, instance.version)
            if instance.step >= len(definition.steps):
                await store.finish_instance(
                    instance.id, (State.RUNNING,), State.COMPLETED, step=instance.step
                )
                return
            step = definition.steps[instance.step]
            if isinstance(step.action, Call):
                if cause is None or cause.offset != instance.last_offset:
                    cause = await store.read_event(instance.last_offset)
                advanced = await self._call(instance, definition, step.action, cause)
                if advanced is None or not advanced.moved or advanced.completed:
                    return
                opened = advanced.opened
                if opened is None:  # the next step is a call, or a wait the store did not open
                    continue
            else:
                assert isinstance(step.action, Wait)
                opened = await store.open_wait(
                    instance.id, instance.step, step.action.type, step.action.timeout
                )
                if opened is None:
                    return  # cancelled meanwhile
            if not self._past_wait(instance, definition, opened):
                return  # asleep: a row, no task

    def _past_wait(self, instance: Instance, definition: Definition, opened: Opened) -> bool:
        """After the store opened the wait at ``instance.step``: True if a buffered event
        took the instance past it (``instance`` follows), False if it sleeps."""
        if opened.offset is None:
            action = definition.steps[instance.step].action
            assert isinstance(action, Wait)
            if action.timeout is not None:
                self._due(self._clock.now() + action.timeout)
            return False
        instance.step += 1
        instance.variables = opened.variables
        instance.last_offset = opened.offset
        return True

    async def _call(
        self, instance: Instance, definition: Definition, call: Call, cause: StoredEvent | None
    ) -> Advanced | None:
        """One call step, retried per the delivery policy. On success the instance moves on,
        and, in the same commit, completes or opens its next wait when that is what follows
        (``instance`` follows to the step after the call). None when the retries ran out
        (Failed) or someone else moved the instance."""
        store, clock = self._store, self._clock
        index = instance.step
        step_id = definition.steps[index].id
        stored = self.definitions.get(definition.id)
        owner = stored.owner if stored is not None else _OWNER
        target = self._target(definition, index, call)
        retry = 0
        while True:
            now = clock.now()
            headers, body = lifecycle.render_call(
                instance.id, definition.id, step_id, index, instance.variables, cause, now
            )
            message_id = lifecycle.call_id(instance.id, index)
            headers.update(self._signer(definition.id).headers(message_id, now, body))
            answer = await self._sender.post(target, headers, body, owner, MAX_ANSWER_BYTES)
            verdict = policy.classify(answer.status, answer.refused)
            if verdict is Verdict.SUCCESS:
                variables, detail = _answered(instance.variables, answer.status, answer.body)
                entry = Entry(rfc3339(clock.now()), step_id, CALLED, detail=detail)
                advanced = await store.advance_instance(
                    instance.id, index, variables, [entry], _then(definition, index + 1)
                )
                if advanced.moved:
                    instance.step += 1
                    instance.variables = variables
                return advanced
            error = answer.error or "call failed"
            if retry < self._retry.max_retries:
                retry += 1
                await store.note_instance(
                    instance.id, [Entry(rfc3339(clock.now()), step_id, RETRYING, detail=error)]
                )
                retry_after = policy.parse_retry_after(answer.retry_after, clock.now())
                await clock.sleep(policy.retry_delay(self._retry, retry, retry_after))
                continue
            ended = await store.finish_instance(
                instance.id,
                (State.RUNNING,),
                State.FAILED,
                f"step {step_id}: {error} (after {retry + 1} attempts)",
                step=index,
            )
            if ended is not None:
                log.warning("instance %s failed at step %s: %s", instance.id, step_id, error)
            return None

    def _target(self, definition: Definition, index: int, call: Call) -> http1.Target:
        key = (definition.id, definition.version, index)
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = self._sender.target(call.uri, call.headers)
        return target

    def _signer(self, definition_id: str) -> signing.Signer:
        signer = self._signers.get(definition_id)
        if signer is None:
            # A definition deleted with its instances cancelled: a straggler's last call
            # cannot be signed with a secret that is gone.
            raise errors.NotFound(f"process definition {definition_id!r} was deleted")
        return signer

    # -- the timer ---------------------------------------------------------------------------

    def _due(self, when: float) -> None:
        """Something falls due at ``when``: wake the timer if that is before its plan."""
        if self._planned is None or when < self._planned:
            self._planned = when
            self._timer_wake.set()

    async def _timer_loop(self) -> None:
        store, clock = self._store, self._clock
        while True:
            self._timer_wake.clear()
            while await store.expire_instances(EXPIRE_BATCH) >= EXPIRE_BATCH:
                pass
            due = await store.next_due()
            if self._timer_wake.is_set():
                continue  # something earlier came while we looked
            self._planned = due
            if due is None:
                await self._timer_wake.wait()
                continue
            delay = due - clock.now()
            if delay > 0:
                await _first(clock.sleep(delay), self._timer_wake.wait())


def _then(definition: Definition, index: int) -> Then | None:
    """What the store may do in a call's own commit after it: complete the instance past its
    last step, or open the wait that follows. A call that follows needs this task."""
    if index >= len(definition.steps):
        return Then(complete=True)
    action = definition.steps[index].action
    if isinstance(action, Wait):
        return Then(wait_type=action.type, timeout=action.timeout)
    return None


def _own_instance_event(event: StoredEvent) -> bool:
    return event.source == notifications.SOURCE and str(
        event.attributes.get("type", "")
    ).startswith(lifecycle.TYPE_PREFIX)


def _answered(
    variables: dict[str, Any], status: int | None, body: bytes | None
) -> tuple[dict[str, Any], str]:
    """The variables after a call's 2xx answer (a JSON object's members merge in), and the
    history's word on it."""
    detail = f"HTTP {status}"
    if body is None:
        return variables, f"{detail}; the answer was over {MAX_ANSWER_BYTES} bytes, not read"
    if not body.strip():
        return variables, detail
    try:
        value = jsontext.loads(body)
    except (errors.InvalidJson, RecursionError):
        return variables, f"{detail}; the answer is not JSON, no variables taken"
    if not isinstance(value, dict):
        return variables, f"{detail}; the answer is not a JSON object, no variables taken"
    return {**variables, **value}, f"{detail}; {len(value)} variable(s) set"


async def _first(*waits: Any) -> None:
    """Until the first of ``waits`` (coroutines) returns; the others are cancelled."""
    pending = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
