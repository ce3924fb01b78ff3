"""kill -9 mid-delivery: after the restart delivery resumes from the committed cursor, in
order, and nothing is skipped; repeats are only re-deliveries of what was in flight."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.conftest import ADMIN_KEY, BACKENDS, Running
from tests.e2e.delivery_helpers import publish_trigger, subscribe
from tests.e2e.helpers import ServerProcess
from tests.e2e.receiver import Receiver

pytestmark = pytest.mark.parametrize("backend", BACKENDS)


async def test_sigkill_mid_delivery_resumes_without_skipping(
    tmp_path: Path, backend_env: dict[str, str]
) -> None:
    receiver = await Receiver().start()
    receiver.default.stall = 0.002  # slow enough that the kill lands mid-backlog
    data = tmp_path / "eventhub.db"
    first = ServerProcess(data, tmp_path / "first.log", backend_env)
    second: ServerProcess | None = None
    try:
        async with aiohttp.ClientSession() as http:
            await first.ready(http)
            running = Running(first.url, None, http, {"Authorization": f"Bearer {ADMIN_KEY}"})  # type: ignore[arg-type]
            await publish_trigger(running)
            sub = await subscribe(running, receiver.url)
            batch = [
                {
                    "specversion": "1.0",
                    "id": f"e-{i}",
                    "source": "/shop",
                    "type": "order.created",
                    "data": {"n": i},
                }
                for i in range(300)
            ]
            async with http.post(
                first.url + "/events",
                data=orjson.dumps(batch),
                headers={**running.admin, "content-type": "application/cloudevents-batch+json"},
            ) as r:
                assert r.status == 200
                offsets = [e["offset"] for e in (await r.json())["events"]]
            await receiver.wait_for(40)
            first.signal(signal.SIGKILL)
            assert await first.exited() == -signal.SIGKILL
            before = len(receiver.seen)
            assert before < 300, "the kill should land mid-backlog"

            second = ServerProcess(data, tmp_path / "second.log", backend_env)
            await second.ready(http)
            assert data.exists() == ("EVENTHUB_DATABASE" not in backend_env)
            async with asyncio.timeout(30):
                while {o for o in _offsets(receiver)} != set(offsets):
                    await asyncio.sleep(0.05)
            async with http.get(
                f"{second.url}/intelligence/api/subscriptions/{sub['id']}", headers=running.admin
            ) as r:
                state = await r.json()
    finally:
        first.close()
        if second is not None:
            second.close()
        await receiver.stop()

    delivered = _offsets(receiver)
    firsts: list[int] = []
    for offset in delivered:
        if offset not in firsts:
            firsts.append(offset)
    assert firsts == offsets, "every event, in offset order"
    repeats = len(delivered) - len(offsets)
    assert repeats <= 2, f"only what was in flight at the kill comes again, not {repeats}"
    assert state["status"] == "Active" and state["offset"] == offsets[-1]


def _offsets(receiver: Receiver) -> list[int]:
    return [e["offset"] for s in receiver.seen for e in orjson.loads(s.body)]
