"""Hostile review of issue 10's surfaces: each test here failed on the main it started from."""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN_KEY, ManualClock, Running
from tests.e2e.delivery_helpers import send
from tests.e2e.test_metrics import scrape, value
from tests.e2e.test_retention import DAY, Hub, until_first_offset
from tests.e2e.test_retention import hub_at as hub_at  # the fixture


async def test_the_metrics_head_never_moves_back_when_retention_empties_the_log(
    hub_at: Hub, clock: ManualClock
) -> None:
    # Offsets never move backwards (SPEC §7), and a Prometheus gauge of the head that drops to
    # 0 would read as a reset: the head is the highest offset ever handed out, as
    # ``GET /events`` says it, not the highest one still held.
    async with hub_at(retention_days=1.0) as server:
        assert await send(server, 3) == [1, 2, 3]
        assert value(await scrape(server), "eventhub_log_head_offset") == 3
        clock.advance(2 * DAY)
        await until_first_offset(server, 4)  # every event went
        assert value(await scrape(server), "eventhub_log_head_offset") == 3


@pytest.mark.parametrize("method", ["POST", "OPTIONS", "GET"])
async def test_a_trailing_slash_is_not_redirected_with_the_access_token_in_location(
    server: Running, method: str
) -> None:
    # Starlette's redirect_slashes answered ``/api/ingestion/event/batch/?access_token=KEY``
    # with a 307 whose Location, built from the Host header, repeated the key: a secret in a
    # 3xx that a client, proxy or log would carry on (SPEC §8: never in reads or errors).
    url = f"{server.url}/api/ingestion/event/batch/?access_token={ADMIN_KEY}"
    async with server.http.request(
        method, url, allow_redirects=False, headers={"Host": "elsewhere.example"}
    ) as response:
        body = await response.read()
        assert not 300 <= response.status < 400, response.headers.get("Location")
        assert response.status in (404, 405)
        assert ADMIN_KEY not in str(response.headers) and ADMIN_KEY.encode() not in body
