"""The hub's own lifecycle events (SPEC §5): every subscription transition is appended to the
log as a CloudEvent from source ``eventhub``, so operators subscribe to them like any other
trigger of the built-in ``eventhub`` model."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from eventhub.clock import rfc3339
from eventhub.delivery.states import Move
from eventhub.events import DataKind, NewEvent, digest_of
from eventhub.models import Subscription

SOURCE = "eventhub"
MODEL = "eventhub"

# What each move is called in the event type eventhub.subscription.<name>.
NAMES: dict[Move | None, str] = {
    None: "created",
    Move.PAUSE: "paused",
    Move.RESUME: "resumed",
    Move.RESUME_FROM_LATEST: "resumed",
    Move.UPDATE: "updated",
    Move.REPLAY: "replayed",
    Move.DELETE: "deleted",
    Move.FAIL: "failed",
    Move.REJECT: "rejected",
    Move.RECOVER: "recovered",
    Move.SUSPEND: "suspended",
}
LIMIT_REACHED = "eventhub.subscriptions.limit_reached"


def type_of(move: Move | None) -> str:
    return f"eventhub.subscription.{NAMES[move]}"


def event(type_: str, now: float, data: dict[str, Any], subject: str | None = None) -> NewEvent:
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "source": SOURCE,
        "type": type_,
        "time": rfc3339(now),
        "datacontenttype": "application/json",
    }
    if subject is not None:
        attributes["subject"] = subject
    body = orjson.dumps(data)
    return NewEvent(attributes, body, DataKind.JSON, digest_of(attributes, body, DataKind.JSON))


def transition(sub: Subscription, move: Move | None, reason: str, now: float) -> NewEvent:
    data = {
        "subscriptionId": sub.id,
        "name": sub.name,
        "owner": sub.owner,
        "knowledgeModelId": sub.km,
        "triggerId": sub.trigger,
        "status": str(sub.status) if move is not Move.DELETE else None,
        "reason": reason,
        "offset": sub.cursor,
        "lost": sub.lost,
        "skipped": sub.skipped,
    }
    return event(type_of(move), now, data, subject=sub.id)


def builtin_model(extra: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The draft of the built-in ``eventhub`` model: one trigger per notification type, and
    the ``extra`` triggers of other parts (the process instances' lifecycle)."""
    names = sorted(set(NAMES.values()))
    triggers = [
        {
            "id": f"subscription-{name}",
            "name": f"Subscription {name}",
            "description": f"A subscription was {name}.",
            "filters": [{"exact": {"source": SOURCE, "type": f"eventhub.subscription.{name}"}}],
        }
        for name in names
    ]
    triggers.append(
        {
            "id": "subscriptions-limit-reached",
            "name": "Subscription limit reached",
            "description": "A subscription was refused: the hub holds max_subscriptions.",
            "filters": [{"exact": {"source": SOURCE, "type": LIMIT_REACHED}}],
        }
    )
    triggers.extend(extra)
    triggers.append(
        {
            "id": "all",
            "name": "Every hub notification",
            "description": "Every lifecycle event the hub emits.",
            "filters": [{"exact": {"source": SOURCE}}, {"prefix": {"type": "eventhub."}}],
        }
    )
    return {
        "id": MODEL,
        "name": "eventhub",
        "description": "The hub's own lifecycle notifications.",
        "triggers": triggers,
    }
