"""The hub's metrics, for ``GET /metrics`` in the Prometheus text format (README, "Metrics").

Two kinds, told apart by where they are updated:

- **Counters and histograms of the hot paths** (ingest, group commit, delivery) are plain
  Python numbers that the event loop adds to, and that a scrape turns into metric families.
  prometheus-client's own ``Counter.inc`` takes a lock and ``Histogram.observe`` walks its
  buckets under one: an ingest request's two counters and its latency cost 2.6 µs that way
  on a quiet 2-core machine (4-4.7 µs on a busy one), a few percent of a request. Integers
  added to in the loop (one thread: no lock needed) and a ``bisect`` into the bucket bounds
  cost 0.3 µs (0.6-0.9 µs busy): ``Metrics.ingested``.
- **State** (subscriptions by state, lag, the log's head, the database's size, process
  instances by state) is read at scrape time: from the hub's memory, and from the database
  in a worker thread (``log/figures.py``). Nothing on the hot path keeps it up to date.

prometheus-client writes the text format, names the families and checks them; every metric
lives in the hub's own ``CollectorRegistry`` (tests run many hubs in one process, so never the
global default one). Every name starts with ``eventhub_``.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from eventhub.log.figures import Figures, Position
from eventhub.models import Status, Subscription
from eventhub.processes.instances import State

# Request and commit latencies: a commit with fsync takes milliseconds, a slow disk seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A webhook's answer: from a local receiver's milliseconds to the 30 s delivery timeout.
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Writes that share one commit: 1 when idle, hundreds under load.
SIZE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)

# An ingest request refused before its mode was read (no key, a full ingest pool).
UNKNOWN = "unknown"
OK = "ok"


class Histogram:
    """A histogram the event loop observes into without a lock: one count per bucket (the
    last is +Inf) and the sum. Cumulative counts, as Prometheus wants them, at scrape time."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (``le``).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out


class _Tally:
    """One (path, mode, outcome) of ingest: requests, and the events they carried."""

    __slots__ = ("events", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.events = 0


@dataclass(frozen=True, slots=True)
class Seen:
    """A subscription as a scrape found it: its position is taken once, before the database
    is read in a thread, so that its lag is looked up under the cursor it was read for (the
    supervisor may move the cursor meanwhile)."""

    id: str
    status: Status
    position: Position


def seen(subscriptions: Iterable[Subscription]) -> list[Seen]:
    return [Seen(s.id, s.status, (s.tid, s.cursor)) for s in subscriptions]


@dataclass(frozen=True, slots=True)
class Scraped:
    """What a scrape read of the hub's state, for the collector to turn into families."""

    subscriptions: Sequence[Seen]
    figures: Figures
    now: float


class Metrics:
    """One hub's metrics: the hot paths add to it, ``render`` answers a scrape."""

    def __init__(self, per_subscription: bool = False) -> None:
        self.per_subscription = per_subscription
        # ingest, by (path, mode, outcome); latency by path
        self._ingest: dict[tuple[str, str, str], _Tally] = {}
        self._ingest_seconds: dict[str, Histogram] = {}
        # group commit
        self.commit_size = Histogram(SIZE_BUCKETS)
        self.commit_seconds = Histogram(LATENCY_BUCKETS)
        # delivery
        self._deliveries: dict[str, int] = {}
        self.delivered_events = 0
        self.delivery_seconds = Histogram(DELIVERY_BUCKETS)
        self.retries = 0
        self._probes: dict[str, int] = {}
        # What a scrape hands the registry: families already built from the state (the
        # text is written in a thread, which must not read the loop's live numbers).
        self._frozen: list[Metric] | None = None
        self._scraping = asyncio.Lock()
        self._inflight: asyncio.Future[bytes] | None = None  # the scrape others share
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        # CPU, memory, open files: read from /proc at scrape time (nothing where it is absent).
        ProcessCollector(namespace="eventhub", registry=self.registry)

    # -- the hot paths: a dict lookup and a few integer additions each -----------------------

    def ingested(self, path: str, mode: str, outcome: str, events: int, seconds: float) -> None:
        """One ingest request answered: ``outcome`` is ``ok`` or the error's code."""
        key = (path, mode, outcome)
        tally = self._ingest.get(key)
        if tally is None:
            tally = self._ingest[key] = _Tally()
        tally.requests += 1
        tally.events += events
        histogram = self._ingest_seconds.get(path)
        if histogram is None:
            histogram = self._ingest_seconds[path] = Histogram(LATENCY_BUCKETS)
        histogram.observe(seconds)

    def ingested_events(self) -> int:
        """Events stored by ingest so far (requests answered ``ok``): read by the console's
        rate sampler (ops/rates.py) every few seconds, never on the ingest path."""
        return sum(t.events for (_, _, outcome), t in self._ingest.items() if outcome == OK)

    def committed(self, writes: int, seconds: float) -> None:
        """One group commit of ``writes`` queued writes (``log/writer.py``)."""
        self.commit_size.observe(writes)
        self.commit_seconds.observe(seconds)

    def delivered(self, outcome: str, events: int, seconds: float) -> None:
        """One delivery attempt (first try, retry or probe) and what its answer means:
        ``success``, ``transient`` or ``rejection`` (``delivery/policy.classify``)."""
        self._deliveries[outcome] = self._deliveries.get(outcome, 0) + 1
        if outcome == "success":
            self.delivered_events += events
        self.delivery_seconds.observe(seconds)

    def retried(self) -> None:
        self.retries += 1

    def probed(self, succeeded: bool) -> None:
        outcome = "success" if succeeded else "failure"
        self._probes[outcome] = self._probes.get(outcome, 0) + 1

    # -- a scrape ----------------------------------------------------------------------------

    async def shared(self, scrape: Callable[[], Awaitable[bytes]]) -> bytes:
        """``scrape()``, or the answer of the one already in flight: scrapers that arrive
        together share one read of the state and one text (with ``metrics_per_subscription``
        over 10,000 subscriptions, 40 ms of the loop and a database read each), so N of them
        cost what one does. Shielded: a scraper that goes away does not cancel the others'."""
        if self._inflight is None:
            inflight = self._inflight = asyncio.ensure_future(scrape())

            def done(_: asyncio.Future[bytes]) -> None:
                self._inflight = None

            inflight.add_done_callback(done)
        return await asyncio.shield(self._inflight)

    async def render(self, subscriptions: Sequence[Seen], figures: Figures, now: float) -> bytes:
        """The text format of every metric, with the state just read. The families are built
        on the loop (one consistent view of the counters); the text, most of a scrape's cost
        with ``metrics_per_subscription`` (120 of 160 ms for 10,000 subscriptions), is
        written in a worker thread, so the loop goes on serving meanwhile."""
        families = [*self._hot(), *self._scraped(Scraped(subscriptions, figures, now))]
        async with self._scraping:  # one scrape at a time owns ``_frozen``
            self._frozen = families
            try:
                return await asyncio.to_thread(generate_latest, self.registry)
            finally:
                self._frozen = None

    def _hot(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "eventhub_ingest_requests",
            "Ingest requests answered, by path, mode and outcome (ok or the error code).",
            labels=("path", "mode", "outcome"),
        )
        events = CounterMetricFamily(
            "eventhub_ingest_events",
            "Events in ingest requests (as parsed), by path, mode and outcome.",
            labels=("path", "mode", "outcome"),
        )
        for (path, mode, outcome), tally in sorted(self._ingest.items()):
            requests.add_metric((path, mode, outcome), tally.requests)
            events.add_metric((path, mode, outcome), tally.events)
        yield requests
        yield events
        latency = HistogramMetricFamily(
            "eventhub_ingest_duration_seconds",
            "Time from an ingest request's headers to its answer, by path.",
            labels=("path",),
        )
        for path, histogram in sorted(self._ingest_seconds.items()):
            latency.add_metric((path,), histogram.cumulative(), histogram.sum)
        yield latency
        yield _histogram(
            "eventhub_group_commit_size",
            "Queued writes (ingest requests, cursor batches, ...) that shared one commit.",
            self.commit_size,
        )
        yield _histogram(
            "eventhub_group_commit_duration_seconds",
            "Time to write and commit one group commit.",
            self.commit_seconds,
        )
        deliveries = CounterMetricFamily(
            "eventhub_deliveries",
            "Webhook delivery attempts (first tries, retries, probes), by outcome.",
            labels=("outcome",),
        )
        for outcome in ("success", "transient", "rejection"):
            deliveries.add_metric((outcome,), self._deliveries.get(outcome, 0))
        yield deliveries
        yield CounterMetricFamily(
            "eventhub_delivered_events",
            "Events delivered with a 2xx answer.",
            value=self.delivered_events,
        )
        yield _histogram(
            "eventhub_delivery_duration_seconds",
            "Time from sending a delivery to its answer (or to giving up on one).",
            self.delivery_seconds,
        )
        yield CounterMetricFamily(
            "eventhub_delivery_retries",
            "Retries scheduled after a failed delivery attempt (with backoff).",
            value=self.retries,
        )
        probes = CounterMetricFamily(
            "eventhub_recovery_probes",
            "Probes of a Failed subscription's callback, by outcome.",
            labels=("outcome",),
        )
        for outcome in ("success", "failure"):
            probes.add_metric((outcome,), self._probes.get(outcome, 0))
        yield probes

    def _scraped(self, state: Scraped) -> Iterator[Metric]:
        figures = state.figures
        yield GaugeMetricFamily(
            "eventhub_log_head_offset", "The log's highest offset.", value=figures.head
        )
        sizes = GaugeMetricFamily(
            "eventhub_database_size_bytes",
            "Size on disk of the database, by file (db, wal).",
            labels=("file",),
        )
        sizes.add_metric(("db",), figures.database_bytes)
        sizes.add_metric(("wal",), figures.wal_bytes)
        yield sizes
        by_state = GaugeMetricFamily(
            "eventhub_subscriptions", "Subscriptions by state.", labels=("state",)
        )
        lag = GaugeMetricFamily(
            "eventhub_subscriptions_lag_events",
            "Events of their triggers that subscriptions have yet to deliver, summed by state.",
            labels=("state",),
        )
        age = GaugeMetricFamily(
            "eventhub_subscriptions_oldest_undelivered_age_seconds",
            "Age of the oldest event a subscription has yet to deliver, the largest by state"
            " (0: none behind).",
            labels=("state",),
        )
        for status, count, events, oldest in _by_state(state):
            by_state.add_metric((status,), count)
            lag.add_metric((status,), events)
            age.add_metric((status,), oldest)
        yield by_state
        yield lag
        yield age
        if self.per_subscription:
            yield from _per_subscription(state)
        instances = GaugeMetricFamily(
            "eventhub_process_instances", "Process instances by state.", labels=("state",)
        )
        for instance_state in State:
            instances.add_metric((instance_state,), figures.instances.get(instance_state, 0))
        yield instances


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        frozen = self._metrics._frozen
        # Outside a scrape (someone reading the registry on the loop): the counters only.
        return self._metrics._hot() if frozen is None else frozen


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, documentation, buckets=histogram.cumulative(), sum_value=histogram.sum
    )


def age_of(received_at: str | None, now: float) -> float:
    """Seconds since an RFC 3339 ``received_at`` (0 for none; never negative)."""
    if received_at is None:
        return 0.0
    when = datetime.datetime.fromisoformat(received_at).timestamp()
    return max(0.0, now - when)


def _by_state(state: Scraped) -> list[tuple[str, int, int, float]]:
    """(state, subscriptions, events behind in all, oldest undelivered age) for every state."""
    rows = {status: [0, 0, 0.0] for status in Status}
    behind = state.figures.behind
    for sub in state.subscriptions:
        row = rows[sub.status]
        row[0] += 1
        found = behind.get(sub.position)
        if found is not None:
            row[1] += found.events
            row[2] = max(row[2], age_of(found.oldest_received_at, state.now))
    return [(str(s), int(r[0]), int(r[1]), float(r[2])) for s, r in rows.items()]


def _per_subscription(state: Scraped) -> Iterator[Metric]:
    lag = GaugeMetricFamily(
        "eventhub_subscription_lag_events",
        "Events of its trigger a subscription has yet to deliver (metrics_per_subscription).",
        labels=("subscription",),
    )
    age = GaugeMetricFamily(
        "eventhub_subscription_oldest_undelivered_age_seconds",
        "Age of the oldest event a subscription has yet to deliver (metrics_per_subscription).",
        labels=("subscription",),
    )
    behind = state.figures.behind
    for sub in sorted(state.subscriptions, key=lambda s: s.id):
        found = behind.get(sub.position)
        lag.add_metric((sub.id,), 0 if found is None else found.events)
        age.add_metric(
            (sub.id,), 0.0 if found is None else age_of(found.oldest_received_at, state.now)
        )
    yield lag
    yield age
