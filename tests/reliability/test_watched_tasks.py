"""Every background task is watched: a crash is logged, restarted with backoff, and shown by
``/readyz`` (503 naming the task) while it is down; ``stop`` releases everything whatever
failed before it.

Crashes are injected at one seam each, for one test only: the delivery client's ``post`` (the
network edge) raising an unexpected error, and the checkpointer's connection raising once.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from eventhub.hub import Hub
from eventhub.log.sqlite import SqliteStore
from tests.conftest import ManualClock, Running, settings_for, start
from tests.e2e.delivery_helpers import publish_trigger, send, sub_state, subscribe
from tests.e2e.helpers import bearer, custom_server, error_of
from tests.e2e.receiver import Receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def _readyz(server: Running, admin: bool = True) -> tuple[int, Any]:
    """``/readyz`` as an operator with the admin key asks it, or (``admin`` False) as an
    anonymous load balancer does."""
    headers = server.admin if admin else {}
    async with server.http.get(server.url + "/readyz", headers=headers) as response:
        if response.status == 200:
            return 200, await response.json()
        return response.status, await error_of(response, 503, "not_ready")


async def _until_not_ready(
    server: Running, naming: str, timeout: float = 10.0, admin: bool = True
) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            status, body = await _readyz(server, admin)
            if status == 503 and any(naming in d["reason"] for d in body["details"]):
                return dict(body)
            await asyncio.sleep(0.01)


async def _until_ready(server: Running, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while (await _readyz(server))[0] != 200:
            await asyncio.sleep(0.02)


async def test_readyz_is_ready_on_a_healthy_hub(server: Running) -> None:
    assert await _readyz(server) == (200, {"status": "ready"})


async def test_a_crashed_supervisor_is_shown_restarted_and_delivers_the_backlog_in_order(
    server: Running,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url)
    offsets = await send(server, 2)
    await receiver.wait_for(2)

    # A bug in the delivery path: every send raises something nobody handles.
    broken = asyncio.Event()
    broken.set()
    real_post = server.hub.sender.post

    async def post(*args: Any, **kwargs: Any) -> Any:
        if broken.is_set():
            raise RuntimeError("injected delivery bug")
        return await real_post(*args, **kwargs)

    monkeypatch.setattr(server.hub.sender, "post", post)
    offsets += await send(server, 5, start=2)

    body = await _until_not_ready(server, f"subscription-{sub['id']}")
    assert "crashed (RuntimeError)" in " ".join(d["reason"] for d in body["details"])
    # Without a key the probe still says why, but not which subscription (ids are not public).
    anonymous = await _until_not_ready(server, "subscription or instance task(s)", admin=False)
    reasons = " ".join(d["reason"] for d in anonymous["details"])
    assert "1 subscription or instance task(s) crashed" in reasons and sub["id"] not in reasons
    state = await sub_state(server, sub["id"])
    assert state["lastError"].startswith("delivery task crashed: RuntimeError: injected")
    assert any("crashed" in r.getMessage() and r.exc_info for r in caplog.records)

    broken.clear()  # the bug goes away: the restart delivers the backlog, in order
    await receiver.wait_for(7)
    delivered = [e["offset"] for body in receiver.json_bodies() for e in body]
    assert delivered == offsets
    await _until_ready(server)
    state = await sub_state(server, sub["id"])
    assert state["status"] == "Active" and state["lastError"] is None
    assert state["offset"] == offsets[-1]


async def test_the_checkpointer_crashing_once_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with custom_server(tmp_path, checkpoint_interval=0.05) as server:
        store = server.hub.store
        assert isinstance(store, SqliteStore)
        conn = store._checkpoints.conn
        assert conn is not None
        real_execute = conn.execute
        calls: list[str] = []

        def execute(sql: str, *args: Any) -> Any:
            calls.append(sql)
            if len(calls) == 1:
                raise RuntimeError("injected checkpointer bug")
            return real_execute(sql, *args)

        monkeypatch.setattr(conn, "execute", execute)
        await send(server, 1)  # something to checkpoint
        await _until_not_ready(server, "log-checkpointer")
        assert any(
            "log-checkpointer crashed" in r.getMessage() and r.exc_info for r in caplog.records
        )
        await _until_ready(server)
        await send(server, 1, start=1)
        async with asyncio.timeout(5):  # it checkpoints again after its restart
            while len(calls) < 2:
                await asyncio.sleep(0.01)


async def test_a_failed_checkpoint_is_retried_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with custom_server(tmp_path, checkpoint_interval=0.05) as server:
        store = server.hub.store
        assert isinstance(store, SqliteStore)
        conn = store._checkpoints.conn
        assert conn is not None
        real_execute = conn.execute
        calls: list[str] = []

        def execute(sql: str, *args: Any) -> Any:
            calls.append(sql)
            if len(calls) <= 2:  # what SQLite raises when the disk is full
                raise sqlite3.OperationalError("database or disk is full")
            return real_execute(sql, *args)

        monkeypatch.setattr(conn, "execute", execute)
        await send(server, 1)
        async with asyncio.timeout(5):
            while len(calls) < 3:  # retried on the next ticks, by the same task
                await asyncio.sleep(0.01)
        assert server.hub.tasks.health() == []
        assert (await _readyz(server))[0] == 200


async def test_stop_releases_everything_after_failures(tmp_path: Path, receiver: Receiver) -> None:
    """A hub whose supervisor keeps crashing and whose disk is full still stops: every task
    ended, every connection closed."""
    settings = settings_for(tmp_path, checkpoint_interval=0.05)
    uv, serving = await start(settings, ManualClock())
    hub: Hub = uv.config.app.state.hub  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http:
        server = Running(f"http://127.0.0.1:{settings.port}", hub, http, bearer())
        await publish_trigger(server)
        sub = await subscribe(server, receiver.url)

        async def post(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("injected delivery bug")

        hub.sender.post = post  # type: ignore[method-assign]
        await send(server, 1)
        await _until_not_ready(server, f"subscription-{sub['id']}")

        store = hub.store
        assert isinstance(store, SqliteStore)
        writer, pages = store._conn, store._pages
        assert writer is not None and pages is not None
        (count,) = writer.execute("PRAGMA page_count").fetchone()
        writer.execute(f"PRAGMA max_page_count = {count}")  # full: the next new page fails
        headers = {**bearer(), "content-type": "application/cloudevents-batch+json"}
        batch = [
            {
                "specversion": "1.0",
                "id": f"big-{i}",
                "source": "/s",
                "type": "t",
                "data": "x" * 4000,
            }
            for i in range(20)
        ]
        async with http.post(f"{server.url}/events", json=batch, headers=headers) as response:
            await error_of(response, 507, "insufficient_storage")
        assert {"log-writer", "log-checkpointer", "delivery-pool-sweeper"} <= set(hub.tasks.names())

    uv.should_exit = True
    async with asyncio.timeout(10):
        await serving
    assert hub.tasks.names() == []
    left = [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [n for n in left if n.startswith(("log-", "delivery-", "subscription-"))], left
    for conn in (writer, pages):
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    assert store._reader is None and store._checkpoints.conn is None


async def test_a_failed_start_leaves_nothing_running(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text("this is not TOML [")
    hub = Hub(settings_for(tmp_path, catalog_file=catalog), ManualClock())
    with pytest.raises(Exception):  # noqa: B017 - whatever the catalogue raises
        await hub.start()
    assert hub.tasks.names() == []
    store = hub.store
    assert isinstance(store, SqliteStore)
    assert store._conn is None and store._reader is None
