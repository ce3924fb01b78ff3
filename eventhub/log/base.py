"""The storage port: the few interfaces the layers above use, and ``Store``, their union, for
the hub that owns it. ``log/sqlite/`` implements ``Store`` (the embedded default); a second
backend (``log/postgres/``) implements it too, method for method, and nothing above changes.

Each consumer types its dependency as the narrowest interface it needs:

- ``TriggerIndex``: the pages of one trigger (``consume/pages.py``);
- ``EventLog``: append, reads, the trigger index, figures, traces, retention, snapshots
  (``api/events.py``, ``retention.py``, ``backup.py``);
- ``Catalogue``: knowledge models and their triggers (``catalog/service.py``);
- ``SubscriptionStore``: subscriptions, cursors, attempts (with ``TriggerIndex`` and
  ``Credentials``: ``DeliveryStore``, for ``delivery/``);
- ``Credentials``: API keys and sources (``hub.py``, ``auth.py``'s keyring);
- ``Instances``: process definitions, instances, unrouted events (with ``TriggerIndex``:
  ``ProcessStore``, for ``processes/engine.py``).

What a store calls back is fixed when it is built (``Hooks``), never set afterwards."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from eventhub import tasks
from eventhub.events import Appended, NewEvent, StoredEvent
from eventhub.log.figures import Figures, Position
from eventhub.log.records import KeyRecord, Pruned, SourceRecord
from eventhub.models import Attempt, Subscription
from eventhub.processes.instances import Advanced, Entry, Instance, Opened, State, Then, Woken
from eventhub.traces import TraceMember, TraceSummary

if TYPE_CHECKING:
    # Only for annotations: definitions.py imports delivery/ (egress rules), which imports
    # this module; at run time the port needs none of it.
    from eventhub.processes.definitions import Definition, Stored

# (definition id, version, step index) -> the step's id, None past the last step
StepNames = Callable[[str, int, int], str | None]
Matcher = Callable[[dict[str, Any]], Iterable[int]]


@dataclass(frozen=True, slots=True)
class Hooks:
    """What a store calls, given at construction (so a store is never half-built). The hub
    builds them from its parts; each may be None (a store in a test, a tool).

    When (the contract both backends keep, ``tests/contract/store``): ``matcher`` and
    ``step_names`` inside the commit; every other hook after the commit is durable, on the
    event loop, possibly after the call that committed returned (PostgreSQL hears commits by
    ``LISTEN/NOTIFY``, milliseconds later: SPEC §9), and one commit's calls before any later
    commit's of the same hook. A commit that appended no new event (duplicates only) calls
    neither ``on_commit`` nor ``on_appended``. Callers wait for a hook: none may assume it
    was called when the call that committed returned."""

    # Which triggers an event fires: called once per appended event, inside the commit (the
    # trigger index is written in the append transaction). Only numbers the store handed out
    # (``publish``, ``ensure_trigger``): retention cuts the index of those.
    matcher: Matcher | None = None
    # After a commit that fired triggers: their numbers (wakes supervisors and starters).
    on_commit: Callable[[set[int]], None] | None = None
    # After each commit that appended events: the new head (``GET /events``'s long poll).
    on_appended: Callable[[int], None] | None = None
    # The step ids history lines name. Events naming an instance are correlated inside the
    # commit that appends them (``Appended.correlation`` says how), only with this set.
    step_names: StepNames | None = None
    # After a commit whose events woke instances (each as it is now, with the event) or were
    # buffered for them (the earliest expiry among those).
    on_instances: Callable[[list[Woken], float | None], None] | None = None
    # The events a commit appended of its own (instance lifecycle events, made inside the
    # transaction), once it committed: the transition log lines.
    on_emitted: Callable[[list[NewEvent]], None] | None = None
    # Another process saved or deleted this subscription (PostgreSQL only: SQLite has one).
    on_subscription: Callable[[str], None] | None = None
    # Another process changed an API key, a source or the catalogue (PostgreSQL only):
    # ``(kind, id)``, kind "key" (a key id), "source" (a name) or "model" (a model id); id
    # None when anything of that kind may have changed (notifications were lost).
    on_change: Callable[[str, str | None], None] | None = None
    # The catalogue's version in the database moved since the matcher was last brought up to
    # it (another process published or deleted a model): awaited inside an append, under the
    # log head's lock and before its events are matched, to reload the match index from the
    # committed catalogue (PostgreSQL only; SQLite has one process, whose edits install
    # themselves).
    reload_matcher: Callable[[], Awaitable[None]] | None = None
    # Another process's commit made these instances Running, or set a due time (the
    # earliest; None: none): the holders of their partitions drive them (PostgreSQL only).
    on_instance_ids: Callable[[set[str], float | None], None] | None = None
    # Another process's commit cancelled these instances: their holder stops their tasks
    # (a call in flight, its retries) at once (PostgreSQL only).
    on_instances_cancelled: Callable[[set[str]], None] | None = None
    # Another process saved or deleted this process definition (None: any may have
    # changed, e.g. after a lost connection): reload it (PostgreSQL only).
    on_definition: Callable[[str | None], None] | None = None


# A store that calls nothing back: a tool's, or a test's that needs no hub.
NO_HOOKS = Hooks()


class TriggerIndex(Protocol):
    """Which events fired which trigger, in offset order: what consumers page through."""

    async def read_trigger_after(self, tid: int, offset: int, limit: int) -> list[StoredEvent]: ...
    async def trigger_head(self, tid: int) -> int: ...
    async def count_between(self, tid: int, after: int, upto: int) -> int: ...


class EventLog(TriggerIndex, Protocol):
    """The append-only log: appends, reads, traces, figures, retention and snapshots."""

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


class Catalogue(Protocol):
    """Knowledge models (drafts, published versions) and the triggers they define."""

    async def load_models(self) -> list[tuple[str, dict[str, Any], int]]: ...
    async def load_published(self) -> list[dict[str, Any]]: ...
    async def save_draft(self, km: str, draft: dict[str, Any], now: str) -> None: ...
    async def publish(
        self, km: str, snapshot: dict[str, Any], now: str
    ) -> dict[tuple[str, str], int]: ...
    async def delete_model(self, km: str) -> None: ...
    async def trigger_ids(self) -> dict[tuple[str, str], int]: ...


class SubscriptionStore(Protocol):
    """Subscriptions, their cursors and counters, and their delivery attempts."""

    async def save_subscription(self, sub: Subscription) -> None: ...
    async def save_delivery(self, sub: Subscription, attempt: Attempt | None) -> None: ...
    def record_delivery(self, sub: Subscription, attempt: Attempt | None) -> None:
        """``save_delivery`` without waiting for the commit (a cursor after a 2xx)."""
        ...

    async def delete_subscription(self, sub_id: str) -> None: ...
    async def load_subscriptions(self, ids: Collection[str] | None = None) -> list[Subscription]:
        """Every subscription, or only those of ``ids`` (those that exist)."""
        ...

    async def list_attempts(self, sub_id: str, limit: int) -> list[Attempt]: ...


class Credentials(Protocol):
    """API keys (their hashes) and sources (their signing secrets)."""

    async def put_key(self, key: KeyRecord) -> None: ...
    async def revoke_key(self, key_id: str, at: str) -> bool: ...
    async def list_keys(self) -> list[KeyRecord]: ...
    async def put_source(self, source: SourceRecord) -> None: ...
    async def delete_source(self, name: str) -> bool: ...
    async def list_sources(self) -> list[SourceRecord]: ...


class Instances(Protocol):
    """Process definitions and instances (SPEC §6.2; eventhub/processes), and the events an
    instance needs: its start trigger's number, the event at an offset. Every change of an
    instance is compare-and-set on its state (and step): None/False when it had moved."""

    async def ensure_trigger(self, km: str, trigger: str) -> int:
        """The match-index number of ``(km, trigger)``, made if new (a process's own start)."""
        ...

    async def read_event(self, offset: int) -> StoredEvent | None: ...

    async def load_definitions(self) -> tuple[list[Stored], list[Definition]]:
        """(every current definition, every version any instance may run)."""
        ...

    async def save_definition(self, stored: Stored) -> tuple[int, int]:
        """Save ``stored`` as a new version of its definition; returns the version number and
        the start cursor as stored (never moved back while the start trigger is the same)."""
        ...

    async def delete_definition(self, definition_id: str) -> None: ...

    async def definition_starts(self) -> dict[str, tuple[int, int]]:
        """Every current definition's (version, start trigger): what an append checks its
        starts against when the catalogue version moved (PostgreSQL)."""
        ...

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


class DeliveryStore(TriggerIndex, SubscriptionStore, Credentials, Protocol):
    """What ``delivery/`` uses: trigger pages and counts, subscriptions, and the keys whose
    revocation pauses their subscriptions."""


class ProcessStore(Instances, TriggerIndex, Protocol):
    """What the process engine uses: instances, and the pages of their triggers."""


class Store(EventLog, Catalogue, SubscriptionStore, Credentials, Instances, Protocol):
    """Everything the storage layer offers: what the hub owns and hands out, narrowed."""

    async def open(self, owner: tasks.Tasks | None = None) -> None:
        """Open, with the store's background tasks watched by ``owner``."""
        ...

    async def close(self) -> None:
        """Release every resource, whatever failed; never raises."""
        ...

    async def check_writable(self) -> None:
        """Raise unless a small real write commits now (``/readyz``)."""
        ...
