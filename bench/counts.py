"""What a benchmark receiver counts, shared by both receivers (``receiver.py`` on aiohttp,
``lean_receiver.py`` on uvloop + httptools) so the two answer ``/stats`` alike: requests,
events, latencies from ``data.sentAt``, unique deliveries (``--record``), first arrivals by
``ce-id`` (``--calls``), and the receiver's own CPU seconds (``cpu_s``: the process's, since
it started, so a scenario can read its CPU a request as a difference)."""

from __future__ import annotations

import resource
import time
from typing import Any

import orjson


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Counts:
    def __init__(self, latency: bool, record: bool = False, calls: bool = False) -> None:
        self.latency = latency
        self.record = record
        self.calls = calls
        self.arrivals: dict[str, float] = {}  # ce-id -> first arrival, with --calls
        self.requests = 0
        self.events = 0
        self.latencies: list[float] = []
        self.seen: set[tuple[str, str]] = set()  # (subscription, event id), with --record
        # With --latency, for POST /hook/<name>: (arrival, latency ms) of each event, by name
        # (one name a subscription: the fail-over of bench/pg_scale.py reads them).
        self.paths: dict[str, list[tuple[float, float]]] = {}

    def arrived(self, ce_id: str, now: float) -> None:
        """With --calls: a call's headers are in (a repeat keeps the first arrival)."""
        self.arrivals.setdefault(ce_id, now)

    def take(self, body: bytes, name: str | None) -> None:
        """One delivery to ``/hook`` (``name`` None) or ``/hook/<name>``."""
        self.requests += 1
        if self.calls:
            self.events += 1
        elif self.record:
            items = orjson.loads(body)
            for item in items:
                self.seen.add((item["subscriptionId"], item["eventId"]))
            self.events += len(items)
        elif self.latency:
            now = time.time()
            items = orjson.loads(body)
            for item in items if isinstance(items, list) else [items]:
                event = item.get("event", item)
                data = event.get("data")
                if isinstance(data, dict) and "sentAt" in data:
                    self.latencies.append((now - data["sentAt"]) * 1000)
                    if name is not None:
                        self.paths.setdefault(name, []).append((now, self.latencies[-1]))
            self.events += len(items) if isinstance(items, list) else 1
        else:
            # Envelope and batch deliveries carry many events, each with its specversion; a
            # binary-mode delivery carries its one event's attributes in headers. Counting
            # bytes keeps the receiver's CPU per request as low as the raw client's ceiling
            # run sees.
            self.events += body.count(b'"specversion"') or 1

    def stats(self, detail: bool, counts_only: bool = False) -> bytes:
        """``counts_only`` (``/stats?counts=1``): the counts (requests, events, CPU, and with
        --calls/--record calls/unique), no lists: what a poll until everything arrived needs,
        without serialising 500,000 latencies each time on the cores the hub is measured on."""
        body: dict[str, Any] = {
            "requests": self.requests,
            "events": self.events,
            "cpu_s": cpu_seconds(),
        }
        if counts_only:
            if self.calls:
                body["calls"] = len(self.arrivals)
            if self.record:
                body["unique"] = len(self.seen)
            return orjson.dumps(body)
        if self.latency:
            body["latencies_ms"] = self.latencies
            if detail:
                body["paths"] = self.paths
        if self.calls:
            body["calls"] = len(self.arrivals)
            if detail:
                body["arrivals"] = self.arrivals
        if self.record:
            body["unique"] = len(self.seen)
            if detail:
                per_event: dict[str, int] = {}
                for _, event_id in self.seen:
                    per_event[event_id] = per_event.get(event_id, 0) + 1
                body["per_event"] = per_event
        return orjson.dumps(body)

    def fresh(self) -> Counts:
        """``POST /reset``: the same options, nothing counted."""
        return Counts(self.latency, self.record, self.calls)


def options(description: str) -> Any:
    """The command line both receivers take."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--record", action="store_true", help="count unique deliveries")
    parser.add_argument("--calls", action="store_true", help="record call arrivals by ce-id")
    return parser.parse_args()
