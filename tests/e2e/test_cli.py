"""The admin CLI against a running hub."""

from __future__ import annotations

import asyncio
import json

import pytest

from eventhub import cli
from tests.conftest import ADMIN_KEY, Running


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
    listed = await run_cli(capsys, "keys", "list", *common)
    assert isinstance(listed, dict)
    assert [k["id"] for k in listed["keys"]] == [created["id"]]

    put = await run_cli(capsys, "sources", "put", "/a", *common, "--require-signature")
    assert isinstance(put, dict) and put["requireSignature"] is True and len(put["secret"]) > 16
    assert "/a" in server.hub.sources

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
