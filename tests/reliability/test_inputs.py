"""Input strictness (issue 8): JSON numbers kept exactly, attributes given once, integer query
parameters in ASCII digits, an ASCII Content-Type, source secrets changed only when asked, and
the hub's own source and types written by no one else."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import pytest

from eventhub import cli
from tests.conftest import ADMIN_KEY, Running
from tests.e2e.helpers import BATCH, STRUCTURED, bearer, error_of, hmac_hex
from tests.reliability.ingest_raw import head, request

BIG = 2**70  # 1180591620717411303424: beyond orjson's 64-bit integers
CAMUNDA = "/api/ingestion/event/batch"
UIPATH = "/api/ingestion/uipath/"


def event(id_: str, source: str = "/in", **extra: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": id_, "source": source, "type": "com.example.t", **extra}


async def stored_data(server: Running, source: str, id_: str) -> tuple[str, Any]:
    """The event's data as the hub serves it: the raw JSON text and its exact value."""
    path = f"/events/{quote(source, safe='')}/{id_}"
    async with server.http.get(server.url + path, headers=bearer()) as response:
        text = await response.text()
        assert response.status == 200, text
    return text, json.loads(text)["event"]["data"]


def port_of(server: Running) -> int:
    return int(server.url.rsplit(":", 1)[1])


# -- item 2: JSON numbers exactly ---------------------------------------------------------------


async def test_big_integers_in_json_data_are_kept_digit_for_digit(server: Running) -> None:
    data = {"big": BIG, "negative": -(2**64) - 1, "small": 7, "float": 1.5}
    structured = json.dumps(event("n-1", data=data)).encode()
    response = await server.post(
        "/events", data=structured, headers={"content-type": STRUCTURED, **bearer()}
    )
    assert response.status == 200, await response.text()
    batch = json.dumps([event("n-2", data=data)]).encode()
    response = await server.post("/events", data=batch, headers={"content-type": BATCH, **bearer()})
    assert response.status == 200, await response.text()
    camunda = json.dumps([event("n-3", traceid="t", data=data)]).encode()
    response = await server.post(CAMUNDA, data=camunda, headers={"content-type": BATCH, **bearer()})
    assert response.status == 204, await response.text()

    for id_ in ("n-1", "n-2", "n-3"):
        text, stored = await stored_data(server, "/in", id_)
        assert str(BIG) in text, text
        assert stored == data


async def test_big_integers_tell_binary_events_apart(server: Running) -> None:
    # Same id, data differing only past 64 bits: a new revision, not a duplicate.
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "b-1",
        "ce-source": "/in",
        "ce-type": "com.example.t",
        "content-type": "application/json",
        **bearer(),
    }
    first = await server.post("/events", data=f'{{"n":{BIG}}}'.encode(), headers=headers)
    assert (await first.json())["events"][0]["duplicate"] is False
    second = await server.post("/events", data=f'{{"n":{BIG + 1}}}'.encode(), headers=headers)
    receipt = (await second.json())["events"][0]
    assert receipt["duplicate"] is False and receipt["revision"] == 2, receipt
    text, stored = await stored_data(server, "/in", "b-1")
    assert stored == {"n": BIG + 1}, text


# -- item 6: attributes given once ----------------------------------------------------------------


def with_repeated(name: str, first: str, second: str, **extra: Any) -> bytes:
    """An event object in which ``name`` appears twice (json.dumps cannot write that)."""
    fields = json.dumps(event("d-1", **extra))[1:-1]
    return ("{" + fields + f", {json.dumps(name)}: {json.dumps(first)}").encode() + (
        f", {json.dumps(name)}: {json.dumps(second)}}}"
    ).encode()


@pytest.mark.parametrize("name", ["source", "type", "subject", "tenant"])
async def test_an_attribute_given_twice_is_400_naming_it(server: Running, name: str) -> None:
    one = with_repeated(name, "a", "b") if name != "source" else with_repeated("source", "/x", "/y")
    cases = [
        ("/events", STRUCTURED, one, 200),
        ("/events", BATCH, b"[" + one + b"]", 200),
        (CAMUNDA, BATCH, b"[" + with_repeated(name, "/a", "/b", traceid="t") + b"]", 204),
    ]
    for path, content_type, body, _ in cases:
        response = await server.post(
            path, data=body, headers={"content-type": content_type, **bearer()}
        )
        error = await error_of(response, 400, "invalid_event")
        assert {d.get("attribute") for d in error["details"]} >= {name}, error
    assert await server.log() == []

    # Inside data, repeated names stay the producer's business (the last one counts).
    body = json.dumps(event("d-2", data={"k": 1}))[:-2].encode() + b', "k": 2}}'
    response = await server.post(
        "/events", data=body, headers={"content-type": STRUCTURED, **bearer()}
    )
    assert response.status == 200, await response.text()
    assert (await stored_data(server, "/in", "d-2"))[1] == {"k": 2}


async def test_a_uipath_field_given_twice_is_400_naming_it(server: Running) -> None:
    body = b'{"Type": "job.started", "EventId": "e-1", "EventId": "e-2", "Timestamp": null}'
    response = await server.post(
        UIPATH + "orchestrator",
        data=body,
        headers={"content-type": "application/json", **bearer()},
    )
    error = await error_of(response, 400, "invalid_event")
    assert {d.get("attribute") for d in error["details"]} == {"EventId"}, error


# -- item 3: integer query parameters -------------------------------------------------------------


@pytest.mark.parametrize("value", ["%D9%A3", "1_000", "%201", "%2B1", "1%20", "0x1", "1.0", ""])
async def test_integer_query_parameters_are_ascii_digits(server: Running, value: str) -> None:
    for path, name in (("/events?after=", "after"), ("/events?limit=", "limit")):
        async with server.http.get(f"{server.url}{path}{value}", headers=bearer()) as response:
            error = await error_of(response, 400, "invalid_request")
            assert name in error["message"]
    # A subscription's replay takes its offset through the same rule.
    async with server.http.patch(
        f"{server.url}/intelligence/api/subscriptions/any/replay?fromOffset={value}",
        headers=bearer(),
    ) as response:
        error = await error_of(response, 400, "invalid_request")
        assert "fromOffset" in error["message"]


async def test_plain_integer_query_parameters_still_work(server: Running) -> None:
    async with server.http.get(f"{server.url}/events?after=0&limit=5", headers=bearer()) as r:
        assert r.status == 200
    async with server.http.get(f"{server.url}/events?after={'9' * 5000}", headers=bearer()) as r:
        await error_of(r, 400, "invalid_request")


# -- item 5: Content-Type in ASCII ----------------------------------------------------------------


async def test_a_non_ascii_content_type_is_400_naming_the_header(server: Running) -> None:
    body = json.dumps(event("c-1")).encode()
    binary = {
        "ce-specversion": "1.0",
        "ce-id": "c-2",
        "ce-source": "/in",
        "ce-type": "com.example.t",
    }
    cases = [
        ("/events", b"text/plain; charset=\xe9t\xe9", binary, b"hello"),
        ("/events", b"application/cloudevents+json; x=\xc3\xa9", {}, body),
        ("/events", b"application/cloudevents-batch+json; x=\xff", {}, b"[" + body + b"]"),
        (CAMUNDA, b"application/json; x=\xff", {}, b"[]"),
        (UIPATH + "orchestrator", b"application/json; x=\xff", {}, b"{}"),
    ]
    for path, content_type, extra, payload in cases:
        headers: dict[str, str | bytes] = {
            "Authorization": f"Bearer {ADMIN_KEY}",
            "Content-Type": content_type,
            **extra,
        }
        answer = await request(port_of(server), head("POST", path, headers, len(payload)), payload)
        assert answer.status == 400, (path, answer.head, answer.body)
        error = json.loads(answer.body)["error"]
        assert error["code"] == "invalid_request"
        assert "Content-Type" in error["message"]
    assert await server.log() == []


# -- item 4: a source's secret changes only when asked --------------------------------------------


async def put_source(server: Running, name: str, body: dict[str, Any]) -> dict[str, Any]:
    async with server.http.put(
        f"{server.url}/admin/sources/{quote(name, safe='')}", json=body, headers=server.admin
    ) as response:
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


async def signed_publish(server: Running, source: str, secret: str, id_: str) -> int:
    body = json.dumps(event(id_, source)).encode()
    headers = {
        "content-type": STRUCTURED,
        "x-eventhub-source": source,
        "x-eventhub-hmac": hmac_hex(secret, body),
    }
    return (await server.post("/events", data=body, headers=headers)).status


async def test_updating_a_source_keeps_its_secret_until_rotated(
    server: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    created = await put_source(server, "/src", {})
    secret = created["secret"]
    assert await signed_publish(server, "/src", secret, "r-1") == 200

    updated = await put_source(server, "/src", {"requireSignature": True})
    assert "secret" not in updated
    assert await signed_publish(server, "/src", secret, "r-2") == 200

    rotated = await put_source(server, "/src", {"rotateSecret": True, "requireSignature": True})
    assert rotated["secret"] != secret
    assert await signed_publish(server, "/src", secret, "r-3") == 401
    assert await signed_publish(server, "/src", rotated["secret"], "r-4") == 200

    async with server.http.put(
        f"{server.url}/admin/sources/%2Fsrc",
        json={"rotateSecret": True, "secret": "x" * 16},
        headers=server.admin,
    ) as response:
        await error_of(response, 400, "invalid_request")

    # The CLI: an update keeps the secret; --rotate-secret prints a new one.
    common = ("--url", server.url, "--key", ADMIN_KEY)
    await _cli(capsys, "sources", "put", "/src", *common)
    assert await signed_publish(server, "/src", rotated["secret"], "r-5") == 200
    out = await _cli(capsys, "sources", "put", "/src", "--rotate-secret", *common)
    assert isinstance(out, dict) and out["secret"] not in (secret, rotated["secret"])
    assert await signed_publish(server, "/src", out["secret"], "r-6") == 200


async def test_an_update_changes_only_what_it_sends(
    server: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    created = await put_source(server, "/kept", {"requireSignature": True, "maxBodyBytes": 4096})
    assert created["requireSignature"] is True and created["maxBodyBytes"] == 4096
    # An update that names neither keeps both (before, a missing requireSignature reset it).
    kept = await put_source(server, "/kept", {})
    assert kept["requireSignature"] is True and kept["maxBodyBytes"] == 4096
    cleared = await put_source(server, "/kept", {"maxBodyBytes": None})
    assert cleared["requireSignature"] is True and cleared["maxBodyBytes"] is None
    for bad in (0, -1, True, "1", 10**12):
        async with server.http.put(
            f"{server.url}/admin/sources/%2Fkept", json={"maxBodyBytes": bad}, headers=server.admin
        ) as response:
            error = await error_of(response, 400, "invalid_request")
            assert "maxBodyBytes" in error["message"]

    # The CLI the same way: no flag keeps, --no-require-signature changes.
    common = ("--url", server.url, "--key", ADMIN_KEY)
    out = await _cli(capsys, "sources", "put", "/kept", "--max-body-bytes", "2048", *common)
    assert out["requireSignature"] is True and out["maxBodyBytes"] == 2048
    out = await _cli(capsys, "sources", "put", "/kept", "--no-require-signature", *common)
    assert out["requireSignature"] is False and out["maxBodyBytes"] == 2048


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = await asyncio.to_thread(cli.main, list(argv))
    assert code == 0
    text = capsys.readouterr().out
    return json.loads(text) if text.strip() else None


# -- item 7: the hub's own source and types -------------------------------------------------------


async def test_no_one_but_the_hub_writes_source_eventhub_or_types_eventhub(
    server: Running,
) -> None:
    producer = await server.new_key("producer")  # no source list: may publish anywhere else
    forged = [
        event("f-1", "eventhub", type="eventhub.subscription.failed"),
        event("f-2", "eventhub"),
        event("f-3", "/mine", type="eventhub.subscription.failed"),
    ]
    for key in (producer, ADMIN_KEY):
        for one in forged:
            response = await server.post(
                "/events",
                data=json.dumps(one).encode(),
                headers={"content-type": STRUCTURED, **bearer(key)},
            )
            error = await error_of(response, 403, "forbidden")
            assert "eventhub" in error["message"]
        binary = {
            "ce-specversion": "1.0",
            "ce-id": "f-4",
            "ce-source": "eventhub",
            "ce-type": "eventhub.key.limit_reached",
            **bearer(key),
        }
        await error_of(await server.post("/events", data=b"", headers=binary), 403)
        response = await server.post(
            UIPATH + "eventhub",
            data=b'{"Type": "job.started", "EventId": "f-5"}',
            headers={"content-type": "application/json", **bearer(key)},
        )
        await error_of(response, 403, "forbidden")
    assert await server.log() == []

    async with server.http.put(
        f"{server.url}/admin/sources/eventhub", json={}, headers=server.admin
    ) as response:
        await error_of(response, 400, "invalid_request")


def test_the_reserved_source_is_the_notifications_source() -> None:
    from eventhub import auth, notifications

    assert auth.HUB_SOURCE == notifications.SOURCE
