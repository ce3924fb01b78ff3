"""The receipt of one event is written by hand (api/ingest.py ``_one_receipt``): the same
bytes as the JSON encoder gives the general form, whatever the source and id hold."""

from __future__ import annotations

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from eventhub.api import ingest
from eventhub.codec import parse
from eventhub.events import Appended


@settings(max_examples=300, deadline=None)
@given(
    source=st.text(min_size=1),
    event_id=st.text(min_size=1),
    offset=st.integers(min_value=1, max_value=2**62),
    revision=st.integers(min_value=1, max_value=2**31),
    duplicate=st.booleans(),
)
@example(  # quotes, a backslash, past Latin-1, a JSON-legal separator, an astral emoji
    source='/a"b\\c/\u00e9\u2028', event_id='id"\\\U0001f600', offset=1, revision=1, duplicate=True
)
def test_one_receipt_is_the_general_receipt(
    source: str, event_id: str, offset: int, revision: int, duplicate: bool
) -> None:
    body = {"specversion": "1.0", "id": event_id, "source": source, "type": "t"}
    try:
        event = parse.parse_structured(orjson.dumps(body))
    except Exception:
        return  # not an event the hub would store, so never a receipt
    appended = Appended(offset, revision, duplicate)
    general = orjson.dumps(
        {
            "accepted": 1,
            "events": [
                {
                    "source": event.source,
                    "id": event.id,
                    "offset": offset,
                    "revision": revision,
                    "duplicate": duplicate,
                }
            ],
        }
    )
    assert ingest._receipt([event], [appended]) == general


def test_a_correlation_takes_the_general_form() -> None:
    event = parse.parse_structured(b'{"specversion":"1.0","id":"i","source":"/s","type":"t"}')
    receipt = orjson.loads(ingest._receipt([event], [Appended(3, 1, False, "woke")]))
    assert receipt["events"][0]["correlation"] == "woke"
