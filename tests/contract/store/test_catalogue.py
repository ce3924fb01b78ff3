"""Knowledge models: drafts, published versions, and the triggers they number."""

from __future__ import annotations

from eventhub.log.base import Store


async def test_models_draft_publish_delete(store: Store) -> None:
    draft = {"name": "Orders", "triggers": {}}
    await store.save_draft("orders", draft, "2026-01-01T00:00:00Z")
    await store.save_draft("orders", {**draft, "name": "Orders 2"}, "2026-01-02T00:00:00Z")
    assert await store.load_models() == [("orders", {**draft, "name": "Orders 2"}, 0)]
    snapshot = {"id": "orders", "version": 1, "triggers": [{"id": "created"}, {"id": "paid"}]}
    tids = await store.publish("orders", snapshot, "2026-01-03T00:00:00Z")
    assert set(tids) == {("orders", "created"), ("orders", "paid")}
    assert len(set(tids.values())) == 2
    assert await store.trigger_ids() == tids
    assert await store.load_published() == [snapshot]
    assert (await store.load_models())[0][2] == 1
    # A new version with the same triggers keeps their numbers.
    assert await store.publish("orders", {**snapshot, "version": 2}, "2026-01-04T00:00:00Z") == tids
    assert await store.ensure_trigger("orders", "paid") == tids[("orders", "paid")]
    await store.delete_model("orders")
    assert await store.load_models() == [] and await store.load_published() == []
