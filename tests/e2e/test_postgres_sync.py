"""API keys, sources and the catalogue changed on one ``eventhub serve`` process reach the
others on the same PostgreSQL (SPEC §9): a key made on a authenticates on b, a key revoked
on a is refused on b and its subscriptions are paused; a source put on a admits signed
ingests at b; a model published on a fires its trigger for events ingested at b at once (no
wait for any notification), follows a's changes and a's delete. Real processes, the
session's PostgreSQL (tests/postgres.py), one real receiver."""

from __future__ import annotations

import hashlib
import hmac
import itertools
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.delivery_helpers import KM, SUBS
from tests.e2e.helpers import ServerProcess
from tests.e2e.test_postgres_leases import Calls, call, hub_process, running, until

SECRET = "s" * 32
_ids = itertools.count()


async def me(http: aiohttp.ClientSession, hub: ServerProcess, key: str) -> int:
    async with http.get(f"{hub.url}/api/me", headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status


async def signed(http: aiohttp.ClientSession, hub: ServerProcess, type_: str) -> int:
    """One event, without an API key: signed with source ``shop``'s secret."""
    body = b"{}"
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"e-{next(_ids)}",
        "ce-source": "shop",
        "ce-type": type_,
        "content-type": "application/json",
        "X-Eventhub-Source": "shop",
        "X-Eventhub-Hmac": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }
    async with http.post(f"{hub.url}/events", data=body, headers=headers) as r:
        if r.status == 200:
            return int((await r.json())["events"][0]["offset"])
        return -r.status


async def model(
    http: aiohttp.ClientSession, hub: ServerProcess, type_: str, create: bool = True
) -> None:
    """Publish ``orders`` (trigger ``created``: events of ``type_``) through ``hub``."""
    base = f"{hub.url}{KM}/orders"
    if create:
        assert (await call(http, "PUT", base, {"name": "orders"}))[0] == 200
    trigger = {"name": "created", "filters": [{"exact": {"type": type_}}]}
    assert (await call(http, "PUT", f"{base}/triggers/created", trigger))[0] == 200
    code, body = await call(http, "POST", f"{base}/publish")
    assert code == 200, body


async def test_keys_sources_and_the_catalogue_reach_the_other_process(
    tmp_path: Path, pg_dsn: str
) -> None:
    calls = Calls()
    await calls.start()
    a, b = hub_process(tmp_path, "a", pg_dsn), hub_process(tmp_path, "b", pg_dsn)
    try:
        async with running(a, b) as http:
            # A key made on a: b authenticates it (within milliseconds; polled).
            code, made = await call(
                http, "POST", f"{a.url}/admin/keys", {"name": "c", "role": "consumer"}
            )
            assert code == 201, made
            key, key_id = made["key"], made["id"]
            await until("the key works on b", lambda: _is(me(http, b, key), 200), 5)

            # A source put on a: b admits what its secret signs (refused before).
            assert await signed(http, b, "order.created") == -401
            code, _ = await call(http, "PUT", f"{a.url}/admin/sources/shop", {"secret": SECRET})
            assert code in (200, 201)
            await until("b admits shop", lambda: _positive(signed(http, b, "order.created")), 5)

            # A model published on a, a subscription on it made on a with the key: events
            # ingested at b right after (no wait) fire the trigger and are delivered.
            await model(http, a, "order.created")
            sub = await _subscribe(http, a, key, f"{calls.url}/0")
            first = [await signed(http, b, "order.created") for _ in range(3)]
            await signed(http, b, "order.other")
            assert min(first) > 0
            await until("delivered", lambda: _got(calls, first), 10)

            # The model changed on a (another type): b matches the new filter, not the old.
            await model(http, a, "order.placed", create=False)
            skipped = await signed(http, b, "order.created")
            placed = await signed(http, b, "order.placed")
            assert min(skipped, placed) > 0
            await until(
                "the new filter's event delivered", lambda: _got(calls, [*first, placed]), 10
            )
            assert skipped not in calls.offsets["0"]  # delivered in order: it would be here
            code, body = await call(http, "GET", f"{b.url}{KM}/orders")
            assert code == 200 and body["version"] == 2, body

            # The key revoked on a: refused on b, and its subscription paused (as seen on b),
            # where an admin may not resume it either.
            code, _ = await call(http, "DELETE", f"{a.url}/admin/keys/{key_id}")
            assert code in (200, 204)
            await until("the key refused on b", lambda: _is(me(http, b, key), 401), 5)
            await until("paused on b", lambda: _status(http, b, sub, "Paused"), 5)
            code, body = await call(http, "PATCH", f"{b.url}{SUBS}/{sub}/resume")
            assert code == 409, body

            # The model deleted on a (its subscription first): gone on b, and b's events no
            # longer fire its trigger.
            code, _ = await call(http, "DELETE", f"{a.url}{SUBS}/{sub}")
            assert code in (200, 204)
            await until(
                "subscription gone on b", lambda: _code(http, f"{b.url}{SUBS}/{sub}", 404), 5
            )
            code, _ = await call(http, "DELETE", f"{a.url}{KM}/orders")
            assert code in (200, 204), code
            await until("model gone on b", lambda: _code(http, f"{b.url}{KM}/orders", 404), 5)
            code, listed = await call(http, "GET", f"{b.url}{KM}")
            assert code == 200 and "orders" not in str(listed), listed
    finally:
        a.close()
        b.close()
        await calls.stop()


async def _subscribe(http: aiohttp.ClientSession, hub: ServerProcess, key: str, uri: str) -> str:
    body = {"name": "t", "callbackInfo": {"uri": uri, "headers": {}}, "batchSize": 5}
    url = f"{hub.url}{KM}/orders/triggers/created/subscriptions"
    async with http.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        created = await r.json()
        assert r.status == 201, created
        return str(created["id"])


async def _is(status: Any, want: int) -> bool:
    return bool(await status == want)


async def _positive(offset: Any) -> bool:
    return bool(await offset > 0)


async def _got(calls: Calls, offsets: list[int]) -> bool:
    return calls.offsets["0"] == offsets


async def _status(http: aiohttp.ClientSession, hub: ServerProcess, sub_id: str, want: str) -> bool:
    code, body = await call(http, "GET", f"{hub.url}{SUBS}/{sub_id}")
    return code == 200 and body["status"] == want


async def _code(http: aiohttp.ClientSession, url: str, want: int) -> bool:
    return (await call(http, "GET", url))[0] == want
