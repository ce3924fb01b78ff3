"""The narrow storage interface. ``SqliteStore`` is the one implementation today; a second
backend (PostgreSQL) implements this Protocol and nothing above it changes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eventhub import tasks
from eventhub.events import Appended, NewEvent, StoredEvent
from eventhub.models import Attempt, Subscription
from eventhub.traces import TraceMember, TraceSummary


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    hash: bytes
    name: str
    role: str
    sources: tuple[str, ...] | None
    created_at: str
    revoked_at: str | None = None


@dataclass(frozen=True, slots=True)
class SourceRecord:
    name: str
    secret: str
    require_signature: bool
    created_at: str
    # The most a request without an API key may send for this source; None: the hub's
    # ``max_unauthenticated_body_bytes``.
    max_body_bytes: int | None = None


class Store(Protocol):
    """Everything above the storage layer talks to this, never to SQLite."""

    # Set by the hub before traffic: which triggers an event fires (called once per appended
    # event, inside the commit), and who to tell after a commit that fired triggers.
    matcher: Callable[[dict[str, Any]], Iterable[int]] | None
    on_commit: Callable[[set[int]], None] | None

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
    async def head(self) -> int: ...
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
