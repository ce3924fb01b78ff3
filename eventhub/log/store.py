"""The narrow storage interface. ``SqliteStore`` is the one implementation today; a second
backend (PostgreSQL) implements this Protocol and nothing above it changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from eventhub.events import Appended, NewEvent, StoredEvent


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


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # the log
    async def append(self, events: Sequence[NewEvent]) -> list[Appended]:
        """Durably append a batch, all or nothing; returns once it is committed."""
        ...

    async def read_after(self, offset: int, limit: int) -> list[StoredEvent]: ...
    async def get_latest(self, source: str, id: str) -> StoredEvent | None: ...
    async def head(self) -> int: ...

    # keys and sources
    async def put_key(self, key: KeyRecord) -> None: ...
    async def revoke_key(self, key_id: str, at: str) -> bool: ...
    async def list_keys(self) -> list[KeyRecord]: ...
    async def put_source(self, source: SourceRecord) -> None: ...
    async def delete_source(self, name: str) -> bool: ...
    async def list_sources(self) -> list[SourceRecord]: ...
