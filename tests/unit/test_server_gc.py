"""``eventhub serve`` collects the first generation less often (server.tune_gc): the
requests in flight no longer set the collector off every ~66 requests."""

from __future__ import annotations

import gc

from eventhub import server


def test_tune_gc_raises_only_the_first_threshold() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 7, 9)
        server.tune_gc()
        assert gc.get_threshold() == (server.GC_THRESHOLD, 7, 9)
        assert server.GC_THRESHOLD > 700
    finally:
        gc.set_threshold(*before)
