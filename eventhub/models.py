"""The records the hub manages beside events: knowledge models with their triggers, and
subscriptions with their delivery state."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


# The state machine over it is delivery/states.py; the enum lives here, in a leaf, because the
# stored records (and so the log) need it too.
class Status(enum.StrEnum):
    """A subscription's state: Active delivers; Failed (transient errors, retries spent) probes
    its callback to recover; Rejected (the receiver refused, retries spent) waits for an
    update or replay; Paused waits for resume; Suspended (``suspend_after`` in Failed, 8 h by
    default) lost its backlog and waits for an update."""

    ACTIVE = "Active"
    FAILED = "Failed"
    REJECTED = "Rejected"
    PAUSED = "Paused"
    SUSPENDED = "Suspended"


class Format(enum.StrEnum):
    """How a subscription's deliveries look (delivery/render.py): ``envelope`` (a JSON array
    of ``{subscriptionId, triggerId, eventId, offset, creationDate, event}``, up to
    ``batchSize`` events), ``binary`` and ``structured`` (CloudEvents HTTP modes, one event a
    request), ``batch`` (``application/cloudevents-batch+json``)."""

    ENVELOPE = "envelope"
    BINARY = "binary"
    STRUCTURED = "structured"
    BATCH = "batch"


FORMATS = tuple(f.value for f in Format)


@dataclass(frozen=True, slots=True)
class Trigger:
    id: str
    name: str
    description: str
    filters: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """A knowledge model as it was when published (or as the draft stands). The API answers
    with it as ``api.catalog.KnowledgeModel`` and ``KnowledgeModelSummary``."""

    id: str
    name: str
    description: str
    triggers: dict[str, Trigger]
    version: int = 0
    published_at: str | None = None

    @staticmethod
    def from_json(data: dict[str, Any]) -> ModelVersion:
        return ModelVersion(
            id=data["id"],
            name=data["name"],
            description=data.get("description", ""),
            triggers={
                t["id"]: Trigger(t["id"], t["name"], t.get("description", ""), tuple(t["filters"]))
                for t in data.get("triggers", [])
            },
            version=data.get("version", 0),
            published_at=data.get("publishedAt"),
        )


@dataclass(slots=True)
class Subscription:
    id: str
    owner: str
    km: str
    trigger: str
    tid: int
    name: str
    uri: str
    headers: dict[str, str]
    skip_errors: bool
    format: str
    batch_size: int
    max_retries: int
    secret: str
    status: Status
    cursor: int
    created_at: str
    updated_at: str
    previous_secret: str | None = None
    previous_secret_expires: float | None = None
    latest_succeed_event: str | None = None
    latest_succeed_offset: int | None = None
    last_error: str | None = None
    delivered: int = 0
    skipped: int = 0
    lost: int = 0
    failed_since: float | None = None
    attempts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def config_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uri": self.uri,
            "headers": self.headers,
            "skipErrors": self.skip_errors,
            "format": self.format,
            "batchSize": self.batch_size,
            "maxRetries": self.max_retries,
        }

    def secrets_json(self) -> dict[str, Any]:
        return {
            "current": self.secret,
            "previous": self.previous_secret,
            "previousExpires": self.previous_secret_expires,
        }


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__ (~1.1 us
# against ~0.3), and one is built for every delivery. Nothing changes one once built.
@dataclass(slots=True)
class Attempt:
    n: int
    at: str
    first_offset: int
    last_offset: int
    status: int | None
    latency_ms: float
    error: str | None
    webhook_id: str
