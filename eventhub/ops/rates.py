"""Ingest and delivery rates over the last minutes, for the console's overview chart
(``GET /api/overview``).

They cost the ingest and delivery paths nothing: a watched background task reads the counters
the hub already keeps for ``/metrics`` (``ops/metrics.py``) every ``interval`` seconds of the
hub's clock into a small ring buffer; a bucket is the difference between two samples. The
last bucket is the one still filling: from the newest sample to the counters now.

The task looks at the hub's clock every ``poll`` seconds of the loop's own time rather than
sleeping on the hub's clock: a task forever asleep on it would be a sleeper that never
finishes, and tests that move a manual clock whenever something sleeps on it (or wait until
something does) would never see the hub idle. Sampling stays on the hub's time all the same.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from eventhub import tasks
from eventhub.clock import Clock
from eventhub.ops.metrics import Metrics

INTERVAL = 15.0  # seconds a bucket spans
BUCKETS = 60  # fifteen minutes of them
POLL = 1.0  # seconds of loop time between looks at the hub's clock
TASK_NAME = "console-rates"


@dataclass(frozen=True, slots=True)
class Sample:
    """The counters at one moment."""

    at: float
    ingested: int
    delivered: int


@dataclass(frozen=True, slots=True)
class Bucket:
    """Events ingested and delivered from ``start`` for ``seconds``."""

    start: float
    seconds: float
    ingested: int
    delivered: int


def buckets(samples: Iterable[Sample]) -> list[Bucket]:
    """One bucket between each two consecutive samples, oldest first. A counter never goes
    down within one hub, so a negative difference cannot happen; it is clamped all the same,
    so a chart never draws below zero."""
    out: list[Bucket] = []
    previous: Sample | None = None
    for sample in samples:
        if previous is not None:
            out.append(
                Bucket(
                    previous.at,
                    max(0.0, sample.at - previous.at),
                    max(0, sample.ingested - previous.ingested),
                    max(0, sample.delivered - previous.delivered),
                )
            )
        previous = sample
    return out


class Rates:
    """The ring buffer and the task that fills it: ``start`` with the hub, ``stop`` at
    shutdown."""

    def __init__(
        self,
        metrics: Metrics,
        clock: Clock,
        interval: float = INTERVAL,
        size: int = BUCKETS,
        poll: float = POLL,
    ) -> None:
        self.interval = interval
        self._poll = poll
        self._metrics = metrics
        self._clock = clock
        # ``size`` full buckets need one sample more; the bucket still filling uses "now".
        self._samples: deque[Sample] = deque(maxlen=size)
        self._task: tasks.Watched | None = None

    def sample(self) -> None:
        self._samples.append(self._now())

    def _now(self) -> Sample:
        metrics = self._metrics
        return Sample(self._clock.now(), metrics.ingested_events(), metrics.delivered_events)

    def buckets(self) -> list[Bucket]:
        """The full buckets, then the one filling (when a sample was taken)."""
        return buckets([*self._samples, self._now()]) if self._samples else []

    def start(self, owner: tasks.Tasks) -> None:
        self.sample()
        self._task = owner.watch(TASK_NAME, self._run)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await task.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._poll)
            if not self._samples or self._clock.now() - self._samples[-1].at >= self.interval:
                self.sample()
