"""The operator's CLI against a running hub: models, subscriptions, send, tail, status; and
the long poll under ``tail --follow``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from eventhub import cli
from tests.conftest import ADMIN_KEY, Running
from tests.e2e.delivery_helpers import request
from tests.e2e.receiver import Receiver

MODELS = """
[models.orders]
name = "Orders"
[[models.orders.triggers]]
id = "created"
name = "Order created"
filters = [{ exact = { type = "order.created" } }]
"""


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = await asyncio.to_thread(cli.main, list(argv))
    assert code == 0
    return capsys.readouterr().out


async def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    return json.loads(await run(capsys, *argv, "--json"))


async def test_models_subscriptions_send_and_status(
    server: Running, receiver: Receiver, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    common = ("--url", server.url, "--key", ADMIN_KEY)
    file = tmp_path / "models.toml"
    file.write_text(MODELS)
    out = await run(capsys, "models", "apply", str(file), "--publish", *common)
    assert "published model orders (version 1)" in out
    model = await run_json(capsys, "models", "get", "orders", *common)
    assert [t["id"] for t in model["triggers"]] == ["created"]
    assert "orders" in await run(capsys, "models", "list", *common)

    created = await run_json(
        capsys, "subscriptions", "create", "orders", "created", *common,
        "--name", "hook", "--uri", receiver.url, "--header", "X-Token=abc", "--batch-size", "1",
    )  # fmt: skip
    sub_id = created["id"]
    assert created["secret"].startswith("whsec_")
    assert created["callbackInfo"]["headers"] == {"X-Token": "********"}

    receipt = await run_json(
        capsys, "send", *common, "--source", "shop", "--type", "order.created",
        "--id", "o-1", "--data", '{"n": 1}',
    )  # fmt: skip
    assert receipt["events"][0]["id"] == "o-1"
    (seen,) = await receiver.wait_for(1)
    assert seen.headers["X-Token"] == "abc"
    assert json.loads(seen.body)[0]["event"]["data"] == {"n": 1}

    paused = await run_json(capsys, "subscriptions", "pause", sub_id, *common)
    assert paused["status"] == "Paused"
    status = await run(capsys, "status", *common)
    assert sub_id in status and "1 subscription(s): 1 Paused" in status
    resumed = await run_json(capsys, "subscriptions", "resume", sub_id, *common)
    assert resumed["status"] == "Active"
    attempts = await run_json(capsys, "subscriptions", "attempts", sub_id, *common)
    assert attempts["content"][0]["statusCode"] == 200
    rotated = await run_json(capsys, "subscriptions", "rotate-secret", sub_id, *common)
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    replayed = await run_json(
        capsys, "subscriptions", "replay", sub_id, "--from-offset", "1", *common
    )
    assert replayed["status"] == "Active"
    listed = await run_json(capsys, "subscriptions", "list", "--status", "Active", *common)
    assert [s["id"] for s in listed["content"]] == [sub_id]
    await run(capsys, "subscriptions", "delete", sub_id, *common)
    code, _ = await request(server, "GET", f"/intelligence/api/subscriptions/{sub_id}")
    assert code == 404


async def test_a_refusal_is_exit_1_and_a_usage_error_exit_2(server: Running) -> None:
    with pytest.raises(SystemExit) as refused:
        await asyncio.to_thread(
            cli.main, ["subscriptions", "get", "nope", "--url", server.url, "--key", ADMIN_KEY]
        )
    assert "404" in str(refused.value.code)  # a message: printed to stderr, exit status 1
    with pytest.raises(SystemExit) as usage:
        await asyncio.to_thread(cli.main, ["subscriptions", "replay", "x"])  # no --from-offset
    assert usage.value.code == 2


async def test_tail_prints_the_log_and_follows_what_comes(
    server: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ("--url", server.url, "--key", ADMIN_KEY)
    for i in range(3):
        await run(capsys, "send", *common, "--source", "shop", "--type", "t.old", "--id", f"o{i}")
    out = await run(capsys, "tail", *common, "--type", "t.old")
    assert [line.split()[-1] for line in out.splitlines()] == ["o0", "o1", "o2"]

    follow = asyncio.create_task(
        asyncio.to_thread(cli.main, ["tail", "--follow", "--json", "--after", "3", *common])
    )
    await asyncio.sleep(0.2)  # most likely in its long poll by now; either way it reads after 3
    # The send's capture may already hold tail's line (both threads print to one capture):
    # keep all of it, and look for the event's type, which only tail prints.
    printed = await run(
        capsys, "send", *common, "--source", "shop", "--type", "t.new", "--id", "n1"
    )
    async with asyncio.timeout(10):
        while '"t.new"' not in printed:
            await asyncio.sleep(0.05)
            printed += capsys.readouterr().out
    follow.cancel()  # the thread ends with its poll; the test does not wait for it


async def test_the_long_poll_answers_when_an_event_comes_and_waits_otherwise(
    server: Running,
) -> None:
    started = time.monotonic()
    code, page = await request(server, "GET", "/events?after=0&wait=1")
    assert code == 200 and page["events"] == [] and page["head"] == 0
    assert time.monotonic() - started >= 0.9  # an empty log: it waited its second

    async def later() -> None:
        await asyncio.sleep(0.3)
        event = {"specversion": "1.0", "id": "x", "source": "s", "type": "t"}
        headers = {**server.admin, "Content-Type": "application/cloudevents+json"}
        response = await server.post("/events", json=event, headers=headers)
        assert response.status == 200

    sender = asyncio.create_task(later())
    started = time.monotonic()
    code, page = await request(server, "GET", "/events?after=0&wait=10")
    await sender
    assert code == 200 and [e["event"]["id"] for e in page["events"]] == ["x"]
    assert time.monotonic() - started < 5  # answered by the append, not the timeout
    assert page["head"] == 1
    code, body = await request(server, "GET", "/events?after=0&wait=31")
    assert code == 400 and "wait" in body["error"]["message"]


def _eventhub(
    url: str, *argv: str, key: str | None = ADMIN_KEY
) -> subprocess.CompletedProcess[str]:
    """The installed command, as an operator runs it: a process of its own."""
    env = {**os.environ, "EVENTHUB_URL": url}
    env.pop("EVENTHUB_KEY", None)
    if key is not None:
        env["EVENTHUB_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "eventhub", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_the_command_as_a_process_exit_codes_and_json(server: Running) -> None:
    sent = await asyncio.to_thread(
        _eventhub, server.url, "send", "--source", "shop", "--type", "t", "--id", "p1", "--json"
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["events"][0]["id"] == "p1"
    status = await asyncio.to_thread(_eventhub, server.url, "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["content"] == []
    refused = await asyncio.to_thread(_eventhub, server.url, "status", key="eh_wrong_key")
    assert refused.returncode == 1
    assert refused.stdout == "" and refused.stderr.startswith("eventhub: 401")
    assert "Traceback" not in refused.stderr
    usage = await asyncio.to_thread(_eventhub, server.url, "subscriptions", "replay", "x")
    assert usage.returncode == 2 and "--from-offset" in usage.stderr
