"""Process definitions (SPEC §6.2): what ``PUT /api/processes/{id}`` accepts, as msgspec
Structs (the shape, which also documents the API) and pure functions (the rest), and the
frozen values the engine runs.

A definition has a start (a published trigger, or filters of its own) and ordered steps,
each a ``call`` (POST a signed CloudEvent to a URL) or a ``wait`` (sleep until an event of a
type names the instance). Every change makes a new version; an instance runs the version it
started on to its end, so editing a definition never reshapes an instance half way through.

The body (``ProcessBody``) is decoded by the API (``api/operation.decode``) and converted from the
catalogue file's ``[processes.<id>]`` tables (``definition_file``); ``parse`` then judges what
a schema cannot say: one kind per step and per start, unique step ids, the filters, the call
URL against the egress rules, and the call headers. A step is keyed by its kind
(``{"id", "call": {...}}``), not tagged by a field, so it is one Struct with both kinds
optional rather than a msgspec tagged union; the document says "exactly one" with ``oneOf``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from eventhub import errors, masking
from eventhub.catalog import filters
from eventhub.delivery import egress, http1

DEFAULT_BUFFER_SECONDS = 3600.0
MAX_STEPS = 100
MAX_BUFFER_SECONDS = 30 * 24 * 3600.0
MAX_TIMEOUT_SECONDS = 365 * 24 * 3600.0
_RESERVED_HEADERS = ("webhook-", "ce-", "content-type")

NonEmpty = Annotated[str, Meta(min_length=1)]
StepId = Annotated[str, Meta(min_length=1, max_length=200)]


class ProcessCall(msgspec.Struct, forbid_unknown_fields=True):
    """A call step: POST a signed CloudEvent to ``uri`` (it must pass the hub's egress rules,
    now and at every connect), with ``headers`` besides the signature's. Header values are
    write-only: reads show each as ``********``."""

    uri: str
    headers: dict[str, str] | None = None


class ProcessWait(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """A wait step: sleep until an event of ``type`` names the instance (``cxpinstanceid``),
    or ``timeoutSeconds`` pass (absent: waits for ever)."""

    type: NonEmpty
    timeout_seconds: Annotated[float, Meta(gt=0, le=MAX_TIMEOUT_SECONDS)] | UnsetType = UNSET


class ProcessStep(msgspec.Struct, forbid_unknown_fields=True):
    """One step: its ``id`` (unique in the definition) and exactly one of ``call``, ``wait``."""

    id: StepId
    call: ProcessCall | UnsetType = UNSET
    wait: ProcessWait | UnsetType = UNSET


class ProcessStart(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """What starts an instance: each event of a published trigger (``knowledgeModel`` and
    ``trigger``), or each event that matches ``filters`` of the definition's own."""

    knowledge_model: NonEmpty | UnsetType = UNSET
    trigger: NonEmpty | UnsetType = UNSET
    filters: Annotated[list[dict[str, Any]], Meta(min_length=1)] | UnsetType = UNSET


# What a schema can say of "exactly one kind" (parse checks it too, with a clearer message).
_ONE_KIND = Meta(
    extra_json_schema={
        "oneOf": [
            {"required": ["call"], "not": {"required": ["wait"]}},
            {"required": ["wait"], "not": {"required": ["call"]}},
        ]
    }
)
_ONE_START = Meta(
    extra_json_schema={
        "oneOf": [
            {"required": ["knowledgeModel", "trigger"], "not": {"required": ["filters"]}},
            {
                "required": ["filters"],
                "not": {"anyOf": [{"required": ["knowledgeModel"]}, {"required": ["trigger"]}]},
            },
        ]
    }
)
_OneStep = Annotated[ProcessStep, _ONE_KIND]
_OneStart = Annotated[ProcessStart, _ONE_START]


class ProcessBody(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """A process definition: a start and its steps, in order. ``bufferSeconds``: how long an
    event that names a live instance not (yet) waiting for its type is kept for a later wait
    (0: never). ``id`` and ``version`` are read-only: a definition read back may be sent
    again as it is (without ``createdAt``/``updatedAt``); ``id`` must then match the path and
    ``version`` is ignored (every change makes a new one)."""

    name: Annotated[str, Meta(pattern=r"\S")]
    start: _OneStart
    steps: Annotated[list[_OneStep], Meta(min_length=1, max_length=MAX_STEPS)]
    buffer_seconds: Annotated[float, Meta(ge=0, le=MAX_BUFFER_SECONDS)] = DEFAULT_BUFFER_SECONDS
    id: str | UnsetType = UNSET
    version: int | UnsetType = UNSET


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

    def start_body(self) -> ProcessStart:
        if self.start.filters is not None:
            return ProcessStart(filters=list(self.start.filters))
        assert self.start.km is not None and self.start.trigger is not None
        return ProcessStart(self.start.km, self.start.trigger)

    def step_bodies(self, secret_headers: bool = False) -> list[ProcessStep]:
        """The steps as the API shows them (call header values masked) or, with
        ``secret_headers``, as the store keeps them (sealed)."""
        out: list[ProcessStep] = []
        for step in self.steps:
            action = step.action
            if isinstance(action, Call):
                headers = dict(action.headers)
                if not secret_headers:
                    headers = masking.mask(headers)
                out.append(ProcessStep(step.id, call=ProcessCall(action.uri, headers)))
            else:
                timeout = UNSET if action.timeout is None else action.timeout
                out.append(ProcessStep(step.id, wait=ProcessWait(action.type, timeout)))
        return out

    def stored(self) -> bytes:
        """The definition as the store keeps it (header values in clear: the store seals the
        whole), read back by ``from_stored``: the JSON of ``ProcessBody``, id and version filled in."""
        return msgspec.json.encode(
            ProcessBody(
                self.name,
                self.start_body(),
                self.step_bodies(secret_headers=True),
                self.buffer_seconds,
                self.id,
                self.version,
            )
        )


def from_stored(data: bytes | str) -> Definition:
    """A definition as ``Definition.stored`` wrote it, trusted: the egress rules and the
    catalogue may have changed since, and what was accepted then must load now."""
    body = msgspec.json.decode(data, type=ProcessBody)
    assert isinstance(body.id, str) and isinstance(body.version, int)
    return Definition(
        body.id,
        body.name,
        _start_of(body.start),
        tuple(_step_of(s) for s in body.steps),
        body.buffer_seconds,
        body.version,
    )


def check_id(definition_id: str) -> None:
    if not definition_id or len(definition_id) > 200 or "/" in definition_id:
        raise errors.InvalidRequest("a process definition id must be 1-200 characters without '/'")


def parse(definition_id: str, body: ProcessBody, rules: egress.Rules) -> Definition:
    """A definition from its decoded body (version 0: the store numbers it), judged on what
    the schema cannot say. Every call URL must pass the egress ``rules`` now; it is judged
    again at every connect."""
    check_id(definition_id)
    if body.id is not UNSET and body.id != definition_id:
        raise errors.InvalidRequest("id in the body must match the path, or be left out")
    check_start(body.start)
    seen: set[str] = set()
    for i, step in enumerate(body.steps):
        check_step(step, f"steps[{i}]", seen, rules)
    return Definition(
        definition_id,
        body.name,
        _start_of(body.start),
        tuple(_step_of(s) for s in body.steps),
        body.buffer_seconds,
    )


def keep_masked(definition: Definition, previous: Definition | None) -> Definition:
    """``definition`` with each call header sent masked, as a read shows it, given the value
    the ``previous`` version's step of the same id holds (masking.py): a definition read,
    edited and sent back keeps its credentials."""
    kept = () if previous is None else previous.steps
    before = {s.id: s.action.headers for s in kept if isinstance(s.action, Call)}
    steps = []
    for i, step in enumerate(definition.steps):
        if isinstance(step.action, Call):
            where = f"steps[{i}].call.headers"
            headers = masking.unmask(step.action.headers, before.get(step.id, {}), where)
            step = Step(step.id, Call(step.action.uri, headers))
        steps.append(step)
    return dataclasses.replace(definition, steps=tuple(steps))


def check_start(start: ProcessStart) -> None:
    """A start is filters alone, or a knowledge model and trigger together; filters compile."""
    if start.filters is not UNSET:
        if start.knowledge_model is not UNSET or start.trigger is not UNSET:
            raise errors.InvalidRequest("start takes filters, or knowledgeModel and trigger")
        try:
            filters.compile_filters(start.filters)
        except errors.InvalidRequest as exc:
            raise errors.InvalidRequest(f"start.filters: {exc.message}") from None
    elif start.knowledge_model is UNSET or start.trigger is UNSET:
        raise errors.InvalidRequest(
            "start takes knowledgeModel and trigger (non-empty strings), or filters"
        )


def check_step(step: ProcessStep, where: str, seen: set[str], rules: egress.Rules) -> None:
    """One step at ``where``: one kind, an id not in ``seen`` (it is added), and a call's URL
    and headers allowed."""
    if step.id in seen:
        raise errors.InvalidRequest(f"{where}.id {step.id!r} is used twice")
    seen.add(step.id)
    if (step.call is UNSET) == (step.wait is UNSET):
        raise errors.InvalidRequest(f"{where} must have id and exactly one of call, wait")
    if step.call is not UNSET:
        check_call(step.call, f"{where}.call", rules)


def check_call(call: ProcessCall, where: str, rules: egress.Rules) -> None:
    refusal = egress.check_url(call.uri, rules)
    if refusal is not None:
        raise errors.CallbackRefused(
            f"{where}.uri: {refusal.message}", [errors.Problem(refusal.rule, f"{where}.uri")]
        )
    headers = call.headers or {}
    reserved = [k for k in headers if k.lower().startswith(_RESERVED_HEADERS)]
    if reserved:
        raise errors.InvalidRequest(f"{where}.headers may not set {', '.join(reserved)}")
    for name, value in headers.items():
        try:
            http1.check_header(name, value)
        except ValueError as exc:
            raise errors.InvalidRequest(f"{where}.headers: {exc}") from None


def _start_of(start: ProcessStart) -> Start:
    if start.filters is not UNSET:
        return Start(filters=tuple(start.filters))
    assert start.knowledge_model is not UNSET and start.trigger is not UNSET
    return Start(start.knowledge_model, start.trigger)


def _step_of(step: ProcessStep) -> Step:
    if step.call is not UNSET:
        return Step(step.id, Call(step.call.uri, dict(step.call.headers or {})))
    assert step.wait is not UNSET
    timeout = None if step.wait.timeout_seconds is UNSET else step.wait.timeout_seconds
    return Step(step.id, Wait(step.wait.type, timeout))


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
