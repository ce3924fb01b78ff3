"""The process engine's definitions (SPEC §6.2): saving, deleting and reloading them, and
the instances they start.

Per definition, a cursor consumer (``eventhub.consume``) of its start trigger: a published
model's trigger, or the definition's own filters in the match index (a private trigger
``process/<id>``). Each page's new instances and the cursor past them are one commit, so an
event starts one instance, also across a crash. Events that name an instance
(``cxpinstanceid``) do not start one (seed 000), nor do the hub's own instance lifecycle
events (no loops)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

from eventhub import auth, errors, notifications, traces
from eventhub.clock import rfc3339
from eventhub.consume.consumer import Consumer, Outcome, Result
from eventhub.consume.permit import Permit
from eventhub.delivery import signing
from eventhub.events import StoredEvent
from eventhub.processes import core, definitions, lifecycle, partitions, runner, starts
from eventhub.processes.definitions import Definition, Stored
from eventhub.processes.instances import (
    Instance,
    State,
    instance_named,
)

STARTER_PREFIX = "process-start-"  # task names: /readyz shows these ids only to an admin


class Starting(runner.Runner):
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

    async def refresh_starts(self) -> None:
        """Inside an append that found the catalogue version moved (PostgreSQL: the hub's
        ``reload_matcher``; a definition saved or deleted on any process moves it): put in
        force in the match index every definition's start as the database holds it, before
        the flush matches anything. So a definition starts instances from every event
        appended after its save committed, whichever process appends it; the rest of the
        change (the copy, the start consumer) follows by ``changed_elsewhere``.

        One read (each definition's version and start trigger); the bodies only when a
        version not known here changed. Not under ``_lock``: a ``put`` holding it may be
        waiting for this very flush."""
        current = await self._store.definition_starts()
        behind = self._starts.behind(current)
        if any((i, v) not in self._versions for i, (v, _) in behind.items()):
            _, versions = await self._store.load_definitions()
            for each in versions:
                self._versions.setdefault((each.id, each.version), each)
        for definition_id, (version, tid) in behind.items():
            found = self._versions.get((definition_id, version))
            if found is not None:  # (versions are never deleted: always found)
                self._starts.put(definition_id, version, tid, found.start.filters)
        for definition_id, version in self._starts.gone(current).items():
            self._starts.deleted(definition_id, version)

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
            self._starts.deleted(definition_id, stored.definition.version)
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
            return await self._store.ensure_trigger(starts.PRIVATE_MODEL + definition.id, "start")
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
        self._starts.put(
            definition.id, definition.version, stored.start_tid, definition.start.filters
        )
        self._by_tid.setdefault(stored.start_tid, set()).add(definition.id)
        self._start_consumer(stored)

    def _start_consumer(self, stored: Stored) -> None:
        definition = stored.definition
        if self._closed or definition.id in self._starters or not self._holds(definition.id):
            return
        consumer = Consumer(
            stored.start_tid,
            self._pages,
            Permit(self._permits, self._shares, core.OWNER),
            self._clock,
            position=lambda: stored.cursor,
            handle=lambda page: self._start_page(stored, page),
            commit=lambda page: None,  # the handler commits (MOVED): instances and cursor
            page_size=core.START_PAGE,
            read_ahead=core.START_PAGE,
        )
        task = self._tasks.watch(STARTER_PREFIX + definition.id, consumer.run)
        self._starters[definition.id] = (consumer, task)

    async def _uninstall(self, stored: Stored, keep_index: bool) -> None:
        definition_id = stored.definition.id
        found = self._starters.pop(definition_id, None)
        if found is not None:
            await found[1].stop()
        self._by_tid.get(stored.start_tid, set()).discard(definition_id)
        if not keep_index:
            self._starts.take_out(definition_id, stored.definition.version)

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


def _own_instance_event(event: StoredEvent) -> bool:
    return event.source == notifications.SOURCE and str(
        event.attributes.get("type", "")
    ).startswith(lifecycle.TYPE_PREFIX)
