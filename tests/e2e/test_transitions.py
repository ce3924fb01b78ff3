"""Every edge of the seed's state diagram, driven for real against a live receiver."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ManualClock, Running
from tests.e2e.delivery_helpers import (
    SUBS,
    auto_clock,
    publish_trigger,
    request,
    send,
    subscribe,
    wait_status,
)
from tests.e2e.helpers import custom_server
from tests.e2e.receiver import Receiver, status


async def into(state: str, server: Running, receiver: Receiver, clock: ManualClock) -> str:
    """A new subscription, driven into ``state``; its id."""
    sub = await subscribe(server, receiver.url, maxRetries=0)
    sub_id = str(sub["id"])
    if state == "Paused":
        code, _ = await request(server, "PATCH", f"{SUBS}/{sub_id}/pause")
        assert code == 200
    elif state in ("Failed", "Rejected", "Suspended"):
        receiver.default = status(503 if state != "Rejected" else 422)
        await send(server, 1, start=hash(sub_id) % 10_000)
        await wait_status(server, sub_id, "Rejected" if state == "Rejected" else "Failed")
        if state == "Suspended":
            async with auto_clock(clock, step=3600):
                await wait_status(server, sub_id, "Suspended")
        receiver.default = status(200)
    return sub_id


ACTIONS = {
    "update": ("PUT", "", {"name": "renamed"}),
    "replay": ("PATCH", "/replay?fromOffset=1", None),
    "resume": ("PATCH", "/resume", None),
    "resume-from-latest": ("PATCH", "/resume-from-latest", None),
    "pause": ("PATCH", "/pause", None),
}
ALLOWED = {
    ("Failed", "update"),
    ("Failed", "replay"),
    ("Rejected", "update"),
    ("Rejected", "replay"),
    ("Paused", "resume"),
    ("Paused", "resume-from-latest"),
    ("Paused", "update"),
    ("Paused", "replay"),
    ("Suspended", "update"),
    ("Active", "pause"),
    ("Active", "update"),
    ("Active", "replay"),
}
STATES = ["Active", "Failed", "Rejected", "Paused", "Suspended"]


@pytest.mark.parametrize("state", STATES)
async def test_each_action_from_each_state(
    server: Running, receiver: Receiver, clock: ManualClock, state: str
) -> None:
    await publish_trigger(server)
    for action, (method, suffix, body) in ACTIONS.items():
        sub_id = await into(state, server, receiver, clock)
        code, answer = await request(server, method, f"{SUBS}/{sub_id}{suffix}", json=body)
        if (state, action) in ALLOWED:
            expected = "Paused" if action == "pause" else "Active"
            assert code == 200, (state, action, answer)
            assert answer["status"] == expected
        else:
            assert code == 409, (state, action, answer)
            assert state in answer["error"]["message"]
        code, _ = await request(server, "DELETE", f"{SUBS}/{sub_id}")
        assert code == 204, "any state may be deleted"
        code, _ = await request(server, "GET", f"{SUBS}/{sub_id}")
        assert code == 404


async def test_a_receiver_stalling_past_the_timeout_is_a_transient_failure(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with custom_server(tmp_path, delivery_timeout=0.3) as running:
        await publish_trigger(running)
        sub = await subscribe(running, receiver.url, maxRetries=0)
        receiver.default = status(200)
        receiver.default.stall = 1.0
        await send(running, 1)
        state = await wait_status(running, sub["id"], "Failed")
        assert state["lastError"] == "timed out"
        code, attempts = await request(running, "GET", f"{SUBS}/{sub['id']}/attempts")
        assert code == 200
        assert attempts["content"][0]["statusCode"] is None
