"""parse_config: a create body's defaults, an update's "absent keeps its value", and the checks
a schema cannot state (egress rules, reserved headers)."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from eventhub import errors
from eventhub.delivery import egress
from eventhub.delivery.config import NewSubscription, SubscriptionUpdate, parse_config
from eventhub.models import Status, Subscription

LOOPBACK = egress.Rules.from_settings(["127.0.0.0/8"], only=True)
HOOK = "http://127.0.0.1:9/hook"


def created(body: bytes, default_retries: int = 5) -> Subscription:
    config = parse_config(
        msgspec.json.decode(body, type=NewSubscription), None, default_retries, LOOPBACK
    )
    return Subscription(
        id="s",
        owner="k",
        km="orders",
        trigger="created",
        tid=1,
        secret="whsec_x",
        status=Status.ACTIVE,
        cursor=0,
        created_at="t",
        updated_at="t",
        **dataclasses.asdict(config),
    )


def updated(base: Subscription, body: bytes, rules: egress.Rules = LOOPBACK) -> dict[str, object]:
    changes = msgspec.json.decode(body, type=SubscriptionUpdate)
    return dataclasses.asdict(parse_config(changes, base, 99, rules))


def config_of(sub: Subscription) -> dict[str, object]:
    names = ("name", "uri", "headers", "skip_errors", "format", "batch_size", "max_retries")
    return {name: getattr(sub, name) for name in names}


def test_a_create_takes_the_defaults() -> None:
    sub = created(b'{"name": "n", "callbackInfo": {"uri": "%s"}}' % HOOK.encode(), 7)
    assert config_of(sub) == {
        "name": "n",
        "uri": HOOK,
        "headers": {},
        "skip_errors": False,
        "format": "envelope",
        "batch_size": 100,
        "max_retries": 7,
    }
    assert type(sub.format) is str  # stored and compared as the plain value


def test_an_update_keeps_what_it_leaves_out() -> None:
    base = created(
        b'{"name": "n", "callbackInfo": {"uri": "%s", "headers": {"A": "1"}},'
        b' "configurations": ["SKIP_ERRORS"], "format": "batch", "batchSize": 3,'
        b' "maxRetries": 0}' % HOOK.encode()
    )
    kept = config_of(base)
    assert updated(base, b"{}") == kept
    assert updated(base, b'{"callbackInfo": null, "configurations": null}') == kept
    assert updated(base, b'{"configurations": []}') == {**kept, "skip_errors": False}
    assert updated(base, b'{"maxRetries": 100, "name": "m"}') == {
        **kept,
        "max_retries": 100,
        "name": "m",
    }
    # A new callback replaces the headers too: they belong to the callback.
    assert updated(base, b'{"callbackInfo": {"uri": "http://127.0.0.2/"}}') == {
        **kept,
        "uri": "http://127.0.0.2/",
        "headers": {},
    }


def test_only_a_new_callback_meets_the_egress_rules() -> None:
    base = created(b'{"name": "n", "callbackInfo": {"uri": "%s"}}' % HOOK.encode())
    public_only = egress.DEFAULT
    # The stored callback is not checked again by an update that leaves it alone...
    assert updated(base, b'{"name": "m"}', public_only)["name"] == "m"
    # ...but a new one is.
    with pytest.raises(errors.CallbackRefused) as refused:
        updated(base, b'{"callbackInfo": {"uri": "%s"}}' % HOOK.encode(), public_only)
    assert refused.value.message.startswith("callbackInfo.uri: ")
    assert refused.value.details[0].attribute == "callbackInfo.uri"


@pytest.mark.parametrize("name", ["webhook-id", "Webhook-Signature", "CONTENT-TYPE"])
def test_the_hubs_own_headers_are_reserved(name: str) -> None:
    body = b'{"name": "n", "callbackInfo": {"uri": "%s", "headers": {"%s": "x"}}}'
    with pytest.raises(errors.InvalidRequest) as refused:
        created(body % (HOOK.encode(), name.encode()))
    assert name in refused.value.message
    assert refused.value.details[0].attribute == "callbackInfo.headers"
