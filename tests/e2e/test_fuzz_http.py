"""Random requests against the real server over real HTTP: every answer is a 2xx, or a 4xx in
the error shape; never a 5xx; and a refused batch leaves the log exactly as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_KEY, settings_for
from tests.e2e.threaded import call, threaded_server

AUTH = ("Authorization", f"Bearer {ADMIN_KEY}")


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    settings = settings_for(Path(tmp_path_factory.mktemp("fuzz")), max_batch_events=50)
    with threaded_server(settings) as port:
        yield port


def log_length(port: int) -> int:
    count, after = 0, 0
    while True:
        status, body = call(port, "GET", f"/events?after={after}&limit=1000", [AUTH], b"")
        assert status == 200
        page = orjson.loads(body)
        if not page["events"]:
            return count
        count += len(page["events"])
        after = page["nextAfter"]


printable = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=16)
ce_headers = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "ce-specversion",
                "ce-id",
                "ce-source",
                "ce-type",
                "ce-time",
                "ce-subject",
                "ce-datacontenttype",
                "ce-my_ext",
                "ce-ext",
            ]
        ),
        st.one_of(printable, st.sampled_from(["1.0", "%C0%A0", "%E2%82%AC", '"a b"'])),
    ),
    max_size=6,
    unique_by=lambda pair: pair[0],
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
        "text/plain",
        "application/xml",
        "application/cloudevents+avro",
        "",
    ]
)
json_bodies = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "specversion",
                    "id",
                    "source",
                    "type",
                    "data",
                    "data_base64",
                    "time",
                    "Bad",
                    "traceid",
                    "x",
                ]
            ),
            inner,
            max_size=6,
        ),
    ),
    max_leaves=12,
).map(orjson.dumps)
bodies = st.one_of(json_bodies, st.binary(max_size=48))
paths = st.sampled_from(
    ["/events", "/api/ingestion/event/batch", "/api/ingestion/uipath/orchestrator"]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=paths, headers=ce_headers, content_type=content_types, body=bodies, with_key=st.booleans()
)
def test_any_request_is_answered_2xx_or_4xx_and_nothing_is_half_stored(
    port: int,
    path: str,
    headers: list[tuple[str, str]],
    content_type: str,
    body: bytes,
    with_key: bool,
) -> None:
    before = log_length(port)
    sent = [*headers, *([("Content-Type", content_type)] if content_type else [])]
    if with_key:
        sent.append(AUTH)
    status, answer = call(port, "POST", path, sent, body)
    assert status < 500, answer
    after = log_length(port)
    if status >= 400:
        error = orjson.loads(answer)["error"]
        assert isinstance(error["code"], str) and error["message"]
        assert isinstance(error["details"], list)
        assert after == before, "a refused request stored something"
    else:
        assert with_key
        accepted = orjson.loads(answer)["accepted"] if answer else None
        if accepted is not None:
            new = sum(1 for e in orjson.loads(answer)["events"] if not e["duplicate"])
            assert after == before + new
