"""The console's rate buckets (ops/rates.py): differences of the /metrics counters, sampled
on the hub's clock into a ring buffer."""

from __future__ import annotations

import asyncio

import pytest

from eventhub import tasks
from eventhub.ops.metrics import Metrics
from eventhub.ops.rates import Bucket, Rates, Sample, buckets
from tests.conftest import ManualClock


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], []),
        ([Sample(0, 5, 1)], []),
        ([Sample(0, 5, 1), Sample(15, 20, 4)], [Bucket(0, 15, 15, 3)]),
        (
            [Sample(0, 0, 0), Sample(15, 3, 0), Sample(30, 3, 2)],
            [Bucket(0, 15, 3, 0), Bucket(15, 15, 0, 2)],
        ),
        # never below zero, whatever the samples say
        ([Sample(10, 9, 9), Sample(5, 1, 1)], [Bucket(10, 0, 0, 0)]),
    ],
)
def test_buckets_are_differences_of_consecutive_samples(
    samples: list[Sample], expected: list[Bucket]
) -> None:
    assert buckets(samples) == expected


def ingest(metrics: Metrics, events: int) -> None:
    metrics.ingested("/events", "binary", "ok", events, 0.001)


async def test_the_task_samples_on_the_hub_clock_into_a_ring_buffer() -> None:
    """Every ``interval`` of the hub's clock, looked at every ``poll`` of loop time."""
    clock = ManualClock(start=1000.0)
    metrics = Metrics()
    rates = Rates(metrics, clock, interval=15.0, size=3, poll=0.001)
    owner = tasks.Tasks()
    rates.start(owner)
    try:
        # A refused request carries events that were never stored: not counted.
        metrics.ingested("/events", "batch", "invalid_request", 7, 0.001)
        ingest(metrics, 4)
        metrics.delivered("success", 2, 0.01)
        # Only the bucket still filling: from the start sample to now.
        assert rates.buckets() == [Bucket(1000.0, 0.0, 4, 2)]
        # Not a sleeper on the hub's clock: a manual clock's users still see the hub idle.
        await asyncio.sleep(0.01)
        assert clock.sleepers() == 0
        assert len(rates._samples) == 1  # the hub's clock has not moved: no new sample
        for n in range(1, 6):
            ingest(metrics, n)
            clock.advance(15.0)
            while len(rates._samples) < min(3, n + 1) or rates._samples[-1].at != clock.t:
                await asyncio.sleep(0.001)
        found = rates.buckets()
        # Three samples kept: two full buckets, then the one filling (empty, 0 s so far).
        assert [b.ingested for b in found] == [4, 5, 0]
        assert [b.seconds for b in found] == [15.0, 15.0, 0.0]
        assert found[-1].start == clock.t
    finally:
        await rates.stop()
        await owner.stop()
    assert owner.names() == []
