"""The CloudEvents webhook validation handshake (http-webhook.md §4) on the ingest endpoints.

A sender that delivers CloudEvents by webhook (Azure Event Grid, Knative, ...) may first ask,
with ``OPTIONS`` and ``WebHook-Request-Origin: <its DNS name>``, whether the target consents
to its deliveries. The hub consents for the origins in ``webhook_allowed_origins`` (``*``:
any), answering ``WebHook-Allowed-Origin`` (the origin asked for, or ``*``) and
``WebHook-Allowed-Rate: *``: the hub sets no per-sender rate; overload is answered 429 with
``Retry-After`` (SPEC §8). For any other origin it answers 200 without those headers, which
the spec says is no consent. By default no origin is allowed: consent is the operator's to
give, and the senders still need an API key (``access_token`` or ``Authorization``) to post.

The handshake asks for no key: it reveals nothing but the consent, and a sender asks it
before it has been told a key (the spec's ``WebHook-Request-Callback`` asynchronous consent
is not supported: the header is ignored).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from eventhub.api._http import header, hub_of

ALLOW = "OPTIONS, POST"


def consent(allowed: tuple[str, ...], origin: str) -> str | None:
    """The ``WebHook-Allowed-Origin`` value for ``origin``, or None (no consent). DNS names
    compare without regard to case."""
    if "*" in allowed:
        return "*"
    wanted = origin.strip().lower()
    if wanted and any(wanted == name.lower() for name in allowed):
        return origin.strip()
    return None


async def options(request: Request) -> Response:
    """``OPTIONS`` on an ingest endpoint: ``Allow``, and the consent when it is asked for."""
    headers = {"Allow": ALLOW}
    origin = header(request, b"webhook-request-origin")
    if origin is not None:
        granted = consent(hub_of(request).settings.webhook_allowed_origins, origin)
        if granted is not None:
            headers["WebHook-Allowed-Origin"] = granted
            headers["WebHook-Allowed-Rate"] = "*"
    return Response(status_code=200, headers=headers)
