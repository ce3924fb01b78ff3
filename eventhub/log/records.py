"""What a store hands back of the records it keeps beside the log (keys, sources, retention's
word). A leaf: it imports nothing of eventhub, so every backend and every layer above may
import it without a cycle."""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one retention batch did (``Store.prune``)."""

    deleted: int
    first_offset: int  # the first offset the log holds now
    # The offset something live still needs, when it stopped a deletion that age or size
    # asked for (None: nothing held retention back).
    held_at: int | None = None
