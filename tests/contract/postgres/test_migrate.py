"""``eventhub migrate`` (eventhub/log/migrate.py): a real SQLite hub, filled over its API, then
stopped and copied by the command (a child process, as an operator runs it) into the session's
real PostgreSQL; a ``PostgresStore`` opened on the target with the new key must answer every
read as a ``SqliteStore`` on the source does. Refusals are one line and exit status 2."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from eventhub import auth, vault
from eventhub.log import sealing
from eventhub.log.postgres import PostgresStore
from eventhub.log.sqlite import SqliteStore
from eventhub.processes.instances import State
from eventhub.settings import Settings
from eventhub.vault import Vault
from tests.conftest import ManualClock, Running, settings_for
from tests.e2e.call_receiver import CallReceiver
from tests.e2e.delivery_helpers import SUBS, publish_trigger, request, send, subscribe, wait_status
from tests.e2e.helpers import serving
from tests.e2e.process_helpers import define, emit, order_process, until_state
from tests.e2e.receiver import Receiver

ROOT = Path(__file__).resolve().parents[3]
NEW_KEY = vault.encode_key(b"n" * 32)


def run_migrate(
    *args: str, key: str | None = NEW_KEY, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTHUB_")}
    env.update(extra_env)
    env["PYTHONPATH"] = str(ROOT)
    if key is not None:
        env["EVENTHUB_SECRET_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "eventhub", "migrate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def refusal(done: subprocess.CompletedProcess[str]) -> str:
    """The one line of a refused run."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


async def fill(server: Running, receiver: Receiver, calls: CallReceiver) -> dict[str, Any]:
    """A hub with something of everything: events of several sources (a revision, a
    duplicate), a published model, a subscription that delivered (its cursor moved) with
    sealed callback headers, keys, a source with a secret, a process with a Waiting instance
    and one with a buffered event."""
    await publish_trigger(server)
    sub = await subscribe(
        server, receiver.url, callbackInfo={"uri": receiver.url, "headers": {"X-Token": "t0p"}}
    )
    producer = await server.new_key("producer")
    status, _ = await request(
        server, "PUT", "/admin/sources/shop", json={"secret": "s3cret-of-at-least-16-chars"}
    )
    assert status in (200, 201)
    await define(server, "orders", order_process(calls.url))
    first = await emit(server, "order.created", "o-1", {"orderId": "o-1"})
    await emit(server, "other.thing", "x-1", {"n": 1}, source="warehouse")
    again = await emit(server, "other.thing", "x-1", {"n": 2}, source="warehouse")  # revision
    dup = await emit(server, "other.thing", "x-1", {"n": 2}, source="warehouse")  # duplicate
    assert dup["duplicate"] and dup["offset"] == again["offset"] and again["revision"] == 2
    (call,) = await calls.until_entered(1)
    waiting = call.headers["ce-cxpinstanceid"]
    await until_state(server, waiting, "Waiting")
    # A second instance held in its call: an event for it now is buffered.
    calls.gate.clear()
    await emit(server, "order.created", "o-2", {"orderId": "o-2"})
    held = (await calls.until_entered(2))[1].headers["ce-cxpinstanceid"]
    early = await emit(server, "order.approved", "a-2", {"by": "ann"}, instance=held)
    assert early["correlation"] == "buffered"
    await wait_status(server, sub["id"], "Active")
    async with asyncio.timeout(10):
        while True:
            _, state = await request(server, "GET", f"/intelligence/api/subscriptions/{sub['id']}")
            if state["offset"] >= first["offset"]:  # the cursor moved past it
                break
            await asyncio.sleep(0.01)
    return {"producer": producer, "waiting": waiting, "held": held, "sub": sub["id"]}


async def snapshot(store: Any) -> dict[str, Any]:
    """Every read the migration must keep, from either store."""
    tids = await store.trigger_ids()
    definitions, _ = await store.load_definitions()
    found = await store.list_instances(None, None, 0, 100)
    events = await store.read_after(0, 1000)
    return {
        "head": await store.head(),
        "events": events,
        "latest": [
            await store.get_latest(e.attributes["source"], e.attributes["id"]) for e in events
        ],
        "trigger_ids": tids,
        "pages": {t: await store.read_trigger_after(t, 0, 100) for t in tids.values()},
        "models": await store.load_models(),
        "published": await store.load_published(),
        "subscriptions": sorted(await store.load_subscriptions(), key=lambda s: s.id),
        "attempts": [await store.list_attempts(s.id, 10) for s in await store.load_subscriptions()],
        "keys": sorted(await store.list_keys(), key=lambda k: k.key_id),
        "sources": await store.list_sources(),
        "types": await store.event_types(),
        "traces": await store.list_traces(0, 100),
        "definitions": definitions,
        "instances": found,
        "loaded": [await store.load_instance(i.id) for i in found],
        "unrouted": await store.list_unrouted(0, 100),
    }


async def test_a_migrated_hub_answers_the_same_reads_from_postgresql(
    tmp_path: Path, pg_dsn: str
) -> None:
    settings = settings_for(tmp_path)
    receiver, calls = await Receiver().start(), CallReceiver()
    await calls.start()
    try:
        async with serving(settings, ManualClock()) as server:
            made = await fill(server, receiver, calls)
            # While it runs, the database is refused: the copy is offline.
            line = refusal(run_migrate("--from", str(settings.data), "--to", pg_dsn))
            assert "open in another process" in line
    finally:
        calls.gate.set()
        await calls.stop()
        await receiver.stop()

    done = run_migrate("--from", str(settings.data), "--to", pg_dsn, "--batch", "3")
    assert done.returncode == 0, done.stderr
    assert "events: 3/" in done.stderr and "committed: head" in done.stderr  # batches, progress

    old = Vault(vault.read_key_file(sealing.key_file_of(settings.data)) or b"")
    sqlite = SqliteStore(settings.data, ManualClock(), vault=old)
    await sqlite.open()
    try:
        want = await snapshot(sqlite)
    finally:
        await sqlite.close()
    postgres = PostgresStore(pg_dsn, ManualClock(), vault=Vault(vault.parse_key(NEW_KEY, "k")))
    await postgres.open()
    try:
        got = await snapshot(postgres)
        assert got == want
        # What the comparison might pass by both being empty, checked on its own:
        assert len(got["events"]) >= 6 and got["head"] == got["events"][-1].offset
        assert any(e.revision == 2 for e in got["events"])
        (sub,) = got["subscriptions"]
        assert sub.cursor > 0 and sub.delivered >= 1 and sub.headers == {"X-Token": "t0p"}
        assert [s.secret for s in got["sources"] if s.name == "shop"] == [
            "s3cret-of-at-least-16-chars"
        ]
        key_id = made["producer"].split("_")[1]
        (record,) = [k for k in got["keys"] if k.key_id == key_id]
        assert auth.Keyring([record]).authenticate(made["producer"]) is not None
        states = {i.id: i.state for i in got["instances"]}
        assert states[made["waiting"]] == State.WAITING
        assert made["held"] in states
        assert any(e["fate"] == "buffered" for e in await _correlations(pg_dsn))
        # The log goes on after the copied head, gap-free; new triggers after the copied ids.
        assert await postgres.ensure_trigger("new-km", "t") > max(got["trigger_ids"].values())
    finally:
        await postgres.close()
    # Never in clear: the target holds no secret's plaintext.
    async with _connected(pg_dsn) as conn:
        dump = str(
            [
                tuple(r)
                for t in ("sources", "subscriptions")
                for r in await conn.fetch(f"SELECT * FROM {t}")
            ]
        )
    assert "s3cret-of-at-least-16-chars" not in dump and "t0p" not in dump


async def _correlations(dsn: str) -> list[dict[str, Any]]:
    async with _connected(dsn) as conn:
        return [dict(r) for r in await conn.fetch("SELECT * FROM correlations")]


class _connected:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    async def __aenter__(self) -> Any:
        self._conn = await asyncpg.connect(self._dsn)
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        await self._conn.close()


async def _small_hub(tmp_path: Path) -> Path:
    settings = settings_for(tmp_path)
    async with serving(settings, ManualClock()) as server:
        await emit(server, "order.created", "o-1")
    return settings.data


async def test_a_target_that_is_not_empty_is_refused(tmp_path: Path, pg_dsn: str) -> None:
    db = await _small_hub(tmp_path)
    assert run_migrate("--from", str(db), "--to", pg_dsn).returncode == 0
    line = refusal(run_migrate("--from", str(db), "--to", pg_dsn))
    assert "not empty" in line
    async with _connected(pg_dsn) as conn:
        assert await conn.fetchval("SELECT count(*) FROM events") == 1  # untouched


async def test_a_target_with_tables_of_something_else_is_refused(
    tmp_path: Path, pg_dsn: str
) -> None:
    db = await _small_hub(tmp_path)
    async with _connected(pg_dsn) as conn:
        await conn.execute("CREATE TABLE customers (id INTEGER)")
    assert "not empty" in refusal(run_migrate("--from", str(db), "--to", pg_dsn))


async def test_a_key_that_does_not_open_the_source_is_refused(tmp_path: Path, pg_dsn: str) -> None:
    db = await _small_hub(tmp_path)
    wrong = tmp_path / "wrong.key"
    wrong.write_text(vault.encode_key(b"w" * 32))
    line = refusal(run_migrate("--from", str(db), "--to", pg_dsn, "--from-key-file", str(wrong)))
    assert "does not open" in line
    assert "not a valid key" in refusal(run_migrate("--from", str(db), "--to", pg_dsn, key="short"))
    assert "EVENTHUB_SECRET_KEY" in refusal(
        run_migrate("--from", str(db), "--to", pg_dsn, key=None)
    )
    async with _connected(pg_dsn) as conn:  # nothing was written
        assert (
            await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        )


async def test_a_target_opened_with_another_key_is_refused(tmp_path: Path, pg_dsn: str) -> None:
    db = await _small_hub(tmp_path)
    other = PostgresStore(pg_dsn, ManualClock(), vault=Vault(b"o" * 32))
    await other.open()  # an empty hub's database, its check sealed with another key
    await other.close()
    assert "does not open" in refusal(run_migrate("--from", str(db), "--to", pg_dsn))


async def test_an_unreachable_target_is_refused(tmp_path: Path) -> None:
    db = await _small_hub(tmp_path)
    dsn = "postgresql://eventhub:pw@127.0.0.1:1/eventhub"
    line = refusal(run_migrate("--from", str(db), "--to", dsn))
    assert "cannot connect" in line and "pw" not in line
    line = refusal(run_migrate("--from", str(db), EVENTHUB_DATABASE=dsn))  # --to from the env
    assert "cannot connect" in line and "pw" not in line
    assert "EVENTHUB_DATABASE" in refusal(run_migrate("--from", str(db)))


async def test_a_source_table_the_copy_does_not_know_is_refused(
    tmp_path: Path, pg_dsn: str
) -> None:
    # A table added to SQLite and not to log/migrate.py's TABLES would be left behind.
    db = await _small_hub(tmp_path)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE later_feature (x INTEGER)")
        conn.commit()
    assert "later_feature" in refusal(run_migrate("--from", str(db), "--to", pg_dsn))
    async with _connected(pg_dsn) as conn:  # refused before the target was touched
        assert (
            await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        )


# The round trip needs `eventhub serve --database` (settings.database), built in parallel on
# branch h12/pgserve: skipped until both are merged, then it runs.
_SERVES_POSTGRES = "database" in {f.name for f in dataclasses.fields(Settings)}


@pytest.mark.skipif(not _SERVES_POSTGRES, reason="needs settings.database (h12/pgserve)")
async def test_a_migrated_hub_is_served_from_postgresql_with_the_same_offsets_and_cursors(
    tmp_path: Path, pg_dsn: str
) -> None:
    receiver, calls = await Receiver().start(), CallReceiver()
    await calls.start()
    try:
        sqlite_settings = settings_for(tmp_path / "sqlite")
        async with serving(sqlite_settings, ManualClock()) as server:
            await publish_trigger(server)
            headers = {"X-Token": "t0p"}
            sub = await subscribe(
                server, receiver.url, callbackInfo={"uri": receiver.url, "headers": headers}
            )
            await send(server, 3)
            await define(server, "orders", order_process(calls.url))
            # order.created starts an instance and matches the subscription's trigger too.
            last = (await emit(server, "order.created", "o-1", {"orderId": "o-1"}))["offset"]
            await _until_cursor(server, sub["id"], last)
            waiting = (await calls.until_entered(1))[0].headers["ce-cxpinstanceid"]
            await until_state(server, waiting, "Waiting")
            log_before = await server.log()
            sub_before = (await request(server, "GET", f"{SUBS}/{sub['id']}"))[1]
        delivered = len(receiver.seen)

        done = run_migrate("--from", str(sqlite_settings.data), "--to", pg_dsn)
        assert done.returncode == 0, done.stderr

        pg_settings = settings_for(tmp_path / "pg", database=pg_dsn, secret_key=NEW_KEY)
        async with serving(pg_settings, ManualClock()) as server:
            assert await server.log() == log_before  # same events at the same offsets
            sub_after = (await request(server, "GET", f"{SUBS}/{sub['id']}"))[1]
            assert sub_after["offset"] == sub_before["offset"] == last
            assert sub_after["counts"] == sub_before["counts"]
            # The log goes on after the copied head; the subscription resumes from its
            # cursor: the new event only, signed with its re-sealed headers.
            (new,) = await send(server, 1, start=3)
            assert new == log_before[-1]["offset"] + 1
            await _until_cursor(server, sub["id"], new)
            assert len(receiver.seen) == delivered + 1
            assert receiver.seen[-1].headers["X-Token"] == "t0p"
            # The Waiting instance wakes on PostgreSQL.
            await emit(server, "order.approved", "a-1", {"by": "ann"}, instance=waiting)
            await until_state(server, waiting, "Completed")
        assert not pg_settings.data.exists()  # nothing was served from SQLite
    finally:
        await calls.stop()
        await receiver.stop()


async def _until_cursor(server: Running, sub_id: str, offset: int) -> None:
    async with asyncio.timeout(10):
        while (await request(server, "GET", f"{SUBS}/{sub_id}"))[1]["offset"] < offset:
            await asyncio.sleep(0.01)
