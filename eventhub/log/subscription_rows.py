"""How a subscription and a delivery attempt are laid out as table rows: the columns, their
order, what is sealed. Both backends store them alike (``log/sqlite/records.py``,
``log/postgres/rows.py`` write the SQL of each), and ``eventhub migrate`` copies the rows as
they are, so the layout lives here once."""

from __future__ import annotations

from typing import Any

import orjson

from eventhub.log import sealing
from eventhub.models import Attempt, Status, Subscription
from eventhub.vault import Vault

ATTEMPTS_KEPT = 100  # at least; pruned every PRUNE_EVERY attempts, not on every one
PRUNE_EVERY = 20

# What delivering changes: the hot path writes only these (``progress_of``), without
# re-serialising the configuration and secrets of the whole row.
PROGRESS = (
    "status",
    "cursor",
    "latest_succeed_event",
    "latest_succeed_offset",
    "last_error",
    "delivered",
    "skipped",
    "lost",
    "failed_since",
    "attempts",
    "updated_at",
)
# Identity and configuration, then ``PROGRESS``, then the creation time: ``row``'s order.
COLUMNS = ("id", "owner", "km", "trigger", "tid", "config", "secrets", *PROGRESS, "created_at")


def progress_of(sub: Subscription) -> tuple[Any, ...]:
    """The values of ``PROGRESS``, in its order."""
    return (
        str(sub.status),
        sub.cursor,
        sub.latest_succeed_event,
        sub.latest_succeed_offset,
        sub.last_error,
        sub.delivered,
        sub.skipped,
        sub.lost,
        sub.failed_since,
        sub.attempts,
        sub.updated_at,
    )


def row(sub: Subscription, sealer: Vault) -> tuple[Any, ...]:
    """The values of ``COLUMNS``, in its order. The callback header values and the signing
    secrets are sealed (``log/sealing.py``)."""
    config = {**sub.config_json(), "headers": sealing.seal_headers(sealer, sub.id, sub.headers)}
    secrets = sealer.seal(
        orjson.dumps(sub.secrets_json()).decode(), sealing.subscription_secrets(sub.id)
    )
    return (
        sub.id,
        sub.owner,
        sub.km,
        sub.trigger,
        sub.tid,
        orjson.dumps(config).decode(),
        secrets,
        *progress_of(sub),
        sub.created_at,
    )


def from_row(r: tuple[Any, ...], sealer: Vault) -> Subscription:
    """A row read as ``SELECT <COLUMNS>``, its secrets opened."""
    config = orjson.loads(r[5])
    secrets = orjson.loads(sealer.unseal(r[6], sealing.subscription_secrets(r[0])))
    return Subscription(
        id=r[0],
        owner=r[1],
        km=r[2],
        trigger=r[3],
        tid=r[4],
        name=config["name"],
        uri=config["uri"],
        headers=sealing.open_headers(sealer, r[0], config["headers"]),
        skip_errors=config["skipErrors"],
        format=config["format"],
        batch_size=config["batchSize"],
        max_retries=config["maxRetries"],
        secret=secrets["current"],
        previous_secret=secrets["previous"],
        previous_secret_expires=secrets["previousExpires"],
        status=Status(r[7]),
        cursor=r[8],
        latest_succeed_event=r[9],
        latest_succeed_offset=r[10],
        last_error=r[11],
        delivered=r[12],
        skipped=r[13],
        lost=r[14],
        failed_since=r[15],
        attempts=r[16],
        created_at=r[18],
        updated_at=r[17],
    )


# An attempt's row: (subscription_id, n, at, offsets, status, latency_ms, error, webhook_id).
def attempt_row(sub_id: str, attempt: Attempt) -> tuple[Any, ...]:
    """``offsets`` as the JSON bytes ``[first,last]``."""
    return (
        sub_id,
        attempt.n,
        attempt.at,
        b"[%d,%d]" % (attempt.first_offset, attempt.last_offset),
        attempt.status,
        attempt.latency_ms,
        attempt.error,
        attempt.webhook_id,
    )


def prune_after(attempt: Attempt) -> bool:
    """Whether writing ``attempt`` should also prune its subscription's older attempts (to
    ``attempt.n - ATTEMPTS_KEPT``)."""
    return attempt.n > ATTEMPTS_KEPT and attempt.n % PRUNE_EVERY == 0
