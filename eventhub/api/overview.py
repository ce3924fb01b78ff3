"""``GET /api/overview``: the hub at a glance, for the console's first page (and any script).

The log's head, the database's size, subscriptions by state, the worst lagging ones (events
behind and the age of the oldest undelivered event, read as ``/metrics`` reads them:
``log/figures.py``), process instances by state, and the ingest and delivery rates of the last
minutes (``ops/rates.py``). An admin sees every subscription; a consumer only its own (the
other figures are the hub's, as ``GET /events`` and ``GET /api/instances`` show them to any
reader)."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from eventhub.api._http import hub_of, require
from eventhub.api.operation import READERS, IntQuery, Operation, respond
from eventhub.clock import rfc3339
from eventhub.models import Status
from eventhub.ops import metrics
from eventhub.processes.instances import State

LAGGING = IntQuery.of(
    "lagging",
    "How many of the worst lagging subscriptions to list (most events behind first).",
    5,
    0,
    1000,
)


class Lagging(msgspec.Struct, rename="camel"):
    """A subscription behind its trigger's head."""

    id: str
    name: str
    owner: str
    status: str
    knowledge_model_id: str
    trigger_id: str
    events: int  # events of its trigger it has yet to deliver
    oldest_age_seconds: float  # since the oldest of them was received


class RateBucket(msgspec.Struct, rename="camel"):
    """Events ingested and delivered (2xx) during ``seconds`` from ``start``; the last
    bucket is the one still filling."""

    start: str
    seconds: float
    ingested: int
    delivered: int


class Overview(msgspec.Struct, rename="camel"):
    head: int  # the log's highest offset
    database_bytes: int
    wal_bytes: int
    subscriptions: dict[str, int]  # by state, every state listed
    lagging: list[Lagging]
    instances: dict[str, int]  # process instances by state, every state listed
    bucket_seconds: float
    rates: list[RateBucket]  # oldest first, about 15 minutes


async def get_overview(request: Request) -> Response:
    who = require(request, *READERS)
    limit = LAGGING.read(request)
    hub = hub_of(request)
    await hub.subscriptions.fresh()  # PostgreSQL: cursors other processes moved
    subs = hub.subscriptions.list(who) if who.role != "admin" else list(hub.subscriptions.all())
    # Positions taken before the read, as /metrics does: a cursor may move meanwhile.
    seen = [(sub, (sub.tid, sub.cursor)) for sub in subs]
    figures = await hub.store.read_figures({position for _, position in seen})
    now = hub.clock.now()
    by_state = dict.fromkeys((str(s) for s in Status), 0)
    lagging: list[Lagging] = []
    for sub, position in seen:
        by_state[str(sub.status)] += 1
        behind = figures.behind.get(position)
        if behind is not None and behind.events:
            age = metrics.age_of(behind.oldest_received_at, now)
            lagging.append(
                Lagging(
                    sub.id,
                    sub.name,
                    sub.owner,
                    str(sub.status),
                    sub.km,
                    sub.trigger,
                    behind.events,
                    round(age, 3),
                )
            )
    lagging.sort(key=lambda lag: (-lag.events, -lag.oldest_age_seconds, lag.id))
    instances = {str(state): figures.instances.get(state, 0) for state in State}
    rates = [
        RateBucket(rfc3339(b.start), round(b.seconds, 3), b.ingested, b.delivered)
        for b in hub.rates.buckets()
    ]
    return respond(
        Overview(
            figures.head,
            figures.database_bytes,
            figures.wal_bytes,
            by_state,
            lagging[:limit],
            instances,
            hub.rates.interval,
            rates,
        )
    )


OPERATIONS = (
    Operation(
        "GET",
        "/api/overview",
        get_overview,
        "The hub at a glance: log, subscriptions, lag, instances, rates",
        READERS,
        {200: Overview},
        query=(LAGGING,),
        description=(
            "A consumer key sees its own subscriptions only. Rates are the whole hub's, in"
            " buckets of `bucketSeconds` over the last 15 minutes."
        ),
        tag="console",
    ),
)
