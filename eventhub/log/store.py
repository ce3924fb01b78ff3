"""The narrow storage interface. ``SqliteStore`` is the one implementation today; a second
backend (PostgreSQL) implements this Protocol and nothing above it changes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from eventhub import tasks
from eventhub.events import Appended, NewEvent, StoredEvent
from eventhub.log.figures import Figures, Position
from eventhub.log.records import KeyRecord, Pruned, SourceRecord
from eventhub.models import Attempt, Subscription
from eventhub.processes.definitions import Definition, Stored
from eventhub.processes.instances import Advanced, Entry, Instance, Opened, State, Then, Woken
from eventhub.traces import TraceMember, TraceSummary

if TYPE_CHECKING:
    from eventhub.log.sqlite.instances import StepNames


class Store(Protocol):
    """Everything above the storage layer talks to this, never to SQLite."""

    # Set by the hub before traffic: which triggers an event fires (called once per appended
    # event, inside the commit), and who to tell after a commit that fired triggers.
    matcher: Callable[[dict[str, Any]], Iterable[int]] | None
    on_commit: Callable[[set[int]], None] | None
    # Set by the process engine before traffic: the step ids history lines name, and who to
    # tell after a commit whose events woke instances (each as it is now, with the event) or
    # were buffered for them (the earliest expiry among those). Events naming an instance are
    # correlated inside the commit that appends them, and ``Appended.correlation`` says how.
    # Set by the hub: the new head after each commit that appended events (``GET /events``'s
    # long poll waits on it).
    on_appended: Callable[[int], None] | None
    step_names: StepNames | None
    on_instances: Callable[[list[Woken], float | None], None] | None
    # Set by the hub: the events a commit appended of its own (instance lifecycle events,
    # made inside the transaction), once it committed; the transition log lines.
    on_emitted: Callable[[list[NewEvent]], None] | None

    async def open(self, owner: tasks.Tasks | None = None) -> None:
        """Open, with the store's background tasks watched by ``owner``."""
        ...

    async def close(self) -> None:
        """Release every resource, whatever failed; never raises."""
        ...

    async def check_writable(self) -> None:
        """Raise unless a small real write commits now (``/readyz``)."""
        ...

    # the log
    async def append(self, events: Sequence[NewEvent]) -> list[Appended]:
        """Durably append a batch, all or nothing; returns once it is committed."""
        ...

    async def read_after(self, offset: int, limit: int) -> list[StoredEvent]: ...
    async def get_latest(self, source: str, id: str) -> StoredEvent | None: ...
    async def head(self) -> int:
        """The highest offset ever handed out (0: none), whatever retention deleted."""
        ...

    # retention and backup (SPEC §7)
    async def first_offset(self) -> int:
        """The first offset the log holds; with none, the next one to be handed out."""
        ...

    async def prune(self, older_than: str | None, max_bytes: int | None, limit: int) -> Pruned:
        """Delete up to ``limit`` of the oldest events, oldest first, those received before
        ``older_than`` (RFC 3339) or any while the database uses more than ``max_bytes``,
        stopping at the first event a live subscription, process start or instance still
        needs; in a write of its own (never a long transaction on the commit path)."""
        ...

    async def snapshot(self, target: Path) -> None:
        """Write a consistent copy of the whole database to ``target`` (an empty file) while
        the hub serves: every commit before the call is in it. One at a time."""
        ...

    async def read_figures(self, positions: Iterable[Position]) -> Figures:
        """What ``/metrics`` reads of the database (``log/figures.py``), off the event loop."""
        ...

    async def event_types(self) -> list[dict[str, Any]]: ...

    # traces (SPEC §6.1; eventhub/traces.py defines activity and trace order)
    async def list_traces(self, after: int, limit: int) -> list[TraceSummary]:
        """Traces by activity, descending, those below ``after`` (0: from the top)."""
        ...

    async def get_trace(self, trace_id: str) -> list[TraceMember]:
        """The trace's members in trace order, with their data; empty if it has none."""
        ...

    # the trigger index
    async def read_trigger_after(self, tid: int, offset: int, limit: int) -> list[StoredEvent]: ...
    async def trigger_head(self, tid: int) -> int: ...
    async def count_between(self, tid: int, after: int, upto: int) -> int: ...

    # keys and sources
    async def put_key(self, key: KeyRecord) -> None: ...
    async def revoke_key(self, key_id: str, at: str) -> bool: ...
    async def list_keys(self) -> list[KeyRecord]: ...
    async def put_source(self, source: SourceRecord) -> None: ...
    async def delete_source(self, name: str) -> bool: ...
    async def list_sources(self) -> list[SourceRecord]: ...

    # knowledge models
    async def load_models(self) -> list[tuple[str, dict[str, Any], int]]: ...
    async def load_published(self) -> list[dict[str, Any]]: ...
    async def save_draft(self, km: str, draft: dict[str, Any], now: str) -> None: ...
    async def publish(
        self, km: str, snapshot: dict[str, Any], now: str
    ) -> dict[tuple[str, str], int]: ...
    async def delete_model(self, km: str) -> None: ...
    async def trigger_ids(self) -> dict[tuple[str, str], int]: ...

    # subscriptions
    async def save_subscription(self, sub: Subscription) -> None: ...
    async def save_delivery(self, sub: Subscription, attempt: Attempt | None) -> None: ...
    def record_delivery(self, sub: Subscription, attempt: Attempt | None) -> None:
        """``save_delivery`` without waiting for the commit (a cursor after a 2xx)."""
        ...

    async def delete_subscription(self, sub_id: str) -> None: ...
    async def load_subscriptions(self) -> list[Subscription]: ...
    async def list_attempts(self, sub_id: str, limit: int) -> list[Attempt]: ...

    async def ensure_trigger(self, km: str, trigger: str) -> int:
        """The match-index number of ``(km, trigger)``, made if new (a process's own start)."""
        ...

    # process definitions and instances (SPEC §6.2; eventhub/processes). Every change of an
    # instance is compare-and-set on its state (and step): None/False when it had moved.
    async def load_definitions(self) -> tuple[list[Stored], list[Definition]]:
        """(every current definition, every version any instance may run)."""
        ...

    async def save_definition(self, stored: Stored) -> tuple[int, int]:
        """Save ``stored`` as a new version of its definition; returns the version number and
        the start cursor as stored (never moved back while the start trigger is the same)."""
        ...

    async def delete_definition(self, definition_id: str) -> None: ...
    async def start_instances(
        self, definition_id: str, cursor: int, started: Sequence[tuple[Instance, str | None]]
    ) -> list[str]:
        """Insert the instances (each with its first step's id) and move the definition's
        start cursor to ``cursor``, in one commit with their ``started`` events; those whose
        event is at or below the stored cursor are not started again. Returns the ids started."""
        ...

    async def advance_instance(
        self,
        instance_id: str,
        step: int,
        variables: dict[str, Any],
        entries: Sequence[Entry],
        then: Then | None = None,
    ) -> Advanced:
        """A call step done: the next step, and ``then`` (the end, or a wait) in one commit."""
        ...

    async def note_instance(self, instance_id: str, entries: Sequence[Entry]) -> None: ...
    async def open_wait(
        self, instance_id: str, step: int, type_: str, timeout_seconds: float | None
    ) -> Opened | None: ...
    async def finish_instance(
        self,
        instance_id: str,
        expect: Sequence[State],
        state: State,
        reason: str | None = None,
        step: int | None = None,
    ) -> Instance | None: ...
    async def expire_instances(self, limit: int) -> int:
        """Time out due waits and unroute expired buffered events, up to ``limit`` each."""
        ...

    async def next_due(self) -> float | None: ...
    async def get_instance(self, instance_id: str) -> Instance | None: ...
    async def load_instance(self, instance_id: str) -> Instance | None:
        """The instance without its history."""
        ...

    async def list_instances(
        self, definition: str | None, state: State | None, after: int, limit: int
    ) -> list[Instance]: ...
    async def running_instances(self) -> list[Instance]: ...
    async def live_instances(self, definition_id: str) -> list[str]: ...
    async def list_unrouted(self, after: int, limit: int) -> list[dict[str, Any]]: ...
    async def read_event(self, offset: int) -> StoredEvent | None: ...
