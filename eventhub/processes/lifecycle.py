"""What an instance says about itself: its transitions as CloudEvents in the log
(``eventhub.instance.<move>``, SPEC §6.2), and the call step's request (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from eventhub import notifications
from eventhub.clock import rfc3339
from eventhub.codec import jsontext
from eventhub.delivery.render import header_value
from eventhub.events import NewEvent, StoredEvent
from eventhub.processes.instances import LIFECYCLE, State

TYPE_PREFIX = "eventhub.instance."
CALL_TYPE = "eventhub.instance.call"


def type_of(move: str) -> str:
    return TYPE_PREFIX + move


def event(
    move: str,
    instance_id: str,
    definition_id: str,
    state: State,
    step: str | None,
    now: float,
    reason: str | None = None,
    offset: int | None = None,
) -> NewEvent:
    """The lifecycle event of one transition; its subject is the instance id, so a trigger
    can follow one instance. It carries no ``cxpinstanceid``: it names no instance to wake."""
    data: dict[str, Any] = {
        "instanceId": instance_id,
        "definitionId": definition_id,
        "state": str(state),
        "step": step,
    }
    if reason is not None:
        data["reason"] = reason
    if offset is not None:
        data["offset"] = offset
    return notifications.event(type_of(move), now, data, subject=instance_id)


def builtin_triggers() -> list[dict[str, Any]]:
    """Triggers of the built-in ``eventhub`` model for the instance lifecycle."""
    source = notifications.SOURCE
    triggers = [
        {
            "id": f"instance-{move}",
            "name": f"Instance {move}",
            "description": f"A process instance {move}.",
            "filters": [{"exact": {"source": source, "type": type_of(move)}}],
        }
        for move in LIFECYCLE
    ]
    triggers.append(
        {
            "id": "instances-all",
            "name": "Every instance transition",
            "description": "Every lifecycle event of every process instance.",
            "filters": [{"exact": {"source": source}}, {"prefix": {"type": TYPE_PREFIX}}],
        }
    )
    return triggers


def call_id(instance_id: str, step_index: int) -> str:
    """A call step's ``ce-id`` (and ``webhook-id``): the same for every attempt at it, also
    after a crash, so a receiver can drop a repeat."""
    return f"call_{instance_id}_{step_index}"


def render_call(
    instance_id: str,
    definition_id: str,
    step: str,
    step_index: int,
    variables: Mapping[str, Any],
    cause: StoredEvent | None,
    now: float,
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a call step: a binary-mode CloudEvent whose data is
    ``{instanceId, definitionId, step, variables, event}``; ``event`` is the CloudEvent that
    started the instance or last moved it past a wait (null if retention removed it)."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": call_id(instance_id, step_index),
        "ce-source": header_value(notifications.SOURCE),
        "ce-type": CALL_TYPE,
        "ce-subject": header_value(step),
        "ce-time": rfc3339(now),
        "ce-cxpinstanceid": header_value(instance_id),
        "content-type": "application/json",
    }
    data = {
        "instanceId": instance_id,
        "definitionId": definition_id,
        "step": step,
        "variables": jsontext_fragment(variables),
        "event": None if cause is None else cause.to_cloudevent(),
    }
    return headers, orjson.dumps(data)


def jsontext_fragment(value: Mapping[str, Any]) -> orjson.Fragment:
    """Variables written exactly (integers beyond 64 bits digit for digit)."""
    return orjson.Fragment(jsontext.dumps(dict(value)))
