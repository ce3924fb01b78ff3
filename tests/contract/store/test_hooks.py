"""The hooks a store is built with: the matcher's triggers are indexed in the append's commit,
and the store tells who it must once the commit is durable."""

from __future__ import annotations

from typing import Any

from eventhub.log.base import Hooks
from tests.conftest import ManualClock
from tests.contract.store.conftest import Backend
from tests.contract.store.samples import event

MATCH, OTHER = 3, 4


def matcher(attributes: dict[str, Any]) -> list[int]:
    return [MATCH] if attributes["type"] == "match" else [OTHER]


async def test_triggers_are_indexed_and_every_hook_hears_its_commit(backend: Backend) -> None:
    commits: list[set[int]] = []
    heads: list[int] = []
    hooks = Hooks(matcher=matcher, on_commit=commits.append, on_appended=heads.append)
    store = backend.store(backend.database(), ManualClock(), hooks)
    await store.open()
    try:
        await store.append([event("1", type_="match"), event("2"), event("3", type_="match")])
        assert commits == [{MATCH, OTHER}] and heads == [3]
        await store.append([event("1", type_="match")])  # a duplicate: nothing committed
        assert commits == [{MATCH, OTHER}] and heads == [3]
        await store.append([event("4")])
        assert commits[-1] == {OTHER} and heads[-1] == 4
        page = await store.read_trigger_after(MATCH, 0, 10)
        assert [e.offset for e in page] == [1, 3]
        assert [e.offset for e in await store.read_trigger_after(MATCH, 1, 10)] == [3]
        assert await store.trigger_head(MATCH) == 3 and await store.trigger_head(OTHER) == 4
        assert await store.count_between(OTHER, 0, 4) == 2
        assert await store.count_between(OTHER, 2, 3) == 0
    finally:
        await store.close()


async def test_a_store_without_hooks_indexes_nothing(backend: Backend) -> None:
    store = backend.store(backend.database(), ManualClock())
    await store.open()
    try:
        await store.append([event("1", type_="match")])
        assert await store.read_trigger_after(MATCH, 0, 10) == []
        assert await store.trigger_head(MATCH) == 0
    finally:
        await store.close()
