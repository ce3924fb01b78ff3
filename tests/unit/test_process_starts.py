"""The definitions' starts in the match index (``processes/starts.py``): each definition's
entry only moves forward, so a reload that read the database before a newer change (made
in force meanwhile by an append's refresh) cannot put an older start back."""

from __future__ import annotations

from eventhub.catalog.filters import TriggerIndex
from eventhub.processes.starts import Starts

CREATED = [{"exact": {"type": "order.created"}}]
PLACED = [{"exact": {"type": "order.placed"}}]


def test_a_start_moves_only_forward() -> None:
    index = TriggerIndex()
    starts = Starts(index)
    starts.put("orders", 1, 7, CREATED)
    assert index.match({"type": "order.created"}) == [7]
    starts.put("orders", 2, 7, PLACED)
    starts.put("orders", 1, 7, CREATED)  # a late reload of version 1: ignored
    starts.take_out("orders", 1)  # ditto
    assert index.match({"type": "order.created"}) == []
    assert index.match({"type": "order.placed"}) == [7]
    # Moved to a published trigger (9): the private filters go.
    starts.put("orders", 3, 9, None)
    assert len(index) == 0
    assert starts.behind({"orders": (3, 9)}) == {}
    assert starts.behind({"orders": (4, 7)}) == {"orders": (4, 7)}


def test_a_deletion_is_not_undone_by_its_own_version() -> None:
    index = TriggerIndex()
    starts = Starts(index)
    starts.put("orders", 2, 7, CREATED)
    assert starts.gone({}) == {"orders": 2}
    starts.deleted("orders", 2)
    assert starts.gone({}) == {}
    starts.put("orders", 2, 7, CREATED)  # a reload that read it before the delete
    assert len(index) == 0
    # Made again: a newer version, in force.
    assert starts.behind({"orders": (3, 7)}) == {"orders": (3, 7)}
    starts.put("orders", 3, 7, CREATED)
    assert index.match({"type": "order.created"}) == [7]


def test_a_failed_replacement_puts_the_previous_start_back() -> None:
    """A save that failed after its previous start was taken out (the engine's ``put``):
    the same version goes back in."""
    index = TriggerIndex()
    starts = Starts(index)
    starts.put("orders", 1, 7, CREATED)
    starts.take_out("orders", 1)
    assert len(index) == 0
    starts.put("orders", 1, 7, CREATED)
    assert index.match({"type": "order.created"}) == [7]
