"""Keys, sources and the catalogue changed by one process reach the others (SPEC §9): every
write of one notifies ``eventhub_changed`` at its COMMIT, heard by every other process and
not by the writer; a listener that reconnects reloads everything; and the match index never
lags behind a model published elsewhere, notification or not: the append itself reloads it
when the catalogue's version moved. Two stores on one real PostgreSQL (conftest.py), each
with a real ``Catalog`` and match index, as two hubs have."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from eventhub import vault
from eventhub.catalog.filters import TriggerIndex
from eventhub.catalog.service import Catalog
from eventhub.catalog.shapes import ModelSpec, TriggerSpec
from eventhub.delivery.states import Status
from eventhub.hub import Hub
from eventhub.log.base import Hooks
from eventhub.log.postgres import PostgresStore
from eventhub.log.records import KeyRecord, SourceRecord
from eventhub.vault import Vault
from tests.conftest import TEST_SECRET_KEY, ManualClock, settings_for
from tests.contract.postgres.test_postgres_store import until
from tests.contract.store.conftest import VAULT
from tests.contract.store.samples import event, subscription


class Process:
    """One hub's worth of the catalogue: a store whose matcher is a real match index, filled
    by a real ``Catalog``, reloaded inside appends (``reload_matcher``), and a record of the
    changes of other processes it heard (acted on only by the matcher's own reload)."""

    def __init__(self, dsn: str) -> None:
        self.heard: list[tuple[str, str | None]] = []
        self.reloads = 0
        index = TriggerIndex()
        self.store = PostgresStore(
            dsn,
            ManualClock(),
            vault=VAULT,
            hooks=Hooks(
                matcher=index.match,
                on_change=lambda kind, id_: self.heard.append((kind, id_)),
                reload_matcher=self._reload,
            ),
        )
        self.catalog = Catalog(self.store, ManualClock(), index)

    async def _reload(self) -> None:
        self.reloads += 1
        await self.catalog.load()

    async def open(self) -> None:
        await self.store.open()
        await self.catalog.load()


@pytest.fixture
async def two(pg_dsn: str) -> AsyncIterator[tuple[Process, Process]]:
    a, b = Process(pg_dsn), Process(pg_dsn)
    await a.open()
    await b.open()
    yield a, b
    await a.store.close()
    await b.store.close()


async def publish(catalog: Catalog, type_: str) -> int:
    await catalog.put_model("orders", ModelSpec("Orders", ""))
    spec = TriggerSpec("created", "", [{"exact": {"type": type_}}])
    await catalog.put_trigger("orders", "created", spec)
    await catalog.publish("orders")
    return catalog.trigger("orders", "created")[1]


async def indexed(store: PostgresStore, tid: int) -> list[str]:
    return [e.attributes["id"] for e in await store.read_trigger_after(tid, 0, 100)]


async def test_an_append_matches_a_model_published_elsewhere_before_any_notification(
    two: tuple[Process, Process],
) -> None:
    a, b = two
    await b.store.append([event("warm-up")])  # b's matcher is now at the catalogue's version
    reloads = b.reloads
    tid = await publish(a.catalog, "order.created")
    # At once, before b could have acted on any notification (b acts on none: it only
    # records them): the append reloads b's index under the log head's lock.
    await b.store.append([event("1", type_="order.created"), event("2", type_="other")])
    assert await indexed(b.store, tid) == ["1"]
    assert b.reloads == reloads + 1
    assert b.catalog.model("orders").version == 1  # the catalogue too, not just the index
    # Nothing moved since: the next append reloads nothing (no round trip of its own).
    await b.store.append([event("3", type_="order.created")])
    assert b.reloads == reloads + 1 and await indexed(b.store, tid) == ["1", "3"]

    # Changed on a: b matches the new filter, not the old one.
    spec = TriggerSpec("created", "", [{"exact": {"type": "order.placed"}}])
    await a.catalog.put_trigger("orders", "created", spec)
    await a.catalog.publish("orders")
    await b.store.append([event("4", type_="order.created"), event("5", type_="order.placed")])
    assert await indexed(b.store, tid) == ["1", "3", "5"]
    assert b.catalog.model("orders").version == 2

    # Deleted on a: b stops matching it, and no longer lists it.
    await a.catalog.delete_model("orders")
    await b.store.append([event("6", type_="order.placed")])
    assert await indexed(b.store, tid) == ["1", "3", "5"]
    assert "orders" not in b.catalog.published and "orders" not in b.catalog.drafts
    # a's own index followed its own edits (and its next append reloads harmlessly).
    await a.store.append([event("7", type_="order.placed")])
    assert await indexed(a.store, tid) == ["1", "3", "5"]
    assert len(b.catalog.index) == len(a.catalog.index) == 0
    # b heard every change of the model, as "model orders".
    await until(lambda: ("model", "orders") in b.heard)
    assert {kind for kind, _ in b.heard} == {"model"}


async def test_changes_notify_the_other_processes_never_the_writer(
    two: tuple[Process, Process],
) -> None:
    a, b = two
    key = KeyRecord("k1", b"h" * 32, "n", "producer", None, "2026-01-01T00:00:00Z")
    await a.store.put_key(key)
    assert await a.store.revoke_key("k1", "2026-01-02T00:00:00Z")
    assert not await a.store.revoke_key("k1", "2026-01-03T00:00:00Z")  # nothing: no notice
    await a.store.put_source(SourceRecord("shop", "s" * 32, False, "2026-01-01T00:00:00Z"))
    assert await a.store.delete_source("shop")
    assert not await a.store.delete_source("shop")
    await a.catalog.put_model("m", ModelSpec("M", ""))
    await a.store.ensure_trigger("process:p", "start")  # a new number: the others learn it
    await a.store.ensure_trigger("process:p", "start")  # not new: nothing to tell
    want = [
        ("key", "k1"),
        ("key", "k1"),
        ("source", "shop"),
        ("source", "shop"),
        ("model", "m"),
        ("model", "process:p"),
    ]
    await until(lambda: len(b.heard) >= len(want))
    assert b.heard == want
    # a hears b's change: by then it would have heard its own, which came first.
    await b.store.put_source(SourceRecord("b-only", "s" * 32, False, "2026-01-01T00:00:00Z"))
    await until(lambda: bool(a.heard))
    assert a.heard == [("source", "b-only")]
    # What was written is what the other reads.
    assert [k.revoked_at for k in await b.store.list_keys()] == ["2026-01-02T00:00:00Z"]
    assert [s.name for s in await a.store.list_sources()] == ["b-only"]


async def test_a_listener_that_reconnects_reloads_everything(
    two: tuple[Process, Process], pg_dsn: str
) -> None:
    a, b = two
    admin = await asyncpg.connect(pg_dsn)
    try:
        # The listeners' connections (their last statement was a LISTEN): cut them all.
        cut = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
        assert len(cut) == 2
    finally:
        await admin.close()
    # Notifications sent meanwhile may be lost: each reloads every kind, whole.
    whole = {("key", None), ("source", None), ("model", None)}
    await until(lambda: whole <= set(b.heard) and whole <= set(a.heard), seconds=10)
    # And it listens again: a later change is heard.
    await a.store.put_source(SourceRecord("later", "s" * 32, False, "2026-01-01T00:00:00Z"))
    await until(lambda: ("source", "later") in b.heard)


class Held:
    """The store's catalogue, but ``load_published`` returns what it read only once
    ``release`` is set: a load whose reads an edit of this process overtakes."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self.read = asyncio.Event()
        self.release = asyncio.Event()

    async def load_models(self) -> list[tuple[str, dict[str, Any], int]]:
        return await self._store.load_models()

    async def load_published(self) -> list[dict[str, Any]]:
        found = await self._store.load_published()
        self.read.set()
        await self.release.wait()
        return found

    async def save_draft(self, km: str, draft: dict[str, Any], now: str) -> None:
        await self._store.save_draft(km, draft, now)

    async def publish(
        self, km: str, snapshot: dict[str, Any], now: str
    ) -> dict[tuple[str, str], int]:
        return await self._store.publish(km, snapshot, now)

    async def delete_model(self, km: str) -> None:
        await self._store.delete_model(km)

    async def trigger_ids(self) -> dict[tuple[str, str], int]:
        return await self._store.trigger_ids()


async def test_a_catalogue_load_overtaken_by_an_edit_reads_again(
    two: tuple[Process, Process],
) -> None:
    """A load (for another process's change) whose reads this process's own publish
    overtook does not put back the catalogue as it was before the publish."""
    a, _ = two
    held = Held(a.store)
    catalog = Catalog(held, ManualClock())
    await catalog.put_model("orders", ModelSpec("Orders", ""))
    spec = TriggerSpec("created", "", [{"exact": {"type": "order.created"}}])
    await catalog.put_trigger("orders", "created", spec)
    loading = asyncio.create_task(catalog.load())
    await held.read.wait()  # it read the catalogue without the published version
    held.read.clear()
    version = await catalog.publish("orders")  # committed and installed meanwhile
    held.release.set()  # (and the reads after this return at once)
    await loading
    assert catalog.model("orders") == version
    tid = catalog.trigger("orders", "created")[1]
    assert catalog.match({"type": "order.created"}) == [tid]
    assert held.read.is_set(), "the load read again"


async def test_two_processes_starting_at_once_publish_a_model_once(
    two: tuple[Process, Process],
) -> None:
    """Both ensure the same model (the built-in one, a catalogue file) with no sight of the
    other's: the second publish of version 1 is refused, and that process catches up."""
    a, b = two
    draft = {
        "id": "orders",
        "name": "Orders",
        "triggers": [{"id": "created", "filters": [{"exact": {"type": "order.created"}}]}],
    }
    await asyncio.gather(a.catalog.ensure(draft), b.catalog.ensure(draft))
    assert a.catalog.model("orders") == b.catalog.model("orders")
    assert a.catalog.model("orders").version == 1
    # One that differs is published as the next version, even from behind.
    other = {**draft, "name": "Orders, renamed"}
    await a.catalog.ensure(other)
    await b.catalog.ensure({**draft, "name": "Orders, by b"})
    assert b.catalog.model("orders").version == 3
    assert b.catalog.model("orders").name == "Orders, by b"


async def test_a_subscription_made_elsewhere_as_its_key_is_revoked_is_paused(
    tmp_path: Path, pg_dsn: str
) -> None:
    """The revoking process pauses the key's subscriptions it knows; one that another
    process made by a request authenticated just before (committed after the revocation)
    reaches it by NOTIFY, and is paused then."""
    settings = settings_for(tmp_path, database=pg_dsn, secret_key=TEST_SECRET_KEY)
    hub = Hub(settings, ManualClock())
    other = PostgresStore(
        pg_dsn, ManualClock(), vault=Vault(vault.parse_key(TEST_SECRET_KEY, "key"))
    )
    await hub.start()
    await other.open()
    try:
        tid = await publish(hub.catalog, "order.created")
        key_id = (await hub.create_key("c", "consumer", None)).split("_")[1]
        await hub.revoke_key(key_id)
        late = dataclasses.replace(
            subscription("late", tid), owner=key_id, km="orders", trigger="created"
        )
        await other.save_subscription(late)  # as the other process's racing create would

        async def status() -> Status:
            (found,) = await other.load_subscriptions({"late"})
            return found.status

        deadline = time.monotonic() + 5
        while await status() is not Status.PAUSED:
            assert time.monotonic() < deadline, "not paused"
            await asyncio.sleep(0.02)
    finally:
        await other.close()
        await hub.stop()
