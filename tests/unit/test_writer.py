"""Group commit: concurrent submissions share flushes, results go to the right caller, and one
failing submission does not fail the others that shared its commit."""

from __future__ import annotations

import asyncio

import pytest

from eventhub import errors
from eventhub.log.writer import GroupCommitWriter, WriterClosed


async def test_concurrent_submissions_share_a_flush_and_get_their_own_results() -> None:
    flushes: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        flushes.append(list(items))
        return [i * 10 for i in items]

    writer: GroupCommitWriter[int, int] = GroupCommitWriter(flush)
    writer.start()
    results = await asyncio.gather(*(writer.submit(i) for i in range(50)))
    await writer.stop()
    assert results == [i * 10 for i in range(50)]
    assert sum(len(f) for f in flushes) == 50
    assert len(flushes) < 50, "submissions that queued together must share a flush"


async def test_a_failing_submission_fails_alone() -> None:
    async def flush(items: list[int]) -> list[int]:
        if 3 in items:
            raise ValueError("bad item")
        return items

    writer: GroupCommitWriter[int, int] = GroupCommitWriter(flush)
    writer.start()
    outcomes = await asyncio.gather(*(writer.submit(i) for i in range(6)), return_exceptions=True)
    await writer.stop()
    assert [o for o in outcomes if isinstance(o, ValueError)] == [outcomes[3]]
    assert [o for o in outcomes if not isinstance(o, Exception)] == [0, 1, 2, 4, 5]


async def test_stop_flushes_what_is_queued_then_refuses_more() -> None:
    seen: list[int] = []

    async def flush(items: list[int]) -> list[int]:
        seen.extend(items)
        return items

    writer: GroupCommitWriter[int, int] = GroupCommitWriter(flush)
    writer.start()
    pending = [asyncio.ensure_future(writer.submit(i)) for i in range(5)]
    await asyncio.sleep(0)
    await writer.stop()
    assert [await p for p in pending] == [0, 1, 2, 3, 4]
    assert seen == [0, 1, 2, 3, 4]
    with pytest.raises(WriterClosed):
        await writer.submit(9)


async def test_a_cancelled_caller_does_not_break_the_writer() -> None:
    gate = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        return items

    writer: GroupCommitWriter[int, int] = GroupCommitWriter(flush)
    cancelled = asyncio.ensure_future(writer.submit(1))
    await asyncio.sleep(0)
    cancelled.cancel()
    writer.start()
    gate.set()
    assert await writer.submit(2) == 2
    await writer.stop()


async def test_a_full_disk_fails_the_whole_flush_without_retrying_one_by_one() -> None:
    flushes: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        flushes.append(list(items))
        raise errors.InsufficientStorage("full")

    writer: GroupCommitWriter[int, int] = GroupCommitWriter(flush)
    writer.start()
    writer.enqueue(99)  # nobody waits for it: dropped, harmlessly
    outcomes = await asyncio.gather(*(writer.submit(i) for i in range(5)), return_exceptions=True)
    await writer.stop()
    assert all(isinstance(o, errors.InsufficientStorage) for o in outcomes)
    assert len(flushes) == 1, "a storage failure is no one submission's fault: no retries"


async def test_queue_returns_the_future_its_flush_resolves() -> None:
    """``queue`` is ``submit`` without the coroutine (the ingest path served from the HTTP
    protocol's callbacks): its futures share flushes with ``submit``'s, get their own
    results, and resolve only once the flush that holds them has returned."""
    flushes: list[list[int]] = []
    release = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        await release.wait()
        flushes.append(list(items))
        return [i * 10 for i in items]

    writer: GroupCommitWriter[int, int] = GroupCommitWriter(flush)
    writer.start()
    futures = [writer.queue(i) for i in range(3)]
    submitted = asyncio.ensure_future(writer.submit(3))
    for _ in range(10):
        await asyncio.sleep(0)
    assert not any(f.done() for f in futures), "resolved before its flush returned"
    release.set()
    assert await asyncio.gather(*futures, submitted) == [0, 10, 20, 30]
    assert flushes == [[0, 1, 2, 3]]
    await writer.stop()
    with pytest.raises(WriterClosed):
        writer.queue(9)
