"""The hub: one object that owns the store, the catalogue, the outbound client and the
subscriptions, created at start-up and closed at shutdown. API handlers reach everything
through it."""

from __future__ import annotations

import asyncio
import logging

from eventhub import auth, errors, notifications
from eventhub.catalog.service import Catalog
from eventhub.clock import Clock, SystemClock, rfc3339
from eventhub.delivery.manager import Subscriptions
from eventhub.delivery.policy import RetryPolicy
from eventhub.delivery.sender import Sender
from eventhub.delivery.states import Move
from eventhub.delivery.supervisor import Deps
from eventhub.log.sqlite import SqliteStore
from eventhub.log.store import KeyRecord, SourceRecord, Store
from eventhub.models import Subscription
from eventhub.settings import Settings

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.store: Store = SqliteStore(
            settings.data, self.clock, settings.synchronous, settings.checkpoint_interval
        )
        self.keyring = auth.Keyring(())
        self.sources: dict[str, SourceRecord] = {}
        self._ingests_in_flight = 0
        self.catalog = Catalog(self.store, self.clock)
        self.sender = Sender(
            settings.delivery_connections,
            settings.delivery_connect_timeout,
            settings.delivery_timeout,
            per_owner=settings.delivery_connections_per_owner,
        )
        policy = RetryPolicy(
            max_retries=settings.delivery_max_retries,
            initial_delay=settings.delivery_initial_delay,
            max_delay=settings.delivery_max_delay,
            retry_after_cap=settings.retry_after_cap,
            recovery_initial=settings.recovery_initial_delay,
            recovery_max=settings.recovery_max_delay,
            suspend_after=settings.suspend_after,
        )
        deps = Deps(
            self.store,
            self.sender,
            self.clock,
            policy,
            self._notify,
            self._notify_limit,
            asyncio.Semaphore(2 * settings.delivery_connections),
        )
        self.subscriptions = Subscriptions(
            deps,
            settings.max_subscriptions,
            settings.delivery_max_retries,
            settings.secret_rotation_overlap,
        )

    async def start(self) -> None:
        await self.store.open()
        self.keyring = auth.Keyring(await self.store.list_keys(), self.settings.admin_key)
        self.sources = {s.name: s for s in await self.store.list_sources()}
        if not self.keyring.has_admin():
            key = await self.create_key("admin", "admin", None)
            # Shown once, on the first start only: the store keeps just its hash.
            print(f"eventhub: created admin API key (shown once): {key}", flush=True)
        await self.catalog.load()
        await self.catalog.ensure(notifications.builtin_model())
        if self.settings.catalog_file is not None:
            await self.catalog.load_file(self.settings.catalog_file)
        self.store.matcher = self.catalog.match
        await self.sender.start()
        await self.subscriptions.start()
        self.store.on_commit = self.subscriptions.on_commit

    async def stop(self) -> None:
        """Supervisors first (an in-flight delivery is abandoned; its cursor did not move, so
        it is delivered again after the restart), then the HTTP client, then the log."""
        self.store.on_commit = None
        await self.subscriptions.stop()
        await self.sender.stop()
        await self.store.close()

    def now_rfc3339(self) -> str:
        return rfc3339(self.clock.now())

    # -- lifecycle notifications -------------------------------------------------------------

    async def _notify(self, sub: Subscription, move: Move | None, reason: str) -> None:
        await self.store.append([notifications.transition(sub, move, reason, self.clock.now())])

    async def _notify_limit(self, who: auth.Principal, limit: int) -> None:
        data = {"owner": who.key_id, "limit": limit}
        event = notifications.event(notifications.LIMIT_REACHED, self.clock.now(), data)
        await self.store.append([event])

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
        # After the revocation is persisted: if the hub dies before this finishes, the next
        # start pauses what is left (``Subscriptions.start``).
        await self.subscriptions.revoke(key_id)

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
