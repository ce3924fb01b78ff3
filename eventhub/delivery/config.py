"""A subscription's configuration as clients send it: the create and update bodies of the
Event Subscription API (SPEC §4), and ``parse_config``, which turns one into the settings a
subscription keeps.

The bodies are msgspec Structs: decoding one checks every field's type and bounds (and the
OpenAPI document shows them); ``parse_config`` adds what a schema cannot say: the callback's
egress rules and the headers a subscription may not set. Unknown fields are ignored, not
refused: these are Celonis-compatible bodies, and clients send a subscription they read back
with its read-only fields (``id``, ``status``, ``counts``…) still in it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import msgspec

from eventhub import errors, masking
from eventhub.delivery import egress
from eventhub.models import Format, Subscription

MAX_BATCH = 1000
# Up to this many queued events travel in one request (envelope and batch formats). A hub that
# keeps up sends one event a request; a backlog drains a page at a time, not an event.
DEFAULT_BATCH = 100
MAX_RETRIES = 100


class Configuration(enum.StrEnum):
    """``SKIP_ERRORS``: an event still refused after the retries is skipped (recorded and
    counted) and the subscription stays Active."""

    SKIP_ERRORS = "SKIP_ERRORS"


# At least one character that is not white space.
Name = Annotated[str, msgspec.Meta(min_length=1, pattern=r"\S")]
BatchSize = Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH)]
Retries = Annotated[int, msgspec.Meta(ge=0, le=MAX_RETRIES)]


class CallbackInfo(msgspec.Struct):
    """Where deliveries go. ``headers`` are sent with every delivery (``Authorization``, say);
    they may not set ``Content-Type`` or a ``webhook-*`` header, which the hub sets. The hub's
    egress rules decide which ``uri`` it may call."""

    uri: str
    headers: dict[str, str] | None = None


class NewSubscription(msgspec.Struct, rename="camel"):
    """A subscription to make. ``maxRetries`` is absent for the hub's
    ``delivery_max_retries``."""

    name: Name
    callback_info: CallbackInfo
    configurations: list[Configuration] | None = None
    format: Format = Format.ENVELOPE
    batch_size: BatchSize = DEFAULT_BATCH
    max_retries: Retries | msgspec.UnsetType = msgspec.UNSET


class SubscriptionUpdate(msgspec.Struct, rename="camel"):
    """A subscription's new settings: what is absent (or a null ``callbackInfo`` or
    ``configurations``) keeps its value."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    callback_info: CallbackInfo | msgspec.UnsetType | None = msgspec.UNSET
    configurations: list[Configuration] | msgspec.UnsetType | None = msgspec.UNSET
    format: Format | msgspec.UnsetType = msgspec.UNSET
    batch_size: BatchSize | msgspec.UnsetType = msgspec.UNSET
    max_retries: Retries | msgspec.UnsetType = msgspec.UNSET


@dataclass(frozen=True, slots=True)
class Config:
    """What a subscription keeps of a create or update body: the ``Subscription`` fields of
    the same names."""

    name: str
    uri: str
    headers: dict[str, str]
    skip_errors: bool
    format: str
    batch_size: int
    max_retries: int


def parse_config(
    body: NewSubscription | SubscriptionUpdate,
    base: Subscription | None,
    default_retries: int,
    rules: egress.Rules,
) -> Config:
    """The configuration ``body`` asks for: a create's (``base`` None), or ``base``'s with an
    update's changes. A new callback must pass the egress ``rules`` (it is checked again at
    every connect)."""
    if isinstance(body, NewSubscription):
        retries = default_retries if body.max_retries is msgspec.UNSET else body.max_retries
        uri, headers = _callback(body.callback_info, rules, {})
        return Config(
            body.name,
            uri,
            headers,
            _skip_errors(body.configurations, False),
            body.format.value,
            body.batch_size,
            retries,
        )
    assert base is not None, "an update changes a subscription"
    callback = body.callback_info
    if callback is None or callback is msgspec.UNSET:
        uri, headers = base.uri, base.headers
    else:
        uri, headers = _callback(callback, rules, base.headers)
    configurations = None if body.configurations is msgspec.UNSET else body.configurations
    return Config(
        base.name if body.name is msgspec.UNSET else body.name,
        uri,
        headers,
        _skip_errors(configurations, base.skip_errors),
        base.format if body.format is msgspec.UNSET else body.format.value,
        base.batch_size if body.batch_size is msgspec.UNSET else body.batch_size,
        base.max_retries if body.max_retries is msgspec.UNSET else body.max_retries,
    )


def _callback(
    callback: CallbackInfo, rules: egress.Rules, stored: Mapping[str, str]
) -> tuple[str, dict[str, str]]:
    """The callback's URI and headers; a header sent masked, as a read shows it, keeps the
    ``stored`` value (masking.py)."""
    refusal = egress.check_url(callback.uri, rules)
    if refusal is not None:
        raise errors.CallbackRefused(
            f"callbackInfo.uri: {refusal.message}",
            [errors.Problem(refusal.rule, "callbackInfo.uri")],
        )
    headers = masking.unmask(callback.headers or {}, stored, "callbackInfo.headers")
    reserved = [
        k for k in headers if k.lower().startswith("webhook-") or k.lower() == "content-type"
    ]
    if reserved:
        message = f"callbackInfo.headers may not set {', '.join(reserved)}"
        raise errors.InvalidRequest(message, [errors.Problem(message, "callbackInfo.headers")])
    return callback.uri, headers


def _skip_errors(configurations: list[Configuration] | None, keep: bool) -> bool:
    """SKIP_ERRORS is on when ``configurations`` holds it; null keeps ``keep``."""
    if configurations is None:
        return keep
    return Configuration.SKIP_ERRORS in configurations
