"""Authority over delivery (issue 8, item 7; SPEC §8): a revoked key's subscriptions stop,
also when the hub died between the revocation and the pause; and one owner's stalled
receivers cannot take the delivery connections another owner needs."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path

import aiohttp
import uvicorn
from aiohttp import web
from starlette.applications import Starlette

from eventhub.hub import Hub
from eventhub.log import sealing
from eventhub.log.sqlite import SqliteStore
from eventhub.settings import Settings
from tests.conftest import ManualClock, Running, free_port, settings_for, start
from tests.e2e.delivery_helpers import (
    SUBS,
    publish_trigger,
    request,
    send,
    sub_state,
    subscribe,
    wait_status,
)
from tests.e2e.helpers import bearer, custom_server
from tests.e2e.receiver import Receiver, status
from tests.reliability.test_concurrency import supervisors_of

REVOKED = "owner revoked"


async def new_key(server: Running, role: str = "consumer") -> tuple[str, str]:
    """A new API key: (its id, the key)."""
    status_, created = await request(
        server, "POST", "/admin/keys", json={"role": role, "name": role}
    )
    assert status_ == 201, created
    return created["id"], created["key"]


def running(uv: uvicorn.Server, settings: Settings, http: aiohttp.ClientSession) -> Running:
    app: Starlette = uv.config.app  # type: ignore[assignment]
    hub: Hub = app.state.hub
    return Running(f"http://127.0.0.1:{settings.port}", hub, http, bearer())


async def revoke(server: Running, key_id: str) -> None:
    assert (await request(server, "DELETE", f"/admin/keys/{key_id}"))[0] == 204


async def pauses_for(server: Running, sub_id: str) -> list[str]:
    """The reasons of the ``paused`` notifications of ``sub_id``, in log order."""
    return [
        e["event"]["data"]["reason"]
        for e in await server.log()
        if e["event"].get("subject") == sub_id
        and e["event"]["type"] == "eventhub.subscription.paused"
    ]


def bodies_of(receiver: Receiver) -> list[str]:
    return [e["event"]["id"] for body in receiver.json_bodies() for e in body]


async def test_a_revoked_owners_subscriptions_pause_and_deliver_nothing(tmp_path: Path) -> None:
    ok, failing, rejecting, other = [await Receiver().start() for _ in range(4)]
    failing.default, rejecting.default = status(503), status(400)
    try:
        async with custom_server(tmp_path) as server:
            await publish_trigger(server)
            owner_id, owner_key = await new_key(server)
            _, other_key = await new_key(server)
            active = await subscribe(server, ok.url, key=owner_key)
            failed = await subscribe(server, failing.url, key=owner_key, maxRetries=0)
            rejected = await subscribe(server, rejecting.url, key=owner_key, maxRetries=0)
            healthy = await subscribe(server, other.url, key=other_key)
            await send(server, 1)
            await ok.wait_for(1)
            await other.wait_for(1)
            await wait_status(server, failed["id"], "Failed")
            await wait_status(server, rejected["id"], "Rejected")

            await revoke(server, owner_id)

            for sub in (active, failed):
                state = await sub_state(server, sub["id"])
                assert (state["status"], state["lastError"]) == ("Paused", REVOKED)
                assert await pauses_for(server, sub["id"]) == [REVOKED]
                assert supervisors_of(sub["id"]) == 0
            assert (await sub_state(server, rejected["id"]))["status"] == "Rejected"
            assert (await sub_state(server, healthy["id"]))["status"] == "Active"

            # Nothing more reaches the revoked owner's receivers: once the other owner's
            # subscription has its copy of the next event, the revoked one has had its chance.
            await send(server, 1, start=1)
            await other.wait_for(2)
            assert bodies_of(other) == ["e-0", "e-1"]
            assert bodies_of(ok) == ["e-0"]
            assert len(failing.seen) == len(rejecting.seen) == 1

            # An admin cannot bring them back to Active; pausing again or deleting is fine.
            for sub_id, method, path in [
                (active["id"], "PATCH", "/resume"),
                (active["id"], "PATCH", "/resume-from-latest"),
                (failed["id"], "PATCH", "/replay?fromOffset=1"),
                (rejected["id"], "PUT", ""),
            ]:
                code, body = await request(
                    server, method, f"{SUBS}/{sub_id}{path}", json={"name": "x"}
                )
                assert code == 409, body
                assert "revoked" in body["error"]["message"]
            assert (await request(server, "DELETE", f"{SUBS}/{active['id']}"))[0] == 204
    finally:
        for receiver in (ok, failing, rejecting, other):
            await receiver.stop()


async def test_a_revocation_the_hub_did_not_finish_is_finished_at_start(tmp_path: Path) -> None:
    """The key is revoked in the store but the hub stopped before pausing: the next start
    pauses. A subscription whose owner key no longer exists at all is treated the same."""
    settings = settings_for(tmp_path)
    revoked_rx, gone_rx, control_rx = [await Receiver().start() for _ in range(3)]
    try:
        uv, task = await start(settings, ManualClock())
        async with aiohttp.ClientSession() as http:
            server = running(uv, settings, http)
            await publish_trigger(server)
            owner_id, owner_key = await new_key(server)
            of_revoked = await subscribe(server, revoked_rx.url, key=owner_key)
            of_gone = await subscribe(server, gone_rx.url, key=owner_key)
            control = await subscribe(server, control_rx.url)
        uv.should_exit = True
        await task

        # What a crash right after the revocation's commit leaves behind.
        store = SqliteStore(
            settings.data,
            ManualClock(),
            settings.synchronous,
            settings.checkpoint_interval,
            vault=sealing.vault_for(settings.data, settings.secret_key),
        )
        await store.open()
        assert await store.revoke_key(owner_id, "2026-01-01T00:00:00Z")
        await store.close()
        with sqlite3.connect(settings.data) as db:
            db.execute(
                "UPDATE subscriptions SET owner = 'no-such-key' WHERE id = ?", (of_gone["id"],)
            )
        db.close()

        again = replace(settings, port=free_port())
        uv, task = await start(again, ManualClock())
        try:
            async with aiohttp.ClientSession() as http:
                server = running(uv, again, http)
                for sub in (of_revoked, of_gone):
                    state = await sub_state(server, sub["id"])
                    assert (state["status"], state["lastError"]) == ("Paused", REVOKED)
                    assert await pauses_for(server, sub["id"]) == [REVOKED]
                    assert supervisors_of(sub["id"]) == 0
                await send(server, 1)
                await control_rx.wait_for(1)
                assert (await sub_state(server, control["id"]))["status"] == "Active"
                assert revoked_rx.seen == [] and gone_rx.seen == []
        finally:
            uv.should_exit = True
            await task
    finally:
        for receiver in (revoked_rx, gone_rx, control_rx):
            await receiver.stop()


class Holding:
    """A receiver that holds every request open until ``release()``; counts them."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0
        self.answered = 0
        self.released = asyncio.Event()
        self.changed = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> Holding:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        self.released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        self.changed.set()
        try:
            await self.released.wait()
        finally:
            self.in_flight -= 1
        self.answered += 1
        return web.Response(status=200)

    async def until_in_flight(self, n: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while self.in_flight < n:
                self.changed.clear()
                await self.changed.wait()


async def test_one_owners_stalls_do_not_starve_another_owner(tmp_path: Path) -> None:
    """Owner A has 20 subscriptions to a receiver that holds every request open; owner B's
    one subscription to a fast receiver still gets its event while all of A's are held."""
    holding, fast = await Holding().start(), await Receiver().start()
    try:
        async with custom_server(
            tmp_path, delivery_connections=8, delivery_connections_per_owner=4
        ) as server:
            await publish_trigger(server, trigger="stalled", filters=[{"exact": {"type": "s"}}])
            await publish_trigger(server, trigger="created")
            _, a_key = await new_key(server)
            _, b_key = await new_key(server)
            for _ in range(20):
                await subscribe(server, holding.url, trigger="stalled", key=a_key)
            await subscribe(server, fast.url, key=b_key)

            await send(server, 1, type_="s")
            await holding.until_in_flight(4)  # A holds what it may: every request open
            await send(server, 1, start=1)
            await fast.wait_for(1, timeout=5)
            assert holding.answered == 0, "B's event waited for A's stalls to end"
            assert holding.most == 4, "A had more than its share of connections"
            holding.released.set()
            async with asyncio.timeout(10):
                while holding.answered < 20:
                    await asyncio.sleep(0.01)
            assert holding.most == 4
    finally:
        await holding.stop()
        await fast.stop()
