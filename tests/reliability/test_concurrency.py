"""Concurrent actions on one subscription (issue 8, item 6): a storm of updates, pauses,
resumes, replays, rotations and a delete, all at once, against the real server.

Main used to leave two live supervisors after two concurrent updates (one unreachable by
``stop()``, delivering forever), and an action racing a delete saved the subscription again
and started a zombie supervisor. Here the tasks named ``subscription-<id>`` of the in-process
hub are counted all through the storm.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.conftest import Running
from tests.e2e.delivery_helpers import SUBS, publish_trigger, request, send, sub_state, subscribe
from tests.e2e.helpers import custom_server
from tests.e2e.receiver import Receiver


def supervisors_of(sub_id: str) -> int:
    """Live supervisor tasks of ``sub_id`` in this process (the hub runs in the test's loop)."""
    name = f"subscription-{sub_id}"
    return sum(1 for t in asyncio.all_tasks() if t.get_name() == name and not t.done())


@contextlib.asynccontextmanager
async def most_supervisors(sub_id: str) -> AsyncIterator[list[int]]:
    """Samples ``supervisors_of`` at every turn of the loop; yields [the most seen]."""
    most = [0]

    async def watch() -> None:
        while True:
            most[0] = max(most[0], supervisors_of(sub_id))
            await asyncio.sleep(0)

    task = asyncio.create_task(watch())
    try:
        yield most
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def storm(server: Running, sub_id: str, uri: str) -> list[Callable[[], Awaitable[int]]]:
    """24 mixed actions on one subscription, interleaved; each returns its HTTP status."""
    path = f"{SUBS}/{sub_id}"

    def call(method: str, suffix: str = "", **kwargs: Any) -> Callable[[], Awaitable[int]]:
        async def go() -> int:
            status, _ = await request(server, method, path + suffix, **kwargs)
            return status

        return go

    rounds = []
    for i in range(4):
        body = {"name": f"n-{i}", "callbackInfo": {"uri": f"{uri}?v={i}", "headers": {}}}
        rounds += [
            call("PUT", json=body),
            call("PATCH", "/pause"),
            call("PUT", json={"name": f"m-{i}"}),
            call("PATCH", "/resume"),
            call("PATCH", "/replay", params={"fromOffset": "1"}),
            call("POST", "/rotate-secret") if i % 2 else call("PATCH", "/resume-from-latest"),
        ]
    return rounds


async def last_notification(server: Running, sub_id: str) -> dict[str, Any]:
    events = [e["event"] for e in await server.log() if e["event"].get("subject") == sub_id]
    note: dict[str, Any] = events[-1]
    return note


async def drained(server: Running, sub_id: str) -> None:
    async with asyncio.timeout(10):
        while (await sub_state(server, sub_id))["lag"]:
            await asyncio.sleep(0.01)


async def test_a_storm_of_actions_leaves_one_supervisor(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    try:
        async with custom_server(tmp_path) as server:
            await publish_trigger(server)
            sub = await subscribe(server, receiver.url)
            sub_id = sub["id"]
            await send(server, 5)
            await receiver.wait_for(5)
            async with most_supervisors(sub_id) as most:
                for _ in range(3):
                    statuses = await asyncio.gather(
                        *(go() for go in storm(server, sub_id, receiver.url))
                    )
                    assert set(statuses) <= {200, 409}, statuses
                    assert statuses.count(200) >= 6, statuses
                state = await sub_state(server, sub_id)
            assert most[0] == 1, f"{most[0]} supervisors ran at once"

            # The final state is the last action's: the notifications are appended under the
            # subscription's lock, in the order the actions took effect, and the store agrees.
            assert (await last_notification(server, sub_id))["data"]["status"] == state["status"]
            (stored,) = [s for s in await server.hub.store.load_subscriptions() if s.id == sub_id]
            # (Not the cursor: an Active subscription delivers on, a replay's backlog too.)
            assert (str(stored.status), stored.name, stored.uri) == (
                state["status"],
                state["name"],
                state["callbackInfo"]["uri"],
            )
            live = state["status"] in ("Active", "Failed")
            assert supervisors_of(sub_id) == (1 if live else 0)

            # And it delivers as one: a new event arrives exactly once.
            if state["status"] == "Paused":
                assert (await request(server, "PATCH", f"{SUBS}/{sub_id}/resume"))[0] == 200
            assert supervisors_of(sub_id) == 1
            await drained(server, sub_id)
            before = len(receiver.seen)
            await send(server, 2, start=100)
            await receiver.wait_for(before + 2)
            await drained(server, sub_id)
            ids = [e["event"]["id"] for body in receiver.json_bodies()[before:] for e in body]
            assert ids == ["e-100", "e-101"]
    finally:
        await receiver.stop()


async def test_actions_racing_a_delete_find_it_gone(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    try:
        async with custom_server(tmp_path) as server:
            await publish_trigger(server)
            for _ in range(3):
                sub = await subscribe(server, receiver.url)
                sub_id = sub["id"]
                actions = storm(server, sub_id, receiver.url)

                async def delete(sub_id: str = sub_id) -> int:
                    return (await request(server, "DELETE", f"{SUBS}/{sub_id}"))[0]

                actions.insert(len(actions) // 2, delete)
                async with most_supervisors(sub_id) as most:
                    statuses = await asyncio.gather(*(go() for go in actions))
                assert most[0] == 1
                assert statuses.count(204) == 1, statuses
                assert set(statuses) <= {200, 204, 404, 409}, statuses
                # Whatever ran after the delete found nothing: no zombie in memory, in the
                # store, or among the tasks.
                assert (await request(server, "GET", f"{SUBS}/{sub_id}"))[0] == 404
                assert sub_id not in {s.id for s in await server.hub.store.load_subscriptions()}
                assert supervisors_of(sub_id) == 0
    finally:
        await receiver.stop()
