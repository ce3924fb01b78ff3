"""Secrets at rest and file modes (SPEC §8), against the real ``eventhub serve`` process.

Source HMAC secrets, ``whsec_`` signing secrets and callback header values never appear in
the bytes of the database, its WAL or its SHM, while the hub runs or after it stopped; the
data directory is 0700 and its files 0600, also when an older version left them 0755/0644;
a database an older version wrote in plain text is sealed on the next start and still
works; a secret key that does not fit, or is malformed, is one line and exit status 2.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import standardwebhooks.webhooks

from eventhub import vault
from tests.conftest import ADMIN_KEY, free_port
from tests.e2e.helpers import ServerProcess, bearer, custom_server, hmac_hex
from tests.e2e.receiver import Receiver

KM = "/intelligence/api/knowledge-models"
SOURCE = "shop"
SOURCE_SECRET = "source-hmac-secret-7f3a9c1e5b2d8f4a"
HEADER_SECRET = "callback-header-secret-0d9e8c7b6a5f4e3d"
AUTHORIZATION = f"Bearer {HEADER_SECRET}"
KEY_A = vault.encode_key(bytes(range(32)))
KEY_B = vault.encode_key(bytes(range(1, 33)))
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Callbacks go to a receiver on 127.0.0.1: allowed explicitly, as SPEC §8 asks.
    monkeypatch.setenv("EVENTHUB_ALLOWED_CALLBACK_NETWORKS", "127.0.0.0/8")
    monkeypatch.delenv("EVENTHUB_SECRET_KEY", raising=False)
    yield


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def raw(path: Path | str) -> bytes | None:
    """The bytes of a file, or None when there is none."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def database_files(db: Path) -> list[Path]:
    return [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]


def assert_no_secrets(db: Path, secrets: list[str]) -> None:
    for path in database_files(db):
        raw = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in raw, f"{secret!r} in plain text in {path.name}"


@asynccontextmanager
async def running(data: Path, tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, Any]]:
    hub = ServerProcess(data, tmp_path / f"server-{free_port()}.log")
    try:
        async with aiohttp.ClientSession() as http:
            await hub.ready(http)
            yield hub, http
            hub.process.terminate()
            assert await hub.exited() == 0, hub.output()
    finally:
        hub.close()


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=body, headers=bearer()) as response:
        return response.status, await response.json(content_type=None)


async def populate(http: aiohttp.ClientSession, url: str, callback: str) -> str:
    """A source with a secret and a subscription with an Authorization callback header;
    returns the subscription's ``whsec_`` secret."""
    status, _ = await call(
        http,
        "PUT",
        f"{url}/admin/sources/{SOURCE}",
        {"secret": SOURCE_SECRET, "requireSignature": True},
    )
    assert status == 200
    assert (await call(http, "PUT", f"{url}{KM}/orders", {"name": "orders"}))[0] == 200
    trigger = {"name": "created", "filters": [{"exact": {"type": "order.created"}}]}
    assert (await call(http, "PUT", f"{url}{KM}/orders/triggers/created", trigger))[0] == 200
    assert (await call(http, "POST", f"{url}{KM}/orders/publish"))[0] == 200
    body = {
        "name": "hook",
        "callbackInfo": {"uri": callback, "headers": {"Authorization": AUTHORIZATION}},
        "batchSize": 1,
    }
    status, created = await call(
        http, "POST", f"{url}{KM}/orders/triggers/created/subscriptions", body
    )
    assert status == 201, created
    secret: str = created["secret"]
    assert secret.startswith("whsec_")
    return secret


async def publish_signed(http: aiohttp.ClientSession, url: str, event_id: str) -> int:
    """A keyless event signed with the source's secret: accepted only if the hub still
    knows that secret."""
    body = b'{"order": "%s"}' % event_id.encode()
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": SOURCE,
        "ce-type": "order.created",
        "content-type": "application/json",
        "x-eventhub-hmac": hmac_hex(SOURCE_SECRET, body),
    }
    async with http.post(f"{url}/events", data=body, headers=headers) as response:
        return response.status


async def assert_delivered(receiver: Receiver, count: int, whsec: str) -> None:
    """The ``count``-th delivery arrived with the callback header, signed with ``whsec``."""
    seen = (await receiver.wait_for(count))[count - 1]
    headers = {k.lower(): v for k, v in seen.headers.items()}
    assert headers["authorization"] == AUTHORIZATION
    standardwebhooks.webhooks.Webhook(whsec).verify(seen.body, headers)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


def serve_once(data: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``eventhub serve`` expected to refuse to start: it must exit on its own."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "eventhub",
            "serve",
            "--port",
            str(free_port()),
            "--data",
            str(data),
        ],
        env={**os.environ, "EVENTHUB_ADMIN_KEY": ADMIN_KEY, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=15,
    )


def assert_refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eventhub: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0], lines[0]
    for key in (KEY_A, KEY_B):
        assert key not in result.stderr + result.stdout


# -- the tests ---------------------------------------------------------------------------------


async def test_secrets_are_sealed_in_every_database_file(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "data" / "eventhub.db"
    async with running(db, tmp_path) as (hub, http):
        whsec = await populate(http, hub.url, receiver.url)
        assert await publish_signed(http, hub.url, "e-1") == 200
        await assert_delivered(receiver, 1, whsec)
        secrets = [SOURCE_SECRET, HEADER_SECRET, whsec, whsec.removeprefix("whsec_")]
        assert len(database_files(db)) == 3  # the WAL and SHM exist while it runs
        assert_no_secrets(db, secrets)
        # The API shows header names only, and no secret outside its creation's answer.
        status, subs = await call(http, "GET", f"{hub.url}/intelligence/api/subscriptions")
        assert status == 200 and HEADER_SECRET not in str(subs) and whsec not in str(subs)
        status, sources = await call(http, "GET", f"{hub.url}/admin/sources")
        assert status == 200 and SOURCE_SECRET not in str(sources)
        for path in [db.parent, *database_files(db), Path(f"{db}.key")]:
            assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    assert_no_secrets(db, secrets)
    assert sorted(p.name for p in db.parent.iterdir()) == ["eventhub.db", "eventhub.db.key"]
    log = hub.log_path.read_text()
    for secret in secrets:
        assert secret not in log
    # Sealed, they still open: the next start verifies the source and signs deliveries.
    async with running(db, tmp_path) as (hub, http):
        assert await publish_signed(http, hub.url, "e-2") == 200
        await assert_delivered(receiver, 2, whsec)
        assert_no_secrets(db, secrets)
    assert_no_secrets(db, secrets)


async def test_fresh_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    # In-process, where `eventhub serve`'s umask 077 does not apply: files.py alone must do it.
    old = os.umask(0o022)
    try:
        async with custom_server(tmp_path) as server:
            db = server.hub.settings.data
            await server.post("/admin/keys", json={"role": "producer"}, headers=server.admin)
            assert len(database_files(db)) == 3
            for path in [db.parent, *database_files(db), Path(f"{db}.key")]:
                assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    finally:
        os.umask(old)


def make_legacy(db: Path, old: Path, whsec: str) -> None:
    """``old``: ``db`` as a version before sealing left it after a crash. Plaintext secrets,
    in its old encoding, in the database file and in a WAL not yet checkpointed; no vault
    table, no key file; schema version 2; files 0644 in a directory 0755."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    (config,) = conn.execute("SELECT config FROM subscriptions").fetchone()
    config = orjson.loads(config)
    config["headers"] = {"Authorization": AUTHORIZATION}
    secrets = {"current": whsec, "previous": None, "previousExpires": None}
    conn.execute("DROP TABLE IF EXISTS vault")
    conn.execute("ALTER TABLE sources DROP COLUMN max_body_bytes")  # schema 4's
    conn.execute("DROP TABLE trace_members")  # schema 5's (its triggers go with it)
    conn.execute("DROP TABLE traces")
    for table in ("process_definitions", "process_versions", "instances", "instance_history"):
        conn.execute(f"DROP TABLE {table}")  # schema 6's (their indexes go with them)
    conn.execute("DROP TABLE correlations")
    conn.execute("PRAGMA user_version = 2")
    conn.execute("UPDATE sources SET secret = ?", (SOURCE_SECRET,))
    # orjson's bytes, as the old code bound them: SQLite keeps a BLOB in the TEXT column.
    conn.execute(
        "UPDATE subscriptions SET config = ?, secrets = ?",
        (orjson.dumps(config), json.dumps(secrets).encode()),
    )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    # Written again (other bytes: SQLite skips a write of equal ones), and left in the WAL
    # only, as a crash would.
    conn.execute("UPDATE subscriptions SET secrets = ?", (orjson.dumps(secrets),))
    old.mkdir()
    for suffix in ("", "-wal", "-shm"):
        shutil.copyfile(f"{db}{suffix}", f"{old}/{db.name}{suffix}")
        os.chmod(f"{old}/{db.name}{suffix}", 0o644)
    old.chmod(0o755)
    conn.close()


async def test_an_old_plaintext_database_is_sealed_and_made_private(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "new" / "eventhub.db"
    async with running(db, tmp_path) as (hub, http):
        whsec = await populate(http, hub.url, receiver.url)
    old = tmp_path / "old"
    make_legacy(db, old, whsec)
    legacy = old / "eventhub.db"
    secrets = [SOURCE_SECRET, HEADER_SECRET, whsec.removeprefix("whsec_")]
    # The test's own premise: the old database file holds every secret, its WAL one more.
    assert all(s.encode() in (raw(legacy) or b"") for s in secrets)
    assert secrets[2].encode() in (raw(f"{legacy}-wal") or b"")

    async with running(legacy, tmp_path) as (hub, http):
        assert_no_secrets(legacy, secrets)
        assert mode(old) == 0o700
        for path in [*database_files(legacy), Path(f"{legacy}.key")]:
            assert mode(path) == 0o600, path
        # Still the same secrets: the source's signature is checked, deliveries are signed
        # with the subscription's whsec_ and carry its header.
        assert await publish_signed(http, hub.url, "after-sealing") == 200
        await assert_delivered(receiver, 1, whsec)
        status, subs = await call(http, "GET", f"{hub.url}/intelligence/api/subscriptions")
        assert status == 200 and HEADER_SECRET not in str(subs)
    assert_no_secrets(legacy, secrets)
    conn = sqlite3.connect(legacy)
    try:
        (secret,) = conn.execute("SELECT secret FROM sources").fetchone()
        (config, sealed) = conn.execute("SELECT config, secrets FROM subscriptions").fetchone()
    finally:
        conn.close()
    assert vault.is_sealed(secret) and vault.is_sealed(sealed)
    assert vault.is_sealed(orjson.loads(config)["headers"])


async def test_a_key_that_does_not_fit_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    db = tmp_path / "data" / "eventhub.db"
    monkeypatch.setenv("EVENTHUB_SECRET_KEY", KEY_A)
    async with running(db, tmp_path) as (hub, http):
        await populate(http, hub.url, receiver.url)
    assert raw(f"{db}.key") is None  # the setting given, no key file is made
    before = raw(db)

    other = await asyncio.to_thread(serve_once, db, {"EVENTHUB_SECRET_KEY": KEY_B})
    assert_refused(other, "EVENTHUB_SECRET_KEY", "does not open")
    monkeypatch.delenv("EVENTHUB_SECRET_KEY")
    # Without the setting, a new key file would not open them either: refused, none made.
    missing = await asyncio.to_thread(serve_once, db, {})
    assert_refused(missing, "restore the key file", "EVENTHUB_SECRET_KEY")
    assert raw(f"{db}.key") is None
    assert raw(db) == before  # nothing sealed with a wrong key

    monkeypatch.setenv("EVENTHUB_SECRET_KEY", KEY_A)
    async with running(db, tmp_path) as (hub, http):
        assert await publish_signed(http, hub.url, "right-key") == 200


async def test_a_key_file_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "data" / "eventhub.db"
    async with running(db, tmp_path) as (hub, http):
        status, _ = await call(
            http, "PUT", f"{hub.url}/admin/sources/{SOURCE}", {"secret": SOURCE_SECRET}
        )
        assert status == 200
    key_file = f"{db}.key"
    os.replace(write(tmp_path / "other.key", KEY_B + "\n"), key_file)
    result = await asyncio.to_thread(serve_once, db, {})
    assert_refused(result, key_file, "does not open")


@pytest.mark.parametrize(
    "value",
    ["", "not-a-key", vault.encode_key(bytes(16)), KEY_A[:-2] + "!!"],
    ids=["empty", "words", "16-bytes", "bad-characters"],
)
def test_a_malformed_secret_key_is_refused_naming_the_setting(tmp_path: Path, value: str) -> None:
    db = tmp_path / "data" / "eventhub.db"
    result = serve_once(db, {"EVENTHUB_SECRET_KEY": value})
    assert_refused(result, "EVENTHUB_SECRET_KEY", "32 random bytes")
    if value:
        assert value not in result.stderr
    assert not db.exists()  # refused before anything was created
