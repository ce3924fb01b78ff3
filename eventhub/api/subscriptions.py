"""The Event Subscription API (SPEC §4), at the Celonis paths, with its typed schemas.

The request bodies live with the service that checks them (delivery/config.py); the answers
are here. A subscription's callback headers are write-only: reads show their names, never
their values; its signing secret is shown on create and on rotation only.
"""

from __future__ import annotations

import dataclasses

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from eventhub import masking, models
from eventhub.api._http import hub_of, require
from eventhub.api.operation import (
    READERS,
    ChoiceQuery,
    IntQuery,
    Operation,
    TextQuery,
    read_as,
    respond,
)
from eventhub.clock import rfc3339
from eventhub.delivery.config import Configuration, NewSubscription, SubscriptionUpdate
from eventhub.delivery.states import Move, Status
from eventhub.models import Format

ROLES = READERS
_MAX_OFFSET = 2**63 - 1


class CallbackView(msgspec.Struct):
    """The callback: its ``uri``, and the names of its headers with every value masked."""

    uri: str
    headers: dict[str, str]


class DeliveryCounts(msgspec.Struct):
    """Events delivered (2xx), skipped (``SKIP_ERRORS``, or resume-from-latest) and lost (the
    backlog a suspension dropped)."""

    delivered: int
    skipped: int
    lost: int


class SubscriptionView(msgspec.Struct, rename="camel"):
    """A subscription. ``offset`` is the cursor: every matching event at or below it was
    delivered (or skipped); ``lag`` counts the matching events after it. ``lastError`` says
    why it last failed, or why it was paused for its owner (``owner revoked``)."""

    id: str
    name: str
    owner: str
    knowledge_model_id: str
    trigger_id: str
    status: Status
    callback_info: CallbackView
    configurations: list[Configuration]
    format: Format
    batch_size: int
    max_retries: int
    offset: int
    latest_succeed_event: str | None
    latest_succeed_offset: int | None
    lag: int
    last_error: str | None
    counts: DeliveryCounts
    attempts: int
    created_at: str
    updated_at: str


class CreatedSubscription(SubscriptionView, rename="camel"):
    """The new subscription, with its signing secret (``whsec_…``): shown here and on
    rotation only."""

    secret: str


class SubscriptionPage(msgspec.Struct):
    """The caller's subscriptions (all of them, for an admin)."""

    content: list[SubscriptionView]
    total: int


class DeliveryAttempt(msgspec.Struct, rename="camel"):
    """One delivery request: when, the offsets it carried (first, last), the receiver's status
    code (null: no answer), how long it took, the error if it failed, its ``webhook-id``."""

    n: int
    at: str
    offsets: tuple[int, int]
    status_code: int | None
    latency_ms: float
    error: str | None
    webhook_id: str


class AttemptPage(msgspec.Struct):
    """The most recent attempts, newest first."""

    content: list[DeliveryAttempt]
    total: int


class RotatedSecret(msgspec.Struct, rename="camel"):
    """The new signing secret. Until ``previousSecretExpiresAt`` (RFC 3339) deliveries carry
    a signature with each secret, so receivers can switch without dropping one."""

    secret: str
    previous_secret_expires_at: str | None


STATUS = ChoiceQuery.of("status", "Only subscriptions in this state.", [s.value for s in Status])
TRIGGER = TextQuery.of("trigger", "Only subscriptions to this trigger id.")
LIMIT = IntQuery.of("limit", "How many of the most recent attempts.", 50, 1, 100)
FROM_OFFSET = IntQuery.of(
    "fromOffset",
    "Deliver again from this offset (the first event re-sent is the first match at or after it).",
    0,
    0,
    _MAX_OFFSET,
    required=True,
)


async def _view(request: Request, live: models.Subscription) -> SubscriptionView:
    # A copy first: the supervisor moves the live record on while the lag is counted (an
    # await), and a view must be of one moment (a lag of the old cursor beside the new state
    # would say a Suspended subscription still has its dropped backlog to deliver).
    sub = dataclasses.replace(live)
    lag = await hub_of(request).subscriptions.lag(sub)
    return SubscriptionView(
        id=sub.id,
        name=sub.name,
        owner=sub.owner,
        knowledge_model_id=sub.km,
        trigger_id=sub.trigger,
        status=sub.status,
        callback_info=CallbackView(sub.uri, masking.mask(sub.headers)),
        configurations=[Configuration.SKIP_ERRORS] if sub.skip_errors else [],
        format=Format(sub.format),
        batch_size=sub.batch_size,
        max_retries=sub.max_retries,
        offset=sub.cursor,
        latest_succeed_event=sub.latest_succeed_event,
        latest_succeed_offset=sub.latest_succeed_offset,
        lag=lag,
        last_error=sub.last_error,
        counts=DeliveryCounts(sub.delivered, sub.skipped, sub.lost),
        attempts=sub.attempts,
        created_at=sub.created_at,
        updated_at=sub.updated_at,
    )


def _attempt(attempt: models.Attempt) -> DeliveryAttempt:
    return DeliveryAttempt(
        n=attempt.n,
        at=attempt.at,
        offsets=(attempt.first_offset, attempt.last_offset),
        status_code=attempt.status,
        latency_ms=round(attempt.latency_ms, 3),
        error=attempt.error,
        webhook_id=attempt.webhook_id,
    )


async def create(request: Request) -> Response:
    who = require(request, *ROLES)
    hub = hub_of(request)
    km, trigger = request.path_params["km"], request.path_params["trigger"]
    _, tid = hub.catalog.trigger(km, trigger)
    body = await read_as(request, NewSubscription)
    sub = await hub.subscriptions.create(who, km, trigger, tid, body)
    view = await _view(request, sub)
    created = CreatedSubscription(**msgspec.structs.asdict(view), secret=sub.secret)
    return respond(created, 201)


async def list_all(request: Request) -> Response:
    who = require(request, *ROLES)
    status = STATUS.read(request)
    await hub_of(request).subscriptions.fresh()  # PostgreSQL: another process's cursors
    subs = hub_of(request).subscriptions.list(who, status, TRIGGER.read(request))
    content = [await _view(request, s) for s in subs]
    return respond(SubscriptionPage(content, len(content)))


async def get(request: Request) -> Response:
    who = require(request, *ROLES)
    sub_id = request.path_params["id"]
    await hub_of(request).subscriptions.fresh({sub_id})  # PostgreSQL: the holder's cursor
    sub = hub_of(request).subscriptions.get(sub_id, who)
    return respond(await _view(request, sub))


async def _act(
    request: Request,
    move: Move,
    body: SubscriptionUpdate | None = None,
    from_offset: int | None = None,
) -> Response:
    who = require(request, *ROLES)
    sub = await hub_of(request).subscriptions.act(
        request.path_params["id"], who, move, body, from_offset
    )
    if sub is None:
        return Response(status_code=204)
    return respond(await _view(request, sub))


async def update(request: Request) -> Response:
    require(request, *ROLES)
    body = await read_as(request, SubscriptionUpdate)
    return await _act(request, Move.UPDATE, body)


async def pause(request: Request) -> Response:
    return await _act(request, Move.PAUSE)


async def resume(request: Request) -> Response:
    return await _act(request, Move.RESUME)


async def resume_from_latest(request: Request) -> Response:
    return await _act(request, Move.RESUME_FROM_LATEST)


async def replay(request: Request) -> Response:
    return await _act(request, Move.REPLAY, from_offset=FROM_OFFSET.read(request))


async def delete(request: Request) -> Response:
    return await _act(request, Move.DELETE)


async def attempts(request: Request) -> Response:
    who = require(request, *ROLES)
    hub = hub_of(request)
    sub = hub.subscriptions.get(request.path_params["id"], who)
    found = await hub.store.list_attempts(sub.id, LIMIT.read(request))
    return respond(AttemptPage([_attempt(a) for a in found], len(found)))


async def rotate_secret(request: Request) -> Response:
    who = require(request, *ROLES)
    sub = await hub_of(request).subscriptions.rotate_secret(request.path_params["id"], who)
    expires = sub.previous_secret_expires
    # Times in the API are RFC 3339, like createdAt; the epoch seconds stay internal.
    return respond(RotatedSecret(sub.secret, None if expires is None else rfc3339(expires)))


# What each operation does to the state (delivery/states.py, the seed's table); a move the
# table does not allow from the current state is 409, naming the state and the moves it allows.
_CONFLICT = " From any other state: 409 `conflict`, naming the state and the moves it allows."
_REVOKED = " A subscription whose owner's key was revoked cannot become Active again: 409."
_CREATE = (
    "Subscribes a webhook to a published trigger. The subscription starts **Active** with its"
    " cursor at the head of the log: it receives the events appended from now on. The answer"
    " shows its signing secret, once. Past `max_subscriptions` the answer is 409"
    " `subscription_limit_reached`."
)
_LIST = "The caller's own subscriptions; an admin sees every one."
_GET = (
    "Its state, cursor (`offset`), last delivered event and offset, lag, last error and counts."
    " Another owner's subscription is 404, not 403, so ids do not leak."
)
_UPDATE = (
    "New callback or settings; fields left out keep their value, a new `callbackInfo` must"
    " pass the egress rules (400 `callback_refused`). Allowed from every state: Active stays"
    " **Active**; Failed, Rejected, Paused and Suspended become **Active** (the one way to"
    " revive a Suspended subscription)." + _REVOKED
)
_DELETE = "From any state: the subscription and its queue are gone. Answers 204 with no body."
_PAUSE = "**Active → Paused**: delivery stops; matching events keep queueing." + _CONFLICT
_RESUME = (
    "**Paused → Active**, from where it paused: the queued backlog is delivered."
    + _CONFLICT
    + _REVOKED
)
_RESUME_FRESH = (
    "**Paused → Active**, skipping the backlog: the cursor moves to the head and the skipped"
    " events are counted in `counts.skipped`." + _CONFLICT + _REVOKED
)
_REPLAY = (
    "Re-delivers from `fromOffset` (required): from Active, Failed, Rejected or Paused to"
    " **Active**. A Suspended subscription cannot replay (its queue was dropped): 409, as for"
    " any other refused move." + _REVOKED
)
_ATTEMPTS = "The most recent delivery attempts, newest first."
_ROTATE = (
    "A new signing secret, in any state. For `secret_rotation_overlap` seconds deliveries"
    " are signed with both the new and the previous secret."
)

_SUBS = "/intelligence/api/subscriptions"
_ONE = f"{_SUBS}/{{id}}"
_CREATE_PATH = "/intelligence/api/knowledge-models/{km}/triggers/{trigger}/subscriptions"
OPERATIONS = (
    Operation(
        "POST",
        _CREATE_PATH,
        create,
        "Subscribe a webhook to a trigger",
        READERS,
        {201: CreatedSubscription},
        NewSubscription,
        description=_CREATE,
    ),
    Operation(
        "GET",
        _SUBS,
        list_all,
        "List subscriptions",
        READERS,
        {200: SubscriptionPage},
        query=(STATUS, TRIGGER),
        description=_LIST,
    ),
    Operation(
        "GET", _ONE, get, "A subscription", READERS, {200: SubscriptionView}, description=_GET
    ),
    Operation(
        "PUT",
        _ONE,
        update,
        "Change a subscription",
        READERS,
        {200: SubscriptionView},
        SubscriptionUpdate,
        description=_UPDATE,
    ),
    Operation(
        "DELETE", _ONE, delete, "Delete a subscription", READERS, {204: None}, description=_DELETE
    ),
    Operation(
        "PATCH",
        f"{_ONE}/pause",
        pause,
        "Pause delivery",
        READERS,
        {200: SubscriptionView},
        description=_PAUSE,
    ),
    Operation(
        "PATCH",
        f"{_ONE}/resume",
        resume,
        "Resume delivery",
        READERS,
        {200: SubscriptionView},
        description=_RESUME,
    ),
    Operation(
        "PATCH",
        f"{_ONE}/resume-from-latest",
        resume_from_latest,
        "Resume at the head",
        READERS,
        {200: SubscriptionView},
        description=_RESUME_FRESH,
    ),
    Operation(
        "PATCH",
        f"{_ONE}/replay",
        replay,
        "Deliver again from an offset",
        READERS,
        {200: SubscriptionView},
        query=(FROM_OFFSET,),
        description=_REPLAY,
    ),
    Operation(
        "GET",
        f"{_ONE}/attempts",
        attempts,
        "Recent delivery attempts",
        READERS,
        {200: AttemptPage},
        query=(LIMIT,),
        description=_ATTEMPTS,
    ),
    Operation(
        "POST",
        f"{_ONE}/rotate-secret",
        rotate_secret,
        "Rotate the signing secret",
        READERS,
        {200: RotatedSecret},
        description=_ROTATE,
    ),
)
