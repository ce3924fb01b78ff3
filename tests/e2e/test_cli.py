"""The admin CLI against a running hub."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import pytest

from eventhub import cli
from tests.conftest import ADMIN_KEY, Running
from tests.e2e.process_helpers import (
    define,
    emit,
    instance,
    order_process,
    until_instances,
    until_state,
)
from tests.e2e.receiver import Receiver


async def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    code = await asyncio.to_thread(cli.main, list(argv))
    assert code == 0
    out = capsys.readouterr().out
    return json.loads(out) if out.strip() else None


async def test_keys_and_sources_from_the_command_line(
    server: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ("--url", server.url, "--key", ADMIN_KEY)
    created = await run_cli(
        capsys, "keys", "create", *common, "--role", "producer", "--source", "/a", "--name", "p"
    )
    assert isinstance(created, dict) and created["key"].startswith("eh_")
    assert created["sources"] == ["/a"]
    listed = await run_cli(capsys, "keys", "list", *common, "--json")
    assert isinstance(listed, dict)
    assert [k["id"] for k in listed["keys"]] == [created["id"]]
    assert await asyncio.to_thread(cli.main, ["keys", "list", *common]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "ROLE", "NAME", "SOURCES", "CREATED", "REVOKED"]
    assert row.split()[:4] == [created["id"], "producer", "p", "/a"]

    put = await run_cli(capsys, "sources", "put", "/a", *common, "--require-signature")
    assert isinstance(put, dict) and put["requireSignature"] is True and len(put["secret"]) > 16
    assert "/a" in server.hub.sources
    sources = await run_cli(capsys, "sources", "list", *common, "--json")
    assert isinstance(sources, dict) and [s["name"] for s in sources["sources"]] == ["/a"]
    assert await asyncio.to_thread(cli.main, ["sources", "list", *common]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.startswith("NAME") and row.split()[:3] == ["/a", "yes", "default"]

    await run_cli(capsys, "keys", "revoke", created["id"], *common)
    response = await server.post(
        "/events",
        headers={
            "Authorization": f"Bearer {created['key']}",
            "ce-specversion": "1.0",
            "ce-id": "1",
            "ce-source": "/a",
            "ce-type": "t",
        },
    )
    assert response.status == 401
    await run_cli(capsys, "sources", "delete", "/a", *common)
    assert "/a" not in server.hub.sources


async def test_cli_reports_http_errors(server: Running) -> None:
    with pytest.raises(SystemExit, match="401"):
        await asyncio.to_thread(cli.main, ["keys", "list", "--url", server.url, "--key", "nope"])


# -- processes and instances ----------------------------------------------------------------------

PROCESS_FILE = """
[processes.approval]
name = "Order approval"
start.filters = [{ exact = { type = "order.created" } }]
[[processes.approval.steps]]
id = "notify"
call = { uri = "URI", headers = { Authorization = "Bearer t" } }
[[processes.approval.steps]]
id = "approval"
wait = { type = "order.approved", timeoutSeconds = 600 }

[processes.refunds]
name = "Refunds"
start.filters = [{ exact = { type = "order.cancelled" } }]
[[processes.refunds.steps]]
id = "refund"
wait = { type = "refund.done" }
"""


async def run_text(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    code = await asyncio.to_thread(cli.main, list(argv))
    assert code == 0
    return capsys.readouterr().out.splitlines()


async def test_processes_apply_list_get_delete(
    server: Running, receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ("--url", server.url, "--key", ADMIN_KEY)
    path = tmp_path / "processes.toml"
    path.write_text(PROCESS_FILE.replace("URI", receiver.url))
    out = await run_text(capsys, "processes", "apply", str(path), *common)
    assert out[0] == "created approval (version 1)"
    assert out[1].startswith("  signing secret (shown once): whsec_")
    assert out[2] == "created refunds (version 1)"
    assert len(out) == 4
    again = await run_text(capsys, "processes", "apply", str(path), *common)
    assert again == ["updated approval (version 2)", "updated refunds (version 2)"]

    listed = await run_text(capsys, "processes", "list", *common)
    assert listed[0].split() == ["ID", "NAME", "VERSION", "START", "STEPS"]
    assert listed[1].split() == ["approval", "Order", "approval", "2", "1", "filter(s)", "2"]
    assert listed[2].split()[0] == "refunds"
    shown = await run_text(capsys, "processes", "get", "approval", *common)
    assert shown[:3] == [
        "process approval: Order approval (version 2)",
        "start: 1 filter(s)",
        "bufferSeconds: 3600",
    ]
    assert shown[4].split() == ["STEP", "KIND", "TARGET", "TIMEOUT"]
    assert shown[5].split() == ["notify", "call", receiver.url]
    assert shown[6].split() == ["approval", "wait", "order.approved", "600"]
    as_json = json.loads(
        "\n".join(await run_text(capsys, "processes", "get", "approval", *common, "--json"))
    )
    assert as_json == await server.get_json("/api/processes/approval")
    assert as_json["steps"][0]["call"]["headers"] == {"Authorization": "********"}

    await emit(server, "order.cancelled", "c-1", {"orderId": "c-1"})
    (waiting,) = await until_instances(server, 1)
    with pytest.raises(SystemExit, match="409 conflict: process 'refunds' has 1 live instance"):
        await asyncio.to_thread(cli.main, ["processes", "delete", "refunds", *common])
    out = await run_text(capsys, "processes", "delete", "refunds", "--cancel-instances", *common)
    assert out == ["deleted refunds"]
    assert (await instance(server, waiting["id"]))["state"] == "Cancelled"
    with pytest.raises(SystemExit, match="404 not_found: no process definition 'refunds'"):
        await asyncio.to_thread(cli.main, ["processes", "get", "refunds", *common])


async def test_instances_list_get_cancel(
    server: Running, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    consumer = ("--url", server.url, "--key", await server.new_key("consumer"))
    admin = ("--url", server.url, "--key", ADMIN_KEY)
    await define(server, "orders", order_process(receiver.url))
    await emit(server, "order.created", "o-1", {"orderId": "o-1", "amount": 12})
    await emit(server, "order.created", "o-2", {"orderId": "o-2"})
    first, second = await until_instances(server, 2)
    await until_state(server, first["id"], "Waiting")
    await until_state(server, second["id"], "Waiting")
    await emit(server, "order.approved", "a-1", {"approvedBy": "ann"}, instance=first["id"])
    await until_state(server, first["id"], "Completed")

    listed = await run_text(capsys, "instances", "list", *consumer)
    assert listed[0].split() == ["INSTANCE", "DEFINITION", "VERSION", "STATE", "STEP", "UPDATED"]
    assert [line.split()[:4] for line in listed[1:]] == [
        [first["id"], "orders", "1", "Completed"],
        [second["id"], "orders", "1", "Waiting"],
    ]
    waiting = await run_text(capsys, "instances", "list", "--state", "Waiting", *consumer)
    assert [line.split()[0] for line in waiting[1:]] == [second["id"]]
    paged = await run_text(capsys, "instances", "list", "--limit", "1", *consumer)
    assert paged[1].split()[0] == first["id"] and paged[2].startswith("more: ")
    after = paged[2].split()[-1]
    rest = await run_text(
        capsys, "instances", "list", "--definition", "orders", "--after", after, *consumer
    )
    assert [line.split()[0] for line in rest[1:]] == [second["id"]]
    raw = "\n".join(await run_text(capsys, "instances", "list", "--json", *consumer))
    assert json.loads(raw) == await server.get_json("/api/instances")

    shown = await run_text(capsys, "instances", "get", first["id"], *consumer)
    assert shown[:4] == [
        f"instance {first['id']}",
        "definition: orders (version 1)",
        "state: Completed",
        "step: -",
    ]
    assert "variables:" in shown and '  approvedBy = "ann"' in shown and "  amount = 12" in shown
    history = shown[shown.index("history:") + 1 :]
    assert history[0].split() == ["AT", "STEP", "WHAT", "OFFSET", "DETAIL"]
    column = history[0].index("WHAT")  # a step may be empty: read by column, not by word
    whats = [line[column:].split()[0] for line in history[1:]]
    assert whats[0] == "started" and whats[-1] == "completed" and "resumed" in whats

    with pytest.raises(SystemExit, match="403"):
        await asyncio.to_thread(cli.main, ["instances", "cancel", second["id"], *consumer])
    cancelled = await run_text(capsys, "instances", "cancel", second["id"], *admin)
    assert "state: Cancelled" in cancelled
    header = cancelled[cancelled.index("history:") + 1]
    assert cancelled[-1][header.index("WHAT") :].split()[0] == "cancelled"
    with pytest.raises(SystemExit, match=f"409 conflict: instance {second['id']} is Cancelled"):
        await asyncio.to_thread(cli.main, ["instances", "cancel", second["id"], *admin])

    await emit(server, "order.approved", "late", {}, instance=second["id"])
    unrouted = await run_text(capsys, "instances", "unrouted", *consumer)
    assert unrouted[0].split()[:5] == ["OFFSET", "SOURCE", "ID", "TYPE", "INSTANCE"]
    assert [line.split()[2:5] for line in unrouted[1:]] == [
        ["late", "order.approved", second["id"]]
    ]


ROOT = Path(__file__).resolve().parents[2]


async def test_an_api_refusal_is_one_line_on_stderr_and_exit_status_1(server: Running) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventhub",
        "instances",
        "get",
        "nope",
        "--url",
        server.url,
        "--key",
        ADMIN_KEY,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await process.communicate()
    assert process.returncode == 1
    assert out == b""
    assert err.decode() == "eventhub: 404 not_found: no instance 'nope'\n"


async def test_a_bad_process_file_is_one_line_naming_it(server: Running, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    common = ["--url", server.url, "--key", ADMIN_KEY]
    path.write_text("[processes.p]\nname = 1970-01-01\n")
    with pytest.raises(SystemExit, match=f"^eventhub: {path}: processes.p: name: dates"):
        await asyncio.to_thread(cli.main, ["processes", "apply", str(path), *common])
    path.write_text("[models.m]\nname = 'M'\n")
    with pytest.raises(SystemExit, match=r"no \[processes.<id>\] table"):
        await asyncio.to_thread(cli.main, ["processes", "apply", str(path), *common])
    # The shape is judged here, by the body's Struct, naming the file and the key...
    path.write_text('[processes.p]\nname = "P"\nstart.filters = []\nsteps = []\n')
    says = f"^eventhub: {re.escape(str(path))}: processes.p: start.filters: expected `array`"
    with pytest.raises(SystemExit, match=says):
        await asyncio.to_thread(cli.main, ["processes", "apply", str(path), *common])
    # ... the rest by the hub, whose refusal is one line too.
    step = '[[processes.p.steps]]\nid = "w"\nwait = { type = "x" }\n'
    path.write_text(f'[processes.p]\nname = "P"\nstart.filters = [{{ sql = "true" }}]\n{step * 2}')
    with pytest.raises(SystemExit, match=r"400 invalid_request: steps\[1\]\.id 'w' is used twice"):
        await asyncio.to_thread(cli.main, ["processes", "apply", str(path), *common])
