"""An acknowledged event survives ``kill -9`` and a graceful stop: ``python -m eventhub serve``
runs as a child process under concurrent load, is killed or stopped mid-load, restarted on the
same file, and the log is checked against every 2xx answer the producers got."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import BACKENDS
from tests.e2e.helpers import BATCH, ServerProcess, bearer, read_log

# kill -9 and a graceful stop on SQLite and on PostgreSQL (issue 12).
pytestmark = pytest.mark.parametrize("backend", BACKENDS)

WORKERS = 20
BATCH_SIZE = 5


@dataclass
class Ledger:
    """What the producers were told."""

    acked: dict[tuple[str, str, int], int] = field(default_factory=dict)  # -> offset
    batches: list[list[tuple[str, str]]] = field(default_factory=list)
    duplicates: int = 0
    requests: int = 0

    def record(self, receipt: dict[str, Any]) -> None:
        for e in receipt["events"]:
            key = (e["source"], e["id"], e["revision"])
            assert self.acked.setdefault(key, e["offset"]) == e["offset"], e
            self.duplicates += e["duplicate"]


def _single(source: str, id_: str, n: int) -> tuple[bytes, dict[str, str]]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": source,
        "ce-type": "com.example.load",
        "content-type": "application/json",
    }
    return json.dumps({"n": n}).encode(), headers


def _batch(source: str, ids: list[str]) -> tuple[bytes, dict[str, str]]:
    events = [
        {"specversion": "1.0", "id": i, "source": source, "type": "com.example.batch", "data": i}
        for i in ids
    ]
    return json.dumps(events).encode(), {"content-type": BATCH}


async def _produce(
    worker: int,
    url: str,
    http: aiohttp.ClientSession,
    ledger: Ledger,
    stopping: asyncio.Event,
) -> None:
    """Post singles, batches, identical re-sends and changed re-sends until the server goes."""
    source = f"/load/{worker}"
    last: tuple[str, int] | None = None
    n = 0
    while True:
        n += 1
        if n % 4 == 0 and last is not None:  # a producer retry: identical content
            body, headers = _single(source, last[0], last[1])
        elif n % 7 == 0 and last is not None:  # a re-send with new content: a new revision
            last = (last[0], last[1] + 1000)
            body, headers = _single(source, last[0], last[1])
        elif n % 3 == 0:
            ids = [f"{worker}-{n}-{j}" for j in range(BATCH_SIZE)]
            ledger.batches.append([(source, i) for i in ids])
            body, headers = _batch(source, ids)
        else:
            last = (f"{worker}-{n}", n)
            body, headers = _single(source, *last)
        try:
            async with http.post(
                f"{url}/events", data=body, headers={**headers, **bearer()}
            ) as response:
                payload = await response.read()
                ledger.requests += 1
                if stopping.is_set() and response.status >= 500:
                    return
                assert response.status == 200, payload
                ledger.record(json.loads(payload))
        except (aiohttp.ClientError, TimeoutError):
            if stopping.is_set():
                return
            raise


async def _run_and_interrupt(
    tmp_path: Path, interrupt: Callable[[ServerProcess], Awaitable[int]], env: dict[str, str]
) -> tuple[Ledger, int, list[dict[str, Any]]]:
    data = tmp_path / "durable.db"
    ledger = Ledger()
    first = ServerProcess(data, tmp_path / "first.log", env)
    second: ServerProcess | None = None
    try:
        timeout = aiohttp.ClientTimeout(total=20)
        connector = aiohttp.TCPConnector(limit=WORKERS)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            await first.ready(http)
            stopping = asyncio.Event()
            async with asyncio.TaskGroup() as group:
                for w in range(WORKERS):
                    group.create_task(_produce(w, first.url, http, ledger, stopping), name=f"w{w}")
                await asyncio.sleep(1.0)
                stopping.set()
                code = await interrupt(first)
        second = ServerProcess(data, tmp_path / "second.log", env)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await second.ready(http)
            # On PostgreSQL nothing is written at 'data': the hub really ran on the server.
            assert data.exists() == ("EVENTHUB_DATABASE" not in env)
            log = await read_log(http, second.url)
            # The restarted hub goes on appending after what it recovered.
            body, headers = _single("/after", "restart", 0)
            async with http.post(
                f"{second.url}/events", data=body, headers={**headers, **bearer()}
            ) as response:
                assert response.status == 200
                (receipt,) = (await response.json())["events"]
        assert not log or receipt["offset"] > log[-1]["offset"]
        second.signal(signal.SIGTERM)
        await second.exited()
        return ledger, code, log
    finally:
        first.close()
        if second is not None:
            second.close()


def _check_log(ledger: Ledger, log: list[dict[str, Any]]) -> None:
    assert ledger.requests > 50, f"too little load to prove anything: {ledger.requests}"
    assert ledger.duplicates > 0 and any(rev > 1 for _, _, rev in ledger.acked)

    offsets = [e["offset"] for e in log]
    assert offsets == sorted(set(offsets)), "offsets strictly increase"
    keys = [(e["event"]["source"], e["event"]["id"], e["revision"]) for e in log]
    assert len(keys) == len(set(keys)), "no (source, id, revision) twice"
    stored = dict(zip(keys, offsets, strict=True))

    lost = {k: o for k, o in ledger.acked.items() if stored.get(k) != o}
    assert not lost, f"{len(lost)} acknowledged events lost or moved, e.g. {next(iter(lost))}"

    # Revisions of one event are 1..n with no gaps.
    revisions: dict[tuple[str, str], list[int]] = {}
    for source, id_, revision in keys:
        revisions.setdefault((source, id_), []).append(revision)
    assert all(r == list(range(1, len(r) + 1)) for r in revisions.values())

    # A batch is all in the log or none of it, acknowledged or not.
    present = set(revisions)
    for batch in ledger.batches:
        found = [k in present for k in batch]
        assert all(found) or not any(found), batch


async def test_acknowledged_events_survive_kill_9(
    tmp_path: Path, backend_env: dict[str, str]
) -> None:
    async def kill(process: ServerProcess) -> int:
        process.signal(signal.SIGKILL)
        return await process.exited()

    ledger, code, log = await _run_and_interrupt(tmp_path, kill, backend_env)
    assert code == -signal.SIGKILL
    _check_log(ledger, log)


async def test_graceful_stop_under_load_keeps_everything(
    tmp_path: Path, backend_env: dict[str, str]
) -> None:
    async def terminate(process: ServerProcess) -> int:
        process.signal(signal.SIGTERM)
        code = await process.exited()
        # The hub closed the database itself: the WAL was checkpointed away.
        wal = tmp_path / "durable.db-wal"
        assert not wal.exists() or wal.stat().st_size == 0
        assert "Traceback" not in process.output() and "ERROR" not in process.output()
        return code

    ledger, code, log = await _run_and_interrupt(tmp_path, terminate, backend_env)
    assert code == 0, f"a graceful stop exits 0, got {code}"
    _check_log(ledger, log)
    produced = [e for e in log if e["event"]["source"].startswith("/load/")]
    assert len(produced) == len(ledger.acked), "nothing was stored without being acknowledged"
