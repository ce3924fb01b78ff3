"""Online backup (SPEC §7): ``eventhub backup PATH`` against a real hub process under ingest
load, restored with ``eventhub serve --data PATH``."""

from __future__ import annotations

import asyncio
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from eventhub import cli
from tests.conftest import ADMIN_KEY, Running, free_port
from tests.e2e.helpers import ServerProcess, bearer, error_of, read_log

ROOT = Path(__file__).resolve().parents[2]


async def backup_cli(path: Path, url: str, key: str = ADMIN_KEY) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eventhub",
        "backup",
        str(path),
        "--url",
        url,
        "--key",
        key,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_backup_under_load_restores_every_event_acknowledged_before_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "live" / "eventhub.db"
    copy = tmp_path / "backups" / "copy.db"
    copy.parent.mkdir()
    acked: list[str] = []
    stop = asyncio.Event()
    hub = ServerProcess(db, tmp_path / "hub.log")
    try:
        async with aiohttp.ClientSession() as http:
            await hub.ready(http)
            # A sealed secret in the copy: the restored hub must open it with the key file.
            async with http.put(
                f"{hub.url}/admin/sources/signed", json={"secret": "s" * 24}, headers=bearer()
            ) as response:
                assert response.status == 200

            async def produce(worker: int) -> None:
                n = 0
                while not stop.is_set():
                    event_id = f"w{worker}-{n}"
                    headers = {
                        **bearer(),
                        "ce-specversion": "1.0",
                        "ce-id": event_id,
                        "ce-source": "/load",
                        "ce-type": "load.tick",
                        "content-type": "application/json",
                    }
                    async with http.post(
                        f"{hub.url}/events", data=b'{"n": %d}' % n, headers=headers
                    ) as response:
                        assert response.status == 200, await response.text()
                    acked.append(event_id)
                    n += 1

            workers = [asyncio.create_task(produce(w)) for w in range(4)]
            try:
                async with asyncio.timeout(20):
                    while len(acked) < 200:
                        await asyncio.sleep(0.01)
                before = set(acked)  # acknowledged before the backup began
                code, out, err = await backup_cli(copy, hub.url)
                assert len(acked) > len(before)  # the load went on while it ran
            finally:
                stop.set()
                await asyncio.gather(*workers)
    finally:
        hub.close()

    assert code == 0, (out, err)
    key_file = db.with_name("eventhub.db.key")
    assert str(key_file) in out  # the CLI says which key the copy needs
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert not copy.with_name("copy.db.partial").exists()
    assert key_file.read_bytes().strip() not in copy.read_bytes()  # never the key

    # Without its key, the copy's secrets stay shut: refused, one line, exit 2.
    refused = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "eventhub",
            "serve",
            "--port",
            str(free_port()),
            "--data",
            str(copy),
        ],
        env={"EVENTHUB_ADMIN_KEY": ADMIN_KEY, "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert refused.returncode == 2 and "key" in refused.stderr, refused.stderr

    shutil.copy(key_file, copy.with_name("copy.db.key"))
    restored = ServerProcess(copy, tmp_path / "restored.log")
    try:
        async with aiohttp.ClientSession() as http:
            await restored.ready(http)
            ids = {e["event"]["id"] for e in await read_log(http, restored.url)}
            missing = before - ids
            assert not missing, sorted(missing)[:10]
            async with http.get(f"{restored.url}/admin/sources", headers=bearer()) as response:
                sources = (await response.json())["sources"]
            assert [s["name"] for s in sources] == ["signed"]
            # Offsets go on from the copy's last one (the CLI said which).
            last = int(out.split("offsets up to ", 1)[1].split(")", 1)[0])
            assert last >= len(before)
            headers = {**bearer(), "ce-specversion": "1.0", "ce-id": "after", "ce-source": "/r"}
            async with http.post(
                f"{restored.url}/events", headers={**headers, "ce-type": "t"}
            ) as response:
                assert response.status == 200
                assert (await response.json())["events"][0]["offset"] == last + 1
    finally:
        restored.close()


async def test_only_an_admin_takes_a_backup(server: Running) -> None:
    consumer = await server.new_key("consumer")
    async with server.http.get(f"{server.url}/admin/backup", headers=bearer(consumer)) as r:
        await error_of(r, 403, "forbidden")
    async with server.http.get(f"{server.url}/admin/backup") as r:
        await error_of(r, 401, "unauthorized")


async def test_the_backup_endpoint_streams_a_whole_private_snapshot(
    server: Running, tmp_path: Path
) -> None:
    for n in range(3):
        headers = {
            **bearer(),
            "ce-specversion": "1.0",
            "ce-id": str(n),
            "ce-source": "/s",
            "ce-type": "t",
        }
        assert (await server.post("/events", headers=headers)).status == 200
    async with server.http.get(f"{server.url}/admin/backup", headers=bearer()) as r:
        assert r.status == 200
        body = await r.read()
        assert int(r.headers["Content-Length"]) == len(body)
        assert r.headers["Eventhub-Last-Offset"] == "3"
        assert r.headers["Eventhub-Key-File"].endswith("eventhub.db.key")
    assert body.startswith(b"SQLite format 3\x00")
    # Nothing is left beside the database: the snapshot was unlinked as it was opened.
    data = server.hub.settings.data
    assert not list(data.parent.glob(data.name + ".backup-*"))


async def test_the_cli_never_overwrites_a_file(
    server: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "there.db"
    existing.write_bytes(b"keep me")
    code = await asyncio.to_thread(
        cli.main, ["backup", str(existing), "--url", server.url, "--key", ADMIN_KEY]
    )
    assert code == 2
    assert "exists" in capsys.readouterr().err
    assert existing.read_bytes() == b"keep me"
