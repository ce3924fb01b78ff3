"""The CloudEvents webhook handshake (http-webhook.md §4) and ``access_token`` (§3) on the
ingest endpoints, over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY, Running
from tests.e2e.helpers import custom_server

INGEST_PATHS = ("/events", "/api/ingestion/event/batch", "/api/ingestion/uipath/orchestrator")
UIPATH_JOB = (Path(__file__).parent / "data" / "uipath" / "job.created.json").read_bytes()
CAMUNDA_ONE = json.dumps(
    [
        {
            "specversion": "1.0",
            "id": "c-1",
            "source": "order-service",
            "type": "orderCreated",
            "traceid": "t1",
            "data": {},
        }
    ]
).encode()
BINARY = {
    "ce-specversion": "1.0",
    "ce-id": "b-1",
    "ce-source": "shop",
    "ce-type": "order.created",
    "content-type": "application/json",
}


async def handshake(server: Running, path: str, **headers: str) -> dict[str, str]:
    async with server.http.options(server.url + path, headers=headers) as response:
        assert response.status == 200, await response.text()
        return {name.lower(): value for name, value in response.headers.items()}


async def test_no_origin_is_allowed_by_default(server: Running) -> None:
    for path in INGEST_PATHS:
        answer = await handshake(server, path, **{"WebHook-Request-Origin": "a.example"})
        assert "POST" in answer["allow"]
        # Answered, but without the consent headers: no consent (§4.2).
        assert "webhook-allowed-origin" not in answer
        assert "webhook-allowed-rate" not in answer


async def test_a_listed_origin_gets_consent_on_every_ingest_endpoint(tmp_path: Path) -> None:
    async with custom_server(tmp_path, webhook_allowed_origins=("events.example.com",)) as hub:
        for path in INGEST_PATHS:
            asked = {"WebHook-Request-Origin": "Events.Example.com", "WebHook-Request-Rate": "120"}
            answer = await handshake(hub, path, **asked)
            assert answer["webhook-allowed-origin"] == "Events.Example.com"
            assert answer["webhook-allowed-rate"] == "*"
            other = await handshake(hub, path, **{"WebHook-Request-Origin": "evil.example"})
            assert "webhook-allowed-origin" not in other
            # Without the request header, OPTIONS is just OPTIONS.
            assert "webhook-allowed-origin" not in await handshake(hub, path)


async def test_a_star_consents_to_any_origin(tmp_path: Path) -> None:
    async with custom_server(tmp_path, webhook_allowed_origins=("*",)) as hub:
        answer = await handshake(hub, "/events", **{"WebHook-Request-Origin": "any.example"})
        assert answer["webhook-allowed-origin"] == "*"


async def test_other_paths_still_refuse_options(server: Running) -> None:
    async with server.http.options(server.url + "/admin/keys") as response:
        assert response.status == 405


@pytest.mark.parametrize(
    ("path", "body", "headers", "expect"),
    [
        ("/events", b'{"n": 1}', BINARY, 200),
        ("/api/ingestion/event/batch", CAMUNDA_ONE, {"content-type": "application/json"}, 204),
        (
            "/api/ingestion/uipath/orchestrator",
            UIPATH_JOB,
            {"content-type": "application/json"},
            200,
        ),
    ],
)
async def test_access_token_stands_for_the_bearer_header(
    server: Running, path: str, body: bytes, headers: dict[str, str], expect: int
) -> None:
    url = f"{server.url}{path}"
    async with server.http.post(url, data=body, headers=headers) as response:
        assert response.status == 401
    async with server.http.post(
        url, params={"access_token": ADMIN_KEY, "other": "1"}, data=body, headers=headers
    ) as response:
        assert response.status == expect, await response.text()
    async with server.http.post(
        url, params={"access_token": "not-a-key-0123456789"}, data=body, headers=headers
    ) as response:
        assert response.status == 401


async def test_access_token_once_and_not_with_the_header(server: Running) -> None:
    url = f"{server.url}/events"
    twice = f"{url}?access_token={ADMIN_KEY}&access_token={ADMIN_KEY}"
    async with server.http.post(twice, data=b"{}", headers=BINARY) as response:
        assert response.status == 400
    both = {**BINARY, "Authorization": f"Bearer {ADMIN_KEY}"}
    async with server.http.post(
        url, params={"access_token": ADMIN_KEY}, data=b"{}", headers=both
    ) as response:
        assert response.status == 400
    async with server.http.post(f"{url}?access_token=", data=b"{}", headers=BINARY) as response:
        assert response.status == 401


async def test_access_token_is_bounded_like_the_header(tmp_path: Path) -> None:
    async with custom_server(tmp_path, max_header_bytes=4096) as hub:
        long = "k" * 8192
        async with hub.http.post(
            f"{hub.url}/events", params={"access_token": long}, data=b"{}", headers=BINARY
        ) as response:
            assert response.status == 431
