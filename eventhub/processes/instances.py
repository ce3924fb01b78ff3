"""Process instances (SPEC §6.2): their states, their history, and how an event that names
one (``cxpinstanceid``) is correlated, as pure functions.

States: Running (a step is being carried out), Waiting (asleep until an event of one type
names it, or its timeout), and the final ones, Completed, Failed, TimedOut, Cancelled.

An event that names an instance meets one of four fates (``Fate``), decided in the commit
that stores it (``correlate``), so the ingest receipt tells the truth:

- ``woke``      the instance was Waiting for exactly its type: it runs its next step.
- ``buffered``  the instance is live but not waiting for this type (yet): the event is kept
                for the instance's ``bufferSeconds`` and consumed, oldest first, by the
                first wait for its type (Zeebe's message TTL). It is ``consumed`` then.
- ``unrouted``  no such instance, the instance has finished, a buffer of 0 seconds, or the
                buffer time ran out, or the instance finished with the event still buffered.

Every such event has exactly one fate at a time, and a buffered one moves to exactly one of
consumed or unrouted: never lost, never consumed twice.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from eventhub.events import StoredEvent

CORRELATION_ATTRIBUTE = "cxpinstanceid"


class State(enum.StrEnum):
    RUNNING = "Running"
    WAITING = "Waiting"
    COMPLETED = "Completed"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    CANCELLED = "Cancelled"


LIVE = frozenset({State.RUNNING, State.WAITING})


class Fate(enum.StrEnum):
    WOKE = "woke"
    BUFFERED = "buffered"
    CONSUMED = "consumed"
    UNROUTED = "unrouted"

    @property
    def receipt(self) -> str:
        """What the ingest receipt says: a buffered event consumed since then woke its
        instance (a producer re-sending it learns that)."""
        return "woke" if self is Fate.CONSUMED else str(self)


class Happened(enum.StrEnum):
    """What a line of an instance's history says happened: a transition (also the name of
    its ``eventhub.instance.<name>`` event), or a call, a retry, an event buffered or
    unrouted."""

    STARTED = "started"
    WAITING = "waiting"
    RESUMED = "resumed"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timedout"
    CANCELLED = "cancelled"
    CALLED = "called"
    RETRYING = "retrying"
    BUFFERED = "buffered"
    UNROUTED = "unrouted"


# The transitions, by the names the engine and the store use.
STARTED = Happened.STARTED
WAITING = Happened.WAITING
RESUMED = Happened.RESUMED
COMPLETED = Happened.COMPLETED
FAILED = Happened.FAILED
TIMED_OUT = Happened.TIMED_OUT
CANCELLED = Happened.CANCELLED
LIFECYCLE = (STARTED, WAITING, RESUMED, COMPLETED, FAILED, TIMED_OUT, CANCELLED)
FINAL_MOVES = {
    State.COMPLETED: COMPLETED,
    State.FAILED: FAILED,
    State.TIMED_OUT: TIMED_OUT,
    State.CANCELLED: CANCELLED,
}
# History entries that are not transitions.
CALLED = Happened.CALLED
RETRYING = Happened.RETRYING
BUFFERED = Happened.BUFFERED
UNROUTED = Happened.UNROUTED


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of an instance's history."""

    at: str
    step: str | None
    what: str
    offset: int | None = None
    detail: str | None = None


@dataclass(slots=True)
class Instance:
    id: str
    definition_id: str
    version: int
    state: State
    step: int
    variables: dict[str, Any]
    buffer_for: float
    started_by: dict[str, Any]  # {source, id, offset}
    last_offset: int  # the event that started it or last moved it past a wait
    created_at: str
    updated_at: str
    waiting_for: str | None = None
    due: float | None = None
    error: str | None = None
    seq: int = 0
    history: list[Entry] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.state in LIVE


@dataclass(frozen=True, slots=True)
class Named:
    """What the correlation needs of the instance an event names."""

    state: State
    waiting_for: str | None
    buffer_for: float


def instance_named(attributes: dict[str, Any]) -> str | None:
    """The instance an event names: its ``cxpinstanceid``, if a non-empty string."""
    value = attributes.get(CORRELATION_ATTRIBUTE)
    return value if isinstance(value, str) and value else None


def correlate(named: Named | None, type_: str) -> tuple[Fate, str | None]:
    """The fate of an event of ``type_`` naming an instance that is ``named`` (None: no such
    instance), and the reason when it is unrouted."""
    if named is None:
        return Fate.UNROUTED, "no such instance"
    if named.state not in LIVE:
        return Fate.UNROUTED, f"the instance is {named.state}"
    if named.state is State.WAITING and named.waiting_for == type_:
        return Fate.WOKE, None
    if named.buffer_for <= 0:
        return Fate.UNROUTED, "the instance is not waiting for this type and buffers nothing"
    return Fate.BUFFERED, None


# -- what the store hands back (eventhub/log/sqlite/instances.py) ----------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    """What ``open_wait`` did: consumed a buffered event (``offset``, and the variables it
    gave), or put the instance to sleep (``offset`` None)."""

    offset: int | None
    variables: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Then:
    """What follows a call step, when the store can do it in the same commit: the end
    (``complete``), or a wait for ``wait_type``."""

    complete: bool = False
    wait_type: str | None = None
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Advanced:
    """What ``advance`` did: nothing (the instance had moved), or moved on and then maybe
    completed or opened its wait (``opened``)."""

    moved: bool
    completed: bool = False
    opened: Opened | None = None


@dataclass(frozen=True, slots=True)
class Woken:
    """An instance an event woke, as it is after that commit, and the event: its task starts
    from these without reading either back."""

    instance: Instance
    cause: StoredEvent
