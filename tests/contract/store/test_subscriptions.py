"""Subscriptions, cursors and attempts: delivery records, awaited or not, all land."""

from __future__ import annotations

from eventhub.delivery.states import Status
from eventhub.log.base import Store
from eventhub.models import Attempt
from tests.contract.store.samples import subscription

# Every backend keeps at least a subscription's last 100 attempts (README: GET …/attempts).
ATTEMPTS_KEPT = 100


async def test_delivery_records_share_one_write_and_keep_every_attempt(store: Store) -> None:
    subs = [subscription(f"s{i}") for i in range(3)]
    for sub in subs:
        await store.save_subscription(sub)
    for n in range(1, 131):  # past the attempts kept, so pruning runs inside a batch
        for sub in subs:
            sub.cursor = sub.delivered = sub.attempts = n
            store.record_delivery(sub, Attempt(n, "t", n, n, 200, 1.0, None, f"msg_{n}"))
        if n % 7 == 0:
            await store.save_delivery(subs[0], None)  # an awaited write between batches
    await store.save_delivery(subs[0], None)  # flushes what is queued
    for sub in await store.load_subscriptions():
        assert (sub.cursor, sub.delivered, sub.attempts) == (130, 130, 130)
    for sub in subs:
        attempts = await store.list_attempts(sub.id, 1000)
        assert [a.n for a in attempts][:3] == [130, 129, 128]
        assert len(attempts) >= ATTEMPTS_KEPT and len(attempts) < 130
        assert (attempts[0].first_offset, attempts[0].last_offset) == (130, 130)


async def test_attempts_are_listed_as_soon_as_recorded(store: Store) -> None:
    """A read lists every attempt recorded before it, committed or still queued: the API
    shows a delivered count and the attempt behind it together."""
    sub = subscription("s")
    await store.save_subscription(sub)
    for n in range(1, 4):
        sub.cursor = sub.delivered = sub.attempts = n
        store.record_delivery(sub, Attempt(n, "t", n, n, 200, 1.0, None, f"msg_{n}"))
        assert [a.n for a in await store.list_attempts("s", 10)] == list(range(n, 0, -1))


async def test_a_deleted_subscription_is_gone_and_a_saved_one_keeps_its_secret(
    store: Store,
) -> None:
    kept, gone = subscription("kept"), subscription("gone")
    await store.save_subscription(kept)
    await store.save_subscription(gone)
    await store.delete_subscription("gone")
    (loaded,) = await store.load_subscriptions()
    assert loaded.id == "kept" and loaded.secret == kept.secret and loaded.tid == 1


async def test_a_subscription_round_trips_and_its_attempts_go_with_it(store: Store) -> None:
    sub = subscription("s1")
    await store.save_subscription(sub)
    (loaded,) = await store.load_subscriptions()
    assert loaded == sub
    sub.cursor, sub.status = 7, Status.PAUSED
    await store.save_subscription(sub)
    assert await store.load_subscriptions(["s1", "nope"]) == [sub]
    assert await store.load_subscriptions([]) == []
    await store.save_delivery(sub, Attempt(1, "t", 1, 7, 500, 2.5, "boom", "msg_1"))
    assert [a.error for a in await store.list_attempts("s1", 10)] == ["boom"]
    await store.delete_subscription("s1")
    assert await store.load_subscriptions() == [] and await store.list_attempts("s1", 10) == []
