"""Who may publish and administer: API keys with roles and source limits, per-source HMAC
signatures of the raw body (eventhub, Emporix and UiPath headers), revocation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.conftest import ADMIN_KEY, Running
from tests.e2e.helpers import STRUCTURED, bearer, error_of, hmac_b64, hmac_hex

SECRET = "s3cret-of-at-least-16-chars"
UIPATH_BODY = (Path(__file__).parent / "data" / "uipath" / "job.started.json").read_bytes()


def body_for(source: str, id_: str = "a-1", **extra: Any) -> bytes:
    event = {"specversion": "1.0", "id": id_, "source": source, "type": "com.example.t", **extra}
    return json.dumps(event).encode()


async def publish(
    server: Running, body: bytes, key: str | None = None, **headers: str
) -> aiohttp.ClientResponse:
    all_headers = {"content-type": STRUCTURED, **headers}
    if key is not None:
        all_headers.update(bearer(key))
    return await server.post("/events", data=body, headers=all_headers)


async def put_source(server: Running, name: str, **body: Any) -> dict[str, Any]:
    async with server.http.put(
        f"{server.url}/admin/sources/{quote(name, safe='')}", json=body, headers=server.admin
    ) as response:
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


# -- API keys -----------------------------------------------------------------------------------


async def test_no_key_is_401_with_the_error_shape(server: Running) -> None:
    response = await publish(server, body_for("/s"))
    await error_of(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    async with server.http.get(server.url + "/events") as response:
        await error_of(response, 401, "unauthorized")
    assert await server.log() == []


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer nonsense",
        "Bearer eh_000000000000_guessed",
        f"Bearer {ADMIN_KEY}x",
        f"Basic {ADMIN_KEY}",
        "Bearer ",
    ],
)
async def test_wrong_key_is_401(server: Running, authorization: str) -> None:
    response = await server.post(
        "/events",
        data=body_for("/s"),
        headers={"content-type": STRUCTURED, "Authorization": authorization},
    )
    error = await error_of(response, 401, "unauthorized")
    assert ADMIN_KEY not in error["message"]
    async with server.http.get(
        server.url + "/events", headers={"Authorization": authorization}
    ) as response:
        await error_of(response, 401, "unauthorized")
    assert await server.log() == []


async def test_consumer_key_may_read_but_not_publish(server: Running) -> None:
    consumer = await server.new_key("consumer")
    await error_of(await publish(server, body_for("/s"), consumer), 403, "forbidden")
    assert await server.get_json("/events", key=consumer) == {
        "events": [],
        "nextAfter": 0,
        "head": 0,
    }


async def test_consumer_key_may_not_publish_even_an_empty_batch(server: Running) -> None:
    consumer = await server.new_key("consumer")
    for path, content_type in (
        ("/events", "application/cloudevents-batch+json"),
        ("/api/ingestion/event/batch", "application/json"),
    ):
        response = await server.post(
            path, data=b"[]", headers={"content-type": content_type, **bearer(consumer)}
        )
        await error_of(response, 403, "forbidden")
    producer = await server.new_key("producer", ["/mine"])
    response = await server.post(
        "/events",
        data=b"[]",
        headers={"content-type": "application/cloudevents-batch+json", **bearer(producer)},
    )
    assert response.status == 200
    assert await response.json() == {"accepted": 0, "events": []}


async def test_producer_limited_to_sources(server: Running) -> None:
    producer = await server.new_key("producer", ["/mine", "/also-mine"])
    await error_of(await publish(server, body_for("/theirs"), producer), 403, "forbidden")
    assert (await publish(server, body_for("/mine"), producer)).status == 200

    # A batch naming one source outside the key's list is refused whole.
    batch = json.dumps(
        [json.loads(body_for("/also-mine", "b-1")), json.loads(body_for("/theirs", "b-2"))]
    ).encode()
    response = await server.post(
        "/events",
        data=batch,
        headers={"content-type": "application/cloudevents-batch+json", **bearer(producer)},
    )
    await error_of(response, 403, "forbidden")
    assert len(await server.log()) == 1

    # It may read its own sources by id, not others', and not the whole log.
    assert (await server.get_json("/events/%2Fmine/a-1", key=producer))["event"]["id"] == "a-1"
    async with server.http.get(
        server.url + "/events/%2Ftheirs/a-1", headers=bearer(producer)
    ) as response:
        await error_of(response, 403)
    async with server.http.get(server.url + "/events", headers=bearer(producer)) as response:
        await error_of(response, 403, "forbidden")


async def test_unlimited_producer_may_publish_anywhere(server: Running) -> None:
    producer = await server.new_key("producer")
    assert (await publish(server, body_for("/anything"), producer)).status == 200


async def test_revoked_key_is_401(server: Running) -> None:
    response = await server.post(
        "/admin/keys", json={"role": "producer", "name": "temp"}, headers=server.admin
    )
    created = await response.json()
    key, key_id = created["key"], created["id"]
    assert (await publish(server, body_for("/s", "r-1"), key)).status == 200

    async with server.http.delete(f"{server.url}/admin/keys/{key_id}", headers=server.admin) as r:
        assert r.status == 204
    await error_of(await publish(server, body_for("/s", "r-2"), key), 401, "unauthorized")
    listed = await server.get_json("/admin/keys")
    (record,) = [k for k in listed["keys"] if k["id"] == key_id]
    assert record["revokedAt"] is not None
    assert "key" not in record, "a key is shown once, at creation"
    async with server.http.delete(f"{server.url}/admin/keys/{key_id}", headers=server.admin) as r:
        await error_of(r, 404)


@pytest.mark.parametrize("role", ["producer", "consumer"])
async def test_admin_endpoints_need_an_admin_key(server: Running, role: str) -> None:
    key = await server.new_key(role)
    calls = [
        ("POST", "/admin/keys", {"role": "admin", "name": "escalate"}),
        ("GET", "/admin/keys", None),
        ("DELETE", "/admin/keys/whatever", None),
        ("PUT", "/admin/sources/s", {"secret": SECRET}),
        ("GET", "/admin/sources", None),
        ("DELETE", "/admin/sources/s", None),
    ]
    for method, path, body in calls:
        async with server.http.request(
            method, server.url + path, json=body, headers=bearer(key)
        ) as response:
            await error_of(response, 403, "forbidden")
        async with server.http.request(method, server.url + path, json=body) as response:
            await error_of(response, 401, "unauthorized")
    keys = await server.get_json("/admin/keys")
    assert all(k["name"] != "escalate" for k in keys["keys"])


# -- source signatures --------------------------------------------------------------------------


async def test_signed_requests_need_no_key(server: Running) -> None:
    # Without a key, the request names its source in a header, so the hub can refuse any other
    # before reading the body (SPEC §8).
    source = "/signed/source"
    await put_source(server, source, secret=SECRET)
    named = {"x-eventhub-source": source}
    body = body_for(source, "h-1")
    signed = {**named, "x-eventhub-hmac": hmac_hex(SECRET, body)}
    assert (await publish(server, body, **signed)).status == 200
    body = body_for(source, "h-2")
    signed = {**named, "x-eventhub-hmac": hmac_b64(SECRET, body)}
    assert (await publish(server, body, **signed)).status == 200
    body = body_for(source, "h-3")
    signed = {**named, "x-eventhub-hmac": "sha256=" + hmac_hex(SECRET, body)}
    assert (await publish(server, body, **signed)).status == 200
    body = body_for(source, "h-4")
    signed = {**named, "x-emporix-hmac": hmac_b64(SECRET, body)}
    assert (await publish(server, body, **signed)).status == 200
    body = body_for(source, "h-5")
    unnamed = {"x-eventhub-hmac": hmac_hex(SECRET, body)}
    await error_of(await publish(server, body, **unnamed), 401, "unauthorized")
    assert [e["event"]["id"] for e in await server.log()] == ["h-1", "h-2", "h-3", "h-4"]


async def test_bad_signature_is_401_even_with_a_key(server: Running) -> None:
    source = "/signed"
    await put_source(server, source, secret=SECRET)
    body = body_for(source, "bad")
    wrong = [
        hmac_hex("another-secret-of-16+", body),
        hmac_hex(SECRET, body + b" "),  # signed a different body
        "not-a-signature",
        "",
    ]
    for signature in wrong:
        headers = {"x-eventhub-hmac": signature, "x-eventhub-source": source}
        response = await publish(server, body, **headers)
        await error_of(response, 401, "unauthorized")
        response = await publish(server, body, ADMIN_KEY, **{"x-emporix-hmac": signature})
        await error_of(response, 401, "unauthorized")
    assert await server.log() == []


async def test_signature_cannot_cover_an_unregistered_source(server: Running) -> None:
    await put_source(server, "/registered", secret=SECRET)
    batch = json.dumps(
        [json.loads(body_for("/registered", "x-1")), json.loads(body_for("/other", "x-2"))]
    ).encode()
    response = await server.post(
        "/events",
        data=batch,
        headers={
            "content-type": "application/cloudevents-batch+json",
            "x-eventhub-hmac": hmac_hex(SECRET, batch),
        },
    )
    await error_of(response, 401, "unauthorized")
    # Naming the registered source and signing for it covers that source only.
    response = await server.post(
        "/events",
        data=batch,
        headers={
            "content-type": "application/cloudevents-batch+json",
            "x-eventhub-hmac": hmac_hex(SECRET, batch),
            "x-eventhub-source": "/registered",
        },
    )
    await error_of(response, 403, "forbidden")
    body = body_for("/unregistered")
    await error_of(await publish(server, body, **{"x-eventhub-hmac": hmac_hex(SECRET, body)}), 401)
    signed = {"x-eventhub-hmac": hmac_hex(SECRET, body), "x-eventhub-source": "/unregistered"}
    await error_of(await publish(server, body, **signed), 401)
    assert await server.log() == []


async def test_source_requiring_signature_refuses_even_an_admin_key(server: Running) -> None:
    created = await put_source(server, "/strict", requireSignature=True)
    secret = created["secret"]  # generated and shown this once
    assert len(secret) >= 16
    listed = await server.get_json("/admin/sources")
    assert listed["sources"] == [
        {
            "name": "/strict",
            "requireSignature": True,
            "maxBodyBytes": None,
            "createdAt": created["createdAt"],
        }
    ]

    body = body_for("/strict", "s-1")
    await error_of(await publish(server, body, ADMIN_KEY), 401, "unauthorized")
    await error_of(await publish(server, body), 401, "unauthorized")
    signed = {"x-eventhub-hmac": hmac_hex(secret, body), "x-eventhub-source": "/strict"}
    assert (await publish(server, body, ADMIN_KEY, **signed)).status == 200
    assert (await publish(server, body, **signed)).status == 200  # a duplicate, acknowledged
    assert len(await server.log()) == 1

    # Deleting the source lifts the requirement.
    async with server.http.delete(
        f"{server.url}/admin/sources/%2Fstrict", headers=server.admin
    ) as response:
        assert response.status == 204
    assert (await publish(server, body_for("/strict", "s-2"), ADMIN_KEY)).status == 200


# -- UiPath -------------------------------------------------------------------------------------


async def test_uipath_signature(server: Running) -> None:
    await put_source(server, "orchestrator", secret=SECRET)
    path = "/api/ingestion/uipath/orchestrator"
    headers = {"content-type": "application/json"}

    good = {**headers, "X-UiPath-Signature": hmac_b64(SECRET, UIPATH_BODY)}
    response = await server.post(path, data=UIPATH_BODY, headers=good)
    assert response.status == 200, await response.text()

    for signature in (hmac_b64("wrong-secret-16-chars", UIPATH_BODY), hmac_b64(SECRET, b"{}")):
        bad = {**headers, "X-UiPath-Signature": signature}
        await error_of(await server.post(path, data=UIPATH_BODY, headers=bad), 401)
        await error_of(
            await server.post(path, data=UIPATH_BODY, headers={**bad, **server.admin}), 401
        )
    await error_of(await server.post(path, data=UIPATH_BODY, headers=headers), 401)
    assert len(await server.log()) == 1


async def test_a_signed_request_for_an_unregistered_source_says_so(server: Running) -> None:
    """Signed, but for a source nobody registered: the 401 says that no source of the name is
    registered, not to send a key or a signature it did send; it lists no other source."""
    await put_source(server, "/registered", secret=SECRET)
    body = body_for("/unregistered")
    signed = {"x-eventhub-hmac": hmac_hex(SECRET, body), "x-eventhub-source": "/unregistered"}
    error = await error_of(await publish(server, body, **signed), 401, "unauthorized")
    assert "no source of that name is registered" in error["message"]
    assert "'/unregistered'" in error["message"] and "/registered'" not in error["message"]
    response = await server.post(
        "/api/ingestion/uipath/unregistered",
        data=UIPATH_BODY,
        headers={"content-type": "application/json", "x-uipath-signature": "c2lnbmVk"},
    )
    error = await error_of(response, 401, "unauthorized")
    assert "no source of that name is registered" in error["message"]
    # Unsigned, it is still told how to authenticate.
    error = await error_of(await publish(server, body, **{"x-eventhub-source": "/x"}), 401)
    assert "send an API key" in error["message"]
    assert await server.log() == []
