"""``GET /metrics``: the hub's metrics in the Prometheus text format (``ops/metrics.py``).

Not open to anyone, unlike ``/healthz``: a scrape reads the database (lag is a count per
subscription behind), and SPEC §8 allows nothing unauthenticated to cost more than a header
read; with ``metrics_per_subscription`` it also lists subscription ids, which only their owners
and admins may see. So it takes an admin key, or the ``metrics_token`` setting: a credential
that opens nothing else, for a Prometheus ``authorization`` block, so the scraper's
configuration never holds an admin key."""

from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from eventhub import auth, errors
from eventhub.api._http import header, hub_of, require
from eventhub.api.operation import ADMIN, Content, Operation
from eventhub.hub import Hub
from eventhub.ops import metrics


async def get_metrics(request: Request) -> Response:
    hub = hub_of(request)
    if not _is_metrics_token(request, hub.settings.metrics_token):
        require(request, "admin")
    body = await hub.metrics.shared(lambda: _scrape(hub))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def _scrape(hub: Hub) -> bytes:
    subscriptions = metrics.seen(hub.subscriptions.all())
    figures = await hub.store.read_figures({s.position for s in subscriptions})
    return await hub.metrics.render(subscriptions, figures, hub.clock.now())


def _is_metrics_token(request: Request, token: str | None) -> bool:
    if token is None:
        return False
    presented = auth.bearer(header(request, b"authorization"))
    if presented is None:
        raise errors.Unauthorized(
            "send the metrics token or an admin key: Authorization: Bearer <token>"
        )
    return hmac.compare_digest(presented.encode(), token.encode())


OPERATIONS = (
    Operation(
        "GET",
        "/metrics",
        get_metrics,
        "Metrics, in the Prometheus text format",
        ADMIN,
        {200: Content("text/plain", {"type": "string"}, "Every metric the README lists.")},
        description="The `metrics_token` setting, as a Bearer token, opens it too.",
    ),
)
