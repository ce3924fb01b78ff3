"""The pure rules of process instances: definitions, correlation, the call request."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import orjson
import pytest
import standardwebhooks

from eventhub import errors, masking
from eventhub.delivery import egress, signing
from eventhub.events import DataKind, StoredEvent
from eventhub.processes import definitions, lifecycle
from eventhub.processes.definitions import Call, Wait
from eventhub.processes.instances import Fate, Named, State, correlate
from eventhub.processes.runner import _answered

RULES = egress.Rules.from_settings(("127.0.0.0/8",), True)


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "Orders",
        "start": {"filters": [{"exact": {"type": "order.created"}}]},
        "steps": [
            {"id": "notify", "call": {"uri": "http://127.0.0.1:9/hook", "headers": {"X-A": "s"}}},
            {"id": "approval", "wait": {"type": "order.approved", "timeoutSeconds": 60}},
        ],
    }
    base.update(changes)
    return base


def parse(raw: dict[str, Any], definition_id: str = "orders") -> definitions.Definition:
    """As the API and the catalogue file do: the shape by the Struct, then the rest."""
    try:
        shaped = msgspec.convert(raw, definitions.ProcessBody)
    except msgspec.ValidationError as exc:
        raise errors.InvalidRequest(str(exc)) from None
    return definitions.parse(definition_id, shaped, RULES)


def test_a_definition_parses_and_round_trips_through_its_stored_form() -> None:
    parsed = parse(body(bufferSeconds=0))
    assert parsed.steps[0].action == Call("http://127.0.0.1:9/hook", {"X-A": "s"})
    assert parsed.steps[1].action == Wait("order.approved", 60.0)
    assert parsed.buffer_seconds == 0.0
    assert definitions.from_stored(parsed.stored()) == parsed
    (call, wait) = parsed.step_bodies()
    assert call.call and call.call.headers == {"X-A": masking.MASK}
    assert wait.wait and wait.wait.timeout_seconds == 60.0


def test_read_only_id_and_version_may_be_sent_back() -> None:
    assert parse(body(id="orders", version=7)).version == 0


def test_the_default_buffer_is_an_hour() -> None:
    assert parse(body()).buffer_seconds == 3600.0


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"name": ""}, "at `$.name`"),
        ({"name": " "}, "at `$.name`"),
        ({"steps": []}, "length >= 1 - at `$.steps`"),
        ({"steps": [{"id": "a", "wait": {"type": "t"}}] * 101}, "length <= 100 - at `$.steps`"),
        ({"steps": [{"id": "", "wait": {"type": "t"}}]}, "at `$.steps[0].id`"),
        ({"steps": [{"id": "a" * 201, "wait": {"type": "t"}}]}, "at `$.steps[0].id`"),
        ({"steps": [{"id": "a"}]}, "exactly one of call, wait"),
        ({"steps": [{"id": "a", "sleep": {}}]}, "unknown field `sleep`"),
        ({"steps": [{"id": "a", "wait": {"type": ""}}]}, "at `$.steps[0].wait.type`"),
        ({"steps": [{"id": "a", "call": {"uri": 5}}]}, "at `$.steps[0].call.uri`"),
        (
            {"steps": [{"id": "a", "call": {"uri": "x", "headers": {"A": 1}}}]},
            "at `$.steps[0].call.headers[...]`",
        ),
        ({"start": {"knowledgeModel": "km"}}, "start takes knowledgeModel and trigger"),
        ({"start": {"knowledgeModel": "", "trigger": "t"}}, "at `$.start.knowledgeModel`"),
        ({"start": {"filters": []}}, "length >= 1 - at `$.start.filters`"),
        ({"start": {"filters": [{"nope": {}}]}}, "start.filters"),
        ({"steps": [{"id": "a", "wait": {"type": "t"}}] * 2}, "used twice"),
        ({"steps": [{"id": "a", "wait": {"type": "t"}, "call": {"uri": "x"}}]}, "exactly one"),
        ({"steps": [{"id": "a", "wait": {"type": "t", "timeoutSeconds": 0}}]}, "timeoutSeconds"),
        ({"steps": [{"id": "a", "wait": {"type": "t", "timeoutSeconds": True}}]}, "got `bool`"),
        ({"steps": [{"id": "a", "wait": {"type": "t", "timeoutSeconds": None}}]}, "got `null`"),
        ({"bufferSeconds": -1}, "bufferSeconds"),
        ({"bufferSeconds": float("inf")}, "bufferSeconds"),
        ({"bufferSeconds": float("nan")}, "bufferSeconds"),
        ({"extra": 1}, "unknown field `extra`"),
        ({"id": "other"}, "must match the path"),
        (
            {
                "steps": [
                    {"id": "a", "call": {"uri": "http://127.0.0.1/", "headers": {"ce-id": "x"}}}
                ]
            },
            "may not set",
        ),
        (
            {
                "steps": [
                    {"id": "a", "call": {"uri": "http://127.0.0.1/", "headers": {"A": "x\ny"}}}
                ]
            },
            "line break",
        ),
    ],
)
def test_a_bad_definition_is_refused_with_what_is_wrong(
    changes: dict[str, Any], words: str
) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        parse(body(**changes))
    assert words in caught.value.message


def test_a_call_outside_the_allowed_networks_is_refused_by_rule() -> None:
    steps = [{"id": "a", "call": {"uri": "http://10.0.0.1/hook"}}]
    with pytest.raises(errors.CallbackRefused) as caught:
        parse(body(steps=steps))
    assert caught.value.code == "callback_refused"


@pytest.mark.parametrize(
    ("named", "type_", "fate"),
    [
        (None, "a", Fate.UNROUTED),
        (Named(State.COMPLETED, None, 60), "a", Fate.UNROUTED),
        (Named(State.CANCELLED, None, 60), "a", Fate.UNROUTED),
        (Named(State.WAITING, "a", 60), "a", Fate.WOKE),
        (Named(State.WAITING, "a", 60), "b", Fate.BUFFERED),
        (Named(State.RUNNING, None, 60), "a", Fate.BUFFERED),
        (Named(State.RUNNING, None, 0), "a", Fate.UNROUTED),
        (Named(State.WAITING, "a", 0), "a", Fate.WOKE),
    ],
)
def test_correlation(named: Named | None, type_: str, fate: Fate) -> None:
    found, reason = correlate(named, type_)
    assert found is fate
    assert (reason is not None) == (fate is Fate.UNROUTED)


def test_a_consumed_event_reads_woke_in_a_receipt() -> None:
    assert Fate.CONSUMED.receipt == "woke"
    assert Fate.BUFFERED.receipt == "buffered"


def test_the_call_request_is_a_signed_binary_cloudevent_with_a_stable_id() -> None:
    cause = StoredEvent(
        7,
        1,
        {"specversion": "1.0", "id": "o-1", "source": "shop", "type": "order.created"},
        b'{"n": 1}',
        DataKind.JSON,
        "2026-01-01T00:00:00.000000Z",
    )
    secret = signing.new_secret()
    first = lifecycle.render_call("i1", "orders", "notify", 0, {"big": 2**70}, cause, 1e9)
    again = lifecycle.render_call("i1", "orders", "notify", 0, {"big": 2**70}, cause, 2e9)
    headers, payload = first
    assert headers["ce-id"] == again[0]["ce-id"] == "call_i1_0"
    assert headers["ce-type"] == "eventhub.instance.call"
    assert headers["ce-cxpinstanceid"] == "i1"
    assert b'"big":1180591620717411303424' in payload  # exact, not a float
    data = orjson.loads(payload)
    assert data["event"]["data"] == {"n": 1} and data["step"] == "notify"
    now = time.time()  # the verifier allows five minutes of skew
    signed = {**headers, **signing.Signer(secret).headers(headers["ce-id"], now, payload)}
    standardwebhooks.Webhook(secret).verify(payload, signed)


@pytest.mark.parametrize(
    ("answer", "merged"),
    [
        (b'{"approved": true}', {"a": 1, "approved": True}),
        (b"", {"a": 1}),
        (b"[1, 2]", {"a": 1}),
        (b"not json", {"a": 1}),
        (None, {"a": 1}),
        (b'{"a": 2}', {"a": 2}),
    ],
)
def test_a_call_answer_merges_only_a_json_object(
    answer: bytes | None, merged: dict[str, Any]
) -> None:
    variables, detail = _answered({"a": 1}, 200, answer)
    assert variables == merged
    assert detail.startswith("HTTP 200")
