"""A full disk (SPEC §8): ingest answers 507 ``insufficient_storage`` with nothing
half-written and no offset gap, reads go on, and the hub recovers by itself when space returns.

For real: the database on a small tmpfs, a filler file taking most of it, the hub as a child
process (needs root to mount; skipped otherwise). Everywhere: the same through SQLite's
``max_page_count`` on the in-process hub's writer connection, which fails with the same
SQLITE_FULL a full disk does.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from eventhub import errors
from eventhub.log.sqlite import SqliteStore
from tests.conftest import ManualClock, Running
from tests.contract.store.conftest import VAULT
from tests.contract.store.samples import event, subscription
from tests.e2e.helpers import BATCH, ServerProcess, bearer, custom_server, error_of, read_log

PAYLOAD = "x" * 2000  # ~2 KB an event: the disk fills in a few requests


def _event(i: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"e-{i}",
        "source": "/disk",
        "type": "disk.filled",
        "datacontenttype": "application/json",
        "data": {"n": i, "pad": PAYLOAD},
    }


class Producer:
    """Singles and batches in turn; remembers every event the hub acknowledged."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.next = 0
        self.acknowledged: dict[str, int] = {}  # id -> offset
        self.wal: Path | None = None
        self.wal_peak = 0  # the largest the WAL was seen after a request

    def watch_wal(self, db: Path) -> None:
        self.wal = db

    async def send(self, n: int) -> aiohttp.ClientResponse:
        events = [_event(self.next + i) for i in range(n)]
        self.next += n
        if n == 1:
            headers = {**bearer(), "content-type": "application/cloudevents+json"}
            body: Any = events[0]
        else:
            headers = {**bearer(), "content-type": BATCH}
            body = events
        async with self.http.post(f"{self.url}/events", json=body, headers=headers) as response:
            await response.read()
            if self.wal is not None:
                self.wal_peak = max(self.wal_peak, _wal(self.wal))
            if response.status == 200:
                for entry in (await response.json())["events"]:
                    self.acknowledged[entry["id"]] = entry["offset"]
            return response

    async def until_full(self, limit: int = 2000) -> aiohttp.ClientResponse:
        """Send (a batch of 20, then a single, ...) until one is refused; that answer."""
        for i in range(limit):
            response = await self.send(20 if i % 2 == 0 else 1)
            if response.status != 200:
                return response
        raise AssertionError(f"the disk never filled after {limit} requests")

    async def while_full(self) -> None:
        """More of both while space is short: a small one may still fit where a batch did
        not, so each is stored whole (200) or not at all (507); offsets show no gap after."""
        for n in (1, 20, 1, 20, 1):
            response = await self.send(n)
            if response.status != 200:
                await error_of(response, 507, "insufficient_storage")


async def _check_log(http: aiohttp.ClientSession, url: str, producer: Producer) -> None:
    entries = await read_log(http, url)
    offsets = [e["offset"] for e in entries]
    assert offsets == list(range(1, len(offsets) + 1)), "offsets must have no gap"
    by_id = {e["event"]["id"]: e["offset"] for e in entries if e["event"]["source"] == "/disk"}
    assert producer.acknowledged.items() <= by_id.items(), "an acknowledged event is missing"
    # Nothing half-written: every stored event is whole.
    for entry in entries:
        if entry["event"]["source"] == "/disk":
            assert entry["event"]["data"]["pad"] == PAYLOAD


async def _ready(http: aiohttp.ClientSession, url: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            async with http.get(f"{url}/readyz") as response:
                if response.status == 200:
                    return
            await asyncio.sleep(0.05)


# -- for real, on a tmpfs -----------------------------------------------------------------------


@contextmanager
def _tmpfs(folder: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the max_page_count variant still runs)")
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _fill(path: Path, leave: int) -> None:
    """Take all the free space of ``path``'s filesystem but ``leave`` bytes."""
    stat = os.statvfs(path.parent)
    size = stat.f_bavail * stat.f_frsize - leave
    with path.open("wb") as out:
        chunk = b"\0" * (1 << 20)
        while size > 0:
            size -= out.write(chunk[: min(size, len(chunk))])


def _wal(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_a_full_disk_answers_507_keeps_reading_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTHUB_CHECKPOINT_INTERVAL", "0.1")
    with _tmpfs(tmp_path / "disk", "24m") as disk:
        db = disk / "eventhub.db"
        server = ServerProcess(db, tmp_path / "server.log")
        try:
            async with aiohttp.ClientSession() as http:
                await server.ready(http)
                url = server.url
                producer = Producer(http, url)
                assert (await producer.send(5)).status == 200
                _fill(disk / "filler", leave=1 << 20)

                producer.watch_wal(db)
                refused = await producer.until_full()
                await error_of(refused, 507, "insufficient_storage")
                assert producer.acknowledged, "some events fit before the disk filled"
                await producer.while_full()
                async with http.get(f"{url}/events?after=0&limit=5", headers=bearer()) as r:
                    assert r.status == 200, await r.text()
                    assert len((await r.json())["events"]) == 5
                await _check_log(http, url, producer)

                (disk / "filler").unlink()  # space returns; no restart
                response = await producer.send(1)
                assert response.status == 200, await response.text()
                # The checkpointer lived through it: the WAL gives its space back (one small
                # event since cannot have refilled it).
                async with asyncio.timeout(10):
                    while _wal(db) >= producer.wal_peak:
                        await asyncio.sleep(0.05)
                for n in (20, 1, 20):
                    response = await producer.send(n)
                    assert response.status == 200, await response.text()
                await _check_log(http, url, producer)
                await _ready(http, url)

                server.signal(signal.SIGTERM)
                async with asyncio.timeout(5):
                    assert await server.exited() == 0, server.output()
        finally:
            server.close()
        # The database is whole after the clean exit.
        with closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# -- everywhere, with max_page_count ------------------------------------------------------------


def _writer_connection(server: Running) -> sqlite3.Connection:
    store = server.hub.store
    assert isinstance(store, SqliteStore)
    conn = store._conn  # the one connection that writes: where a full disk is felt
    assert conn is not None
    return conn


async def test_a_full_database_answers_507_and_recovers_in_process(tmp_path: Path) -> None:
    async with custom_server(tmp_path, checkpoint_interval=0.05) as server:
        producer = Producer(server.http, server.url)
        assert (await producer.send(5)).status == 200
        writer = _writer_connection(server)
        (pages,) = writer.execute("PRAGMA page_count").fetchone()
        # A few pages' room left, the way a nearly full disk leaves a few blocks.
        writer.execute(f"PRAGMA max_page_count = {pages + 8}")

        refused = await producer.until_full()
        await error_of(refused, 507, "insufficient_storage")
        await producer.while_full()
        status, _ = await _get(server, "/events?after=0&limit=5")
        assert status == 200
        await _check_log(server.http, server.url, producer)

        writer.execute("PRAGMA max_page_count = 1073741823")  # space returns
        for n in (1, 20, 1):
            response = await producer.send(n)
            assert response.status == 200, await response.text()
        await _check_log(server.http, server.url, producer)
        await _ready(server.http, server.url)


async def _get(server: Running, path: str) -> tuple[int, Any]:
    async with server.http.get(server.url + path, headers=server.admin) as response:
        return response.status, await response.json()


async def test_sigterm_on_a_full_disk_exits_cleanly_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shutdown's last checkpoint may fail for want of space: the process still exits 0
    at once, and every acknowledged event is in the database when it is opened again."""
    monkeypatch.setenv("EVENTHUB_CHECKPOINT_INTERVAL", "0.1")
    with _tmpfs(tmp_path / "disk", "16m") as disk:
        db = disk / "eventhub.db"
        server = ServerProcess(db, tmp_path / "server.log")
        try:
            async with aiohttp.ClientSession() as http:
                await server.ready(http)
                producer = Producer(http, server.url)
                _fill(disk / "filler", leave=512 << 10)
                await error_of(await producer.until_full(), 507, "insufficient_storage")
                server.signal(signal.SIGTERM)
                async with asyncio.timeout(5):
                    assert await server.exited() == 0, server.output()
        finally:
            server.close()
        (disk / "filler").unlink()
        with closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            rows = conn.execute("SELECT id, event_offset FROM events WHERE source = '/disk'")
            assert producer.acknowledged.items() <= dict(rows.fetchall()).items()


async def test_delivery_cursors_dropped_on_a_full_disk_are_saved_by_the_next_batch(
    tmp_path: Path,
) -> None:
    """A queued cursor write whose flush failed is dropped (re-delivery at worst), and the
    cursors recorded after it are saved: the store does not keep filling the dead batch."""
    store = SqliteStore(tmp_path / "log.db", ManualClock(), vault=VAULT)
    await store.open()
    try:
        sub = subscription("s1")
        await store.save_subscription(sub)
        writer = store._conn
        assert writer is not None
        (count,) = writer.execute("PRAGMA page_count").fetchone()
        writer.execute(f"PRAGMA max_page_count = {count}")  # full

        sub.cursor = 1
        store.record_delivery(sub, None)  # shares the flush of the append, which cannot fit
        with pytest.raises(errors.InsufficientStorage):
            await store.append([event(f"big-{i}", b'"%s"' % (b"x" * 4000)) for i in range(10)])

        writer.execute("PRAGMA max_page_count = 1073741823")  # space returns
        sub.cursor = 2
        store.record_delivery(sub, None)
        await store.write(lambda cur: None)  # a flush after the queued one
        (saved,) = await store.load_subscriptions()
        assert saved.cursor == 2
    finally:
        await store.close()
