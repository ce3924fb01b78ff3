"""Hostile review of issue 10's surfaces: each test here failed on the main it started from."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
from pathlib import Path

import pytest

from eventhub.log.sqlite import SqliteStore
from tests.conftest import ADMIN_KEY, ManualClock, Running
from tests.e2e.delivery_helpers import SUBS, publish_trigger, request, send, subscribe
from tests.e2e.helpers import bearer
from tests.e2e.receiver import Receiver
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


def _open_snapshots() -> list[str]:
    """The backup snapshots this process (the test hub's) still holds open."""
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if ".backup-" in target:
                held.append(target)
    return held


async def test_a_backup_client_that_goes_away_mid_stream_frees_the_snapshot(
    server: Running,
) -> None:
    # The snapshot is unlinked at once, so nothing stays in the directory; but its space
    # comes back only when the stream closes it: a client that vanishes must not keep a
    # database-sized file open until the process ends.
    for n in range(4):  # ~8 MiB of incompressible data: more than the socket buffers hold
        headers = {
            **bearer(),
            "ce-specversion": "1.0",
            "ce-id": str(n),
            "ce-source": "/s",
            "ce-type": "t",
            "Content-Type": "application/octet-stream",
        }
        response = await server.post(
            "/events", headers=headers, data=io.BytesIO(os.urandom(2 << 20))
        )
        assert response.status == 200
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET /admin/backup HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\r\n".encode()
    )
    await writer.drain()
    assert (await reader.readexactly(64 * 1024))[:12] == b"HTTP/1.1 200"
    assert _open_snapshots()  # it streams
    writer.transport.abort()  # gone, without reading the rest
    async with asyncio.timeout(5):
        while _open_snapshots():
            await asyncio.sleep(0.01)


async def test_retention_by_size_never_deletes_an_event_appended_while_it_plans(
    server: Running, receiver: Receiver
) -> None:
    # A batch is planned with two reads: what live subscriptions need (NEEDED_FROM), then the
    # oldest events below that bound. A subscription that has caught up needs nothing, so the
    # bound is "everything"; an event it matches, appended between the two reads, was in the
    # second one and went over the size limit before it was ever delivered.
    await publish_trigger(server)
    # Paused (live: its backlog must be kept), nothing behind: it needs nothing yet.
    sub = await subscribe(server, receiver.url)
    status, _ = await request(server, "PATCH", f"{SUBS}/{sub['id']}/pause")
    assert status == 200
    store = server.hub.store
    assert isinstance(store, SqliteStore)
    loop = asyncio.get_running_loop()
    appended: list[int] = []

    def between_the_reads(statement: str) -> None:
        # SQLite's own trace hook on the planning connection (in its thread): once the
        # bound is read, an event arrives and is acknowledged before the next read.
        if "pragma_page_count" in statement and not appended:
            appended.extend(asyncio.run_coroutine_threadsafe(send(server, 1), loop).result(10))

    planner = (
        store._checkpoints.conn
    )  # the connection retention plans on (log/sqlite/checkpointer.py)
    assert planner is not None
    await planner.set_trace_callback(between_the_reads)
    try:
        await store.prune(None, 1, 200)  # over a 1-byte limit: whatever is not needed goes
    finally:
        await planner.set_trace_callback(None)  # type: ignore[arg-type]  # sqlite3 takes None
    assert len(appended) == 1  # the hook ran: the race happened
    page = await server.get_json(f"/events?after={appended[0] - 1}")
    assert [e["offset"] for e in page["events"]] == appended  # still in the log
    status, _ = await request(server, "PATCH", f"{SUBS}/{sub['id']}/resume")
    assert status == 200
    await receiver.wait_for(1)
    assert [b[0]["offset"] for b in receiver.json_bodies()] == appended


async def test_a_long_poll_whose_client_went_away_stops_waiting(server: Running) -> None:
    # A vanished client's connection no longer counts toward max_connections, but its wait
    # went on for up to 30 s, then read the log for no one: connect, ask, drop, repeat
    # piled up waiters (and reads) that no connection limit bounds.
    watch = server.hub.head
    head = watch.head
    host, port = server.url.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET /events?after={head}&wait=30 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {ADMIN_KEY}\r\n\r\n".encode()
    )
    await writer.drain()
    async with asyncio.timeout(5):
        while not watch._moved._waiters:  # asyncio.Event's own list: the poll waits
            await asyncio.sleep(0.005)
    writer.transport.abort()
    async with asyncio.timeout(5):
        while watch._moved._waiters:
            await asyncio.sleep(0.005)


async def test_a_long_poll_answers_an_event_appended_while_it_waits(server: Running) -> None:
    watch = server.hub.head
    head = watch.head
    params = {"after": head, "wait": 30}
    poll = asyncio.create_task(
        server.http.get(f"{server.url}/events", params=params, headers=bearer())
    )
    async with asyncio.timeout(5):
        while not watch._moved._waiters:
            await asyncio.sleep(0.005)
    (offset,) = await send(server, 1)
    async with asyncio.timeout(5), await poll as response:
        assert response.status == 200
        page = await response.json()
    assert [e["offset"] for e in page["events"]] == [offset] and page["head"] >= offset


_figure_reads: list[str] = []


def _count_figure_reads(event: str, args: tuple[object, ...]) -> None:
    # log/figures.py opens a read-only connection of its own per scrape: the audit event of
    # sqlite3.connect (Python's own, not a mock) counts them.
    if event == "sqlite3.connect" and "mode=ro" in str(args[0]) and _figure_reads[:1] == ["on"]:
        _figure_reads.append(str(args[0]))


async def test_concurrent_scrapes_share_one_read_of_the_state(server: Running) -> None:
    # Every scrape built its families on the loop (42 ms with metrics_per_subscription over
    # 10,000 subscriptions) and read the database in a thread of the default pool: N
    # scrapers at once cost N times that. Those that arrive while one is in flight now
    # share its answer.
    if not _figure_reads:
        sys.addaudithook(_count_figure_reads)  # for the process's life: once
        _figure_reads.append("off")
    _figure_reads[:] = ["on"]
    try:
        bodies = await asyncio.gather(*(_scrape_text(server) for _ in range(20)))
    finally:
        reads, _figure_reads[:] = len(_figure_reads) - 1, ["off"]
    assert all("eventhub_log_head_offset" in b for b in bodies)
    assert 1 <= reads < 20, reads


async def _scrape_text(server: Running) -> str:
    async with server.http.get(f"{server.url}/metrics", headers=bearer()) as response:
        assert response.status == 200
        return await response.text()
