"""Process definitions (SPEC §6.2): what ``PUT /api/processes/{id}`` accepts, as pure
functions and frozen values.

A definition has a start (a published trigger, or filters of its own) and ordered steps,
each a ``call`` (POST a signed CloudEvent to a URL) or a ``wait`` (sleep until an event of a
type names the instance). Every change makes a new version; an instance runs the version it
started on to its end, so editing a definition never reshapes an instance half way through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventhub import errors
from eventhub.catalog import filters
from eventhub.delivery import egress, http1

DEFAULT_BUFFER_SECONDS = 3600.0
MAX_STEPS = 100
MAX_BUFFER_SECONDS = 30 * 24 * 3600.0
MAX_TIMEOUT_SECONDS = 365 * 24 * 3600.0
MASK = "********"  # a call header's value in reads: write-only, like a callback's
_RESERVED_HEADERS = ("webhook-", "ce-", "content-type")


@dataclass(frozen=True, slots=True)
class Call:
    uri: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Wait:
    type: str
    timeout: float | None  # seconds; None: waits for ever


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    action: Call | Wait


@dataclass(frozen=True, slots=True)
class Start:
    """A published trigger (``km``, ``trigger``), or ``filters`` of the definition's own."""

    km: str | None = None
    trigger: str | None = None
    filters: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class Definition:
    id: str
    name: str
    start: Start
    steps: tuple[Step, ...]
    buffer_seconds: float = DEFAULT_BUFFER_SECONDS
    version: int = 0

    def step_id(self, index: int) -> str | None:
        return self.steps[index].id if 0 <= index < len(self.steps) else None

    def to_json(self, secret_headers: bool = False) -> dict[str, Any]:
        """The definition as the API shows it (call header values masked) or, with
        ``secret_headers``, as the store keeps it (sealed)."""
        steps: list[dict[str, Any]] = []
        for step in self.steps:
            if isinstance(step.action, Call):
                headers = dict(step.action.headers)
                if not secret_headers:
                    headers = dict.fromkeys(headers, MASK)
                steps.append({"id": step.id, "call": {"uri": step.action.uri, "headers": headers}})
            else:
                wait: dict[str, Any] = {"type": step.action.type}
                if step.action.timeout is not None:
                    wait["timeoutSeconds"] = step.action.timeout
                steps.append({"id": step.id, "wait": wait})
        start: dict[str, Any]
        if self.start.filters is not None:
            start = {"filters": list(self.start.filters)}
        else:
            start = {"knowledgeModel": self.start.km, "trigger": self.start.trigger}
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "start": start,
            "steps": steps,
            "bufferSeconds": self.buffer_seconds,
        }


def check_id(definition_id: str) -> None:
    if not definition_id or len(definition_id) > 200 or "/" in definition_id:
        raise errors.InvalidRequest("a process definition id must be 1-200 characters without '/'")


def parse(definition_id: str, body: Any, rules: egress.Rules) -> Definition:
    """A definition from the API's JSON (version 0: the store numbers it). Every call URL
    must pass the egress ``rules`` now; it is judged again at every connect."""
    check_id(definition_id)
    if not isinstance(body, dict):
        raise errors.InvalidRequest("send a JSON object {name, start, steps, bufferSeconds?}")
    unknown = set(body) - {"id", "name", "start", "steps", "bufferSeconds", "version"}
    if unknown:
        raise errors.InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    if "id" in body and body["id"] != definition_id:
        raise errors.InvalidRequest("id in the body must match the path, or be left out")
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise errors.InvalidRequest("name is required and must be a non-empty string")
    return Definition(
        definition_id,
        name,
        _start(body.get("start")),
        _steps(body.get("steps"), rules),
        _seconds(body, "bufferSeconds", DEFAULT_BUFFER_SECONDS, MAX_BUFFER_SECONDS, zero=True),
    )


def from_json(data: Mapping[str, Any]) -> Definition:
    """A definition as the store keeps it (``to_json(secret_headers=True)``), trusted."""
    start = data["start"]
    return Definition(
        data["id"],
        data["name"],
        Start(filters=tuple(start["filters"]))
        if "filters" in start
        else Start(start["knowledgeModel"], start["trigger"]),
        tuple(
            Step(s["id"], Call(s["call"]["uri"], dict(s["call"].get("headers", {}))))
            if "call" in s
            else Step(s["id"], Wait(s["wait"]["type"], s["wait"].get("timeoutSeconds")))
            for s in data["steps"]
        ),
        float(data["bufferSeconds"]),
        int(data["version"]),
    )


def _start(start: Any) -> Start:
    if not isinstance(start, dict):
        raise errors.InvalidRequest(
            'start is required: {"knowledgeModel", "trigger"} or {"filters": [...]}'
        )
    if "filters" in start:
        if set(start) != {"filters"}:
            raise errors.InvalidRequest("start takes filters, or knowledgeModel and trigger")
        raw = start["filters"]
        if not isinstance(raw, list) or not raw:
            raise errors.InvalidRequest("start.filters must be a non-empty list of filters")
        try:
            filters.compile_filters(raw)
        except errors.InvalidRequest as exc:
            raise errors.InvalidRequest(f"start.filters: {exc.message}") from None
        return Start(filters=tuple(raw))
    km, trigger = start.get("knowledgeModel"), start.get("trigger")
    if set(start) != {"knowledgeModel", "trigger"} or not all(
        isinstance(v, str) and v for v in (km, trigger)
    ):
        raise errors.InvalidRequest(
            "start takes knowledgeModel and trigger (non-empty strings), or filters"
        )
    return Start(km, trigger)


def _steps(raw: Any, rules: egress.Rules) -> tuple[Step, ...]:
    if not isinstance(raw, list) or not raw:
        raise errors.InvalidRequest("steps must be a non-empty list")
    if len(raw) > MAX_STEPS:
        raise errors.InvalidRequest(f"a process has at most {MAX_STEPS} steps")
    out: list[Step] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"steps[{i}]"
        if not isinstance(item, dict):
            raise errors.InvalidRequest(f"{where} must be an object")
        step_id = item.get("id")
        if not isinstance(step_id, str) or not step_id or len(step_id) > 200:
            raise errors.InvalidRequest(f"{where}.id must be a string of 1-200 characters")
        if step_id in seen:
            raise errors.InvalidRequest(f"{where}.id {step_id!r} is used twice")
        seen.add(step_id)
        kinds = set(item) - {"id"}
        if kinds == {"call"}:
            out.append(Step(step_id, _call(item["call"], f"{where}.call", rules)))
        elif kinds == {"wait"}:
            out.append(Step(step_id, _wait(item["wait"], f"{where}.wait")))
        else:
            raise errors.InvalidRequest(f"{where} must have id and exactly one of call, wait")
    return tuple(out)


def _call(raw: Any, where: str, rules: egress.Rules) -> Call:
    if not isinstance(raw, dict) or not isinstance(raw.get("uri"), str):
        raise errors.InvalidRequest(f"{where}.uri is required")
    if set(raw) - {"uri", "headers"}:
        raise errors.InvalidRequest(f"{where} takes uri and headers only")
    uri = raw["uri"]
    refusal = egress.check_url(uri, rules)
    if refusal is not None:
        raise errors.CallbackRefused(
            f"{where}.uri: {refusal.message}", [errors.Problem(refusal.rule, f"{where}.uri")]
        )
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise errors.InvalidRequest(f"{where}.headers must map names to strings")
    reserved = [k for k in headers if k.lower().startswith(_RESERVED_HEADERS)]
    if reserved:
        raise errors.InvalidRequest(f"{where}.headers may not set {', '.join(reserved)}")
    for name, value in headers.items():
        try:
            http1.check_header(name, value)
        except ValueError as exc:
            raise errors.InvalidRequest(f"{where}.headers: {exc}") from None
    return Call(uri, headers)


def _wait(raw: Any, where: str) -> Wait:
    if not isinstance(raw, dict):
        raise errors.InvalidRequest(f"{where} must be an object {{type, timeoutSeconds?}}")
    if set(raw) - {"type", "timeoutSeconds"}:
        raise errors.InvalidRequest(f"{where} takes type and timeoutSeconds only")
    type_ = raw.get("type")
    if not isinstance(type_, str) or not type_:
        raise errors.InvalidRequest(f"{where}.type must be a non-empty string")
    if "timeoutSeconds" not in raw:
        return Wait(type_, None)
    return Wait(type_, _seconds(raw, "timeoutSeconds", None, MAX_TIMEOUT_SECONDS, where=where))


def _seconds(
    body: Mapping[str, Any],
    name: str,
    default: float | None,
    most: float,
    zero: bool = False,
    where: str = "",
) -> float:
    label = f"{where}.{name}" if where else name
    value = body.get(name, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
        or value > most
    ):
        low = "0" if zero else "more than 0"
        raise errors.InvalidRequest(f"{label} must be a number of seconds from {low} to {most:g}")
    return float(value)


@dataclass(slots=True)
class Stored:
    """A definition's current version, and what the hub keeps beside it."""

    definition: Definition
    owner: str  # the admin key that last defined it: the share of connections its calls use
    secret: str  # whsec_: signs its calls; shown once, at creation
    start_tid: int
    cursor: int  # the start trigger's offset instances were started up to (inclusive)
    created_at: str
    updated_at: str
