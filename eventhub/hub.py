"""The hub: one object that owns the store and the in-memory views built on it, created at
start-up and closed at shutdown. API handlers reach everything through it."""

from __future__ import annotations

import logging
import sys

from eventhub import auth, errors
from eventhub.clock import Clock, SystemClock, rfc3339
from eventhub.log.sqlite import SqliteStore
from eventhub.log.store import KeyRecord, SourceRecord, Store
from eventhub.settings import Settings

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, settings: Settings, clock: Clock | None = None, store: Store | None = None):
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.store: Store = store or SqliteStore(
            settings.data, self.clock, settings.synchronous, settings.checkpoint_interval
        )
        self.keyring = auth.Keyring(())
        self.sources: dict[str, SourceRecord] = {}
        self._ingests_in_flight = 0

    async def start(self) -> None:
        await self.store.open()
        self.keyring = auth.Keyring(await self.store.list_keys(), self.settings.admin_key)
        self.sources = {s.name: s for s in await self.store.list_sources()}
        if not self.keyring.has_admin():
            key = await self.create_key("admin", "admin", None)
            # Shown once, on the first start only: the store keeps just its hash.
            print(
                f"eventhub: created admin API key (shown once): {key}", file=sys.stdout, flush=True
            )

    async def stop(self) -> None:
        await self.store.close()

    def now_rfc3339(self) -> str:
        return rfc3339(self.clock.now())

    # -- admission control -------------------------------------------------------------------

    def enter_ingest(self) -> None:
        if self._ingests_in_flight >= self.settings.max_concurrent_ingests:
            raise errors.TooManyRequests(
                "too many concurrent ingest requests; retry later",
                self.settings.retry_after_seconds,
            )
        self._ingests_in_flight += 1

    def leave_ingest(self) -> None:
        self._ingests_in_flight -= 1

    # -- keys and sources --------------------------------------------------------------------

    async def create_key(self, name: str, role: str, sources: tuple[str, ...] | None) -> str:
        if role not in auth.ROLES:
            raise errors.InvalidRequest(f"role must be one of {', '.join(auth.ROLES)}")
        key_id, key = auth.new_key()
        record = KeyRecord(key_id, auth.hash_key(key), name, role, sources, self.now_rfc3339())
        await self.store.put_key(record)
        self.keyring.add(record)
        return key

    async def revoke_key(self, key_id: str) -> None:
        if not await self.store.revoke_key(key_id, self.now_rfc3339()):
            raise errors.NotFound(f"no live API key with id {key_id!r}")
        self.keyring.remove(key_id)

    async def put_source(self, name: str, secret: str, require_signature: bool) -> SourceRecord:
        previous = self.sources.get(name)
        record = SourceRecord(
            name, secret, require_signature, previous.created_at if previous else self.now_rfc3339()
        )
        await self.store.put_source(record)
        self.sources[name] = record
        return record

    async def delete_source(self, name: str) -> None:
        if not await self.store.delete_source(name):
            raise errors.NotFound(f"no source {name!r}")
        self.sources.pop(name, None)
