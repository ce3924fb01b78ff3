"""What a write running inside either backend's group commit is handed, beside its
connection: the commit's clock and a way to emit the events the commit makes of its own
(instance lifecycle events), appended in the same transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eventhub.events import NewEvent

# Appends these events in the transaction under way (the store gives each its offset).
Emit = Callable[[Sequence[NewEvent]], None]


@dataclass(frozen=True, slots=True)
class Clock:
    """The time of one commit: as a number (timeouts, expiry) and as text (history)."""

    now: float
    text: str
