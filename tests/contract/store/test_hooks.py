"""The hooks a store is built with: the matcher's triggers are indexed in the append's commit,
and the store tells who it must once the commit is durable: after it, possibly after the
append returned (PostgreSQL hears its own commits by NOTIFY), in commit order."""

from __future__ import annotations

from typing import Any

from eventhub.log.base import Hooks
from tests.conftest import ManualClock
from tests.contract.store.conftest import Backend, Heard
from tests.contract.store.samples import event

MATCH, OTHER = 3, 4


def matcher(attributes: dict[str, Any]) -> list[int]:
    return [MATCH] if attributes["type"] == "match" else [OTHER]


async def test_triggers_are_indexed_and_every_hook_hears_its_commit(backend: Backend) -> None:
    heard = Heard()
    commits: list[set[int]] = []
    heads: list[int] = []

    def on_commit(tids: set[int]) -> None:
        commits.append(tids)
        heard.called()

    def on_appended(head: int) -> None:
        heads.append(head)
        heard.called()

    hooks = Hooks(matcher=matcher, on_commit=on_commit, on_appended=on_appended)
    store = backend.store(backend.database(), ManualClock(), hooks)
    await store.open()
    try:
        await store.append([event("1", type_="match"), event("2"), event("3", type_="match")])
        await heard.until(lambda: bool(commits) and bool(heads))
        assert commits == [{MATCH, OTHER}] and heads == [3]
        await store.append([event("1", type_="match")])  # a duplicate: nothing committed
        await store.append([event("4")])
        # Hooks come in commit order: had the duplicate been heard, it would come first.
        await heard.until(lambda: len(commits) > 1 and len(heads) > 1)
        assert commits == [{MATCH, OTHER}, {OTHER}] and heads == [3, 4]
        page = await store.read_trigger_after(MATCH, 0, 10)
        assert [e.offset for e in page] == [1, 3]
        assert [e.offset for e in await store.read_trigger_after(MATCH, 1, 10)] == [3]
        assert await store.trigger_head(MATCH) == 3 and await store.trigger_head(OTHER) == 4
        assert await store.trigger_head(999) == 0
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
