"""``eventhub migrate``: an offline copy of a stopped SQLite hub into an empty PostgreSQL
database, table by table, in **one** PostgreSQL transaction (not resumable: a copy that
fails leaves the target as empty as it found it, so the same command runs again).

Why SQL rather than the stores' methods: offsets, revisions, trigger ids, instance ``seq``
numbers and counters must arrive exactly as they are, and no store method writes an event
at a given offset. The two schemas have the same tables and columns (the PostgreSQL
migrations say so), so each row is copied as it is, with three adjustments:

- types: a TEXT cell an older version stored as a BLOB becomes text, SQLite's 0/1 a boolean,
  an integer in a REAL column a float;
- secrets (``log/sealing.py``: source secrets, subscriptions' signing secrets and callback
  headers, process secrets and definition bodies): opened with the SQLite hub's key and sealed
  again with the target's, in memory only, for the same *place*; the vault check is written
  with the target's key;
- counters: ``log_head`` is set to the SQLite head (which outlives retention's deletions), the
  identity sequences of ``triggers.tid`` and ``instances.seq`` follow the copied numbers.

The source is read in one read transaction (one snapshot) that also holds SQLite's write
lock, so a hub started meanwhile cannot write (it fails to start, busy). A hub that holds the
database open is detected before anything is read (``held_by_another``). SQLite is read on
the event loop, blocking: the command runs nothing else meanwhile, and each batch is read
while the previous one is already in PostgreSQL.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson

from eventhub import errors, vault
from eventhub.log import sealing
from eventhub.log.postgres import schema as pg_schema
from eventhub.log.postgres.connection import Session
from eventhub.log.sqlite import schema as sqlite_schema
from eventhub.vault import Vault

Row = list[Any]
Progress = Callable[[str], None]

# Every table a SQLite hub keeps, in copy order, with the order its rows are read in.
# ``vault`` is written afresh (the check, with the target's key); a SQLite table not listed
# here stops the copy (``_check_tables``): a new table must be added, never left behind.
TABLES: tuple[tuple[str, str], ...] = (
    ("events", "event_offset"),
    ("event_ids", "source, id"),
    ("trigger_events", "tid, event_offset"),
    ("triggers", "tid"),
    ("event_types", "type, source, grp"),
    ("trace_members", "source, id"),
    ("traces", "trace_id"),
    ("knowledge_models", "id"),
    ("knowledge_model_versions", "km, version"),
    ("api_keys", "key_id"),
    ("sources", "name"),
    ("subscriptions", "id"),
    ("attempts", "subscription_id, n"),
    ("process_definitions", "id"),
    ("process_versions", "definition_id, version"),
    ("instances", "seq"),
    ("instance_history", "instance_id, n"),
    ("correlations", "event_offset"),
)
_NOT_COPIED = {"vault", "sqlite_sequence"}
# Identity columns whose sequence must continue after the copied numbers.
_IDENTITIES = (("triggers", "tid"), ("instances", "seq"))

# The SQLite head: the highest offset ever handed out, which retention does not lower.
_SQLITE_HEAD = (
    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),"
    " COALESCE((SELECT MAX(event_offset) FROM events), 0))"
)

# sqlite's unix VFS: each connection that has a WAL database open holds a shared POSIX lock
# on this byte of the -shm file (UNIX_SHM_DMS = 120 + 8 lock slots).
_SHM_DMS_BYTE = 128


class Refused(errors.EventHubError):
    """The copy cannot start (or could not finish): one line for the operator, exit 2."""


@dataclass(frozen=True)
class Copied:
    head: int
    rows: dict[str, int]


# -- the source --------------------------------------------------------------------------------


def held_by_another(db: Path) -> bool:
    """Whether another process has ``db`` open (a running hub): it holds a shared lock on the
    -shm file's DMS byte, which a write lock probe then cannot take. Must run before this
    process opens ``db`` itself (closing our probe's descriptor would drop SQLite's POSIX
    locks of this process on that file)."""
    shm = db.with_name(db.name + "-shm")
    try:
        fd = os.open(shm, os.O_RDWR)
    except FileNotFoundError:
        return False  # a WAL database in use always has its -shm
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS_BYTE)
        except OSError:
            return True
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, _SHM_DMS_BYTE)
        return False
    finally:
        os.close(fd)


def source_vault(db: Path, key_file: Path | None, secret_key: str | None) -> Vault:
    """The vault of the SQLite hub: ``key_file`` if given, else the key file beside ``db``,
    else ``secret_key`` (a hub run with ``EVENTHUB_SECRET_KEY`` has no key file). Refused
    unless it opens the database's check."""
    path = key_file if key_file is not None else sealing.key_file_of(db)
    if key_file is not None or path.exists():
        key = vault.read_key_file(path)
        if key is None:
            raise Refused(f"key file {path} does not exist")
        origin = f"key file {path}"
    elif secret_key is not None:
        key = vault.parse_key(secret_key, "EVENTHUB_SECRET_KEY")
        origin = "EVENTHUB_SECRET_KEY"
    else:
        raise Refused(
            f"no key for the secrets of {db}: no key file {path}; give --from-key-file or the"
            " hub's EVENTHUB_SECRET_KEY"
        )
    sealer = Vault(key)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        row = conn.execute("SELECT value FROM vault WHERE name = 'check'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise Refused(f"{db} is not an eventhub database: {exc}") from None
    finally:
        conn.close()
    if row is not None and not sealing.opens_check(sealer, str(row[0])):
        raise Refused(f"{origin} does not open the secrets sealed in {db}")
    return sealer


def open_source(db: Path) -> sqlite3.Connection:
    """``db`` opened for the copy: its schema the newest, its write lock held (one snapshot,
    and no hub can write it meanwhile)."""
    if not db.is_file():
        raise Refused(f"{db} does not exist")
    if held_by_another(db):
        raise Refused(f"{db} is open in another process: stop the hub first")
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        newest = sqlite_schema._migrations()[-1][0]
        if version != newest:
            raise Refused(
                f"{db} has schema version {version}, this eventhub writes {newest}: start it"
                " once with this version (eventhub serve) and stop it, then migrate"
            )
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        conn.close()
        raise Refused(f"{db} cannot be locked for the copy ({exc}): stop the hub first") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _check_tables(conn: sqlite3.Connection) -> None:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    unknown = names - {t for t, _ in TABLES} - _NOT_COPIED
    if unknown:
        raise Refused(f"this eventhub cannot copy the tables {sorted(unknown)}")


# -- the target --------------------------------------------------------------------------------


async def connect_target(dsn: str) -> Session:
    try:
        conn: Session = await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise Refused(f"cannot connect to the target database: {_one_line(exc)}") from None
    return conn


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


async def _foreign_tables(conn: Session) -> list[str]:
    """Tables of something else in a database eventhub never migrated."""
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    )
    names = sorted(str(r[0]) for r in rows)
    return [] if "schema_version" in names else names


async def _non_empty(conn: Session) -> list[str]:
    found = [
        table
        for table, _ in TABLES
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})")
    ]
    if int(await conn.fetchval("SELECT last_offset FROM log_head FOR UPDATE")) != 0:
        found.append("log_head")
    return found


async def _pg_columns(conn: Session, table: str) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        table,
    )
    return {str(r[0]): str(r[1]) for r in rows}


# -- the copy ----------------------------------------------------------------------------------


def _to_text(v: Any) -> Any:
    return v.decode("utf-8") if isinstance(v, bytes) else v


def _to_bytes(v: Any) -> Any:
    return v.encode("utf-8") if isinstance(v, str) else v


def _to_bool(v: Any) -> Any:
    return None if v is None else bool(v)


def _to_float(v: Any) -> Any:
    return None if v is None else float(v)


def _same(v: Any) -> Any:
    return v


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "text": _to_text,
    "bytea": _to_bytes,
    "boolean": _to_bool,
    "double precision": _to_float,
}


class _Resealer:
    """Opens each secret with the source's key and seals it with the target's, for the same
    place: the plaintext lives only in this process's memory, for one row."""

    def __init__(self, old: Vault, new: Vault) -> None:
        self._old = old
        self._new = new

    def __call__(self, value: str, place: str) -> str:
        # A value still in plain text (written before sealing existed) is sealed now.
        plain = self._old.unseal(value, place) if vault.is_sealed(value) else value
        return self._new.seal(plain, place)

    def row(self, table: str, row: dict[str, Any]) -> None:
        """Re-seal the sealed cells of one row of ``table``, in place."""
        if table == "sources":
            row["secret"] = self(row["secret"], sealing.source_secret(row["name"]))
        elif table == "subscriptions":
            sub_id = row["id"]
            row["secrets"] = self(row["secrets"], sealing.subscription_secrets(sub_id))
            row["config"] = self._config(sub_id, row["config"])
        elif table == "process_definitions":
            row["secret"] = self(row["secret"], sealing.process_secret(row["id"]))
        elif table == "process_versions":
            place = sealing.process_version(row["definition_id"], row["version"])
            row["body"] = self(row["body"], place)

    def _config(self, sub_id: str, text: str) -> str:
        headers = orjson.loads(text).get("headers")
        if isinstance(headers, str):
            # Replaced in the text, so every other byte of the config stays as it was.
            new = self(headers, sealing.subscription_headers(sub_id))
            old_json, new_json = orjson.dumps(headers).decode(), orjson.dumps(new).decode()
            return text.replace(old_json, new_json, 1)
        if isinstance(headers, dict):  # plaintext from before sealing
            config = orjson.loads(text)
            config["headers"] = sealing.seal_headers(self._new, sub_id, headers)
            return orjson.dumps(config).decode()
        return text


_SEALED_TABLES = {"sources", "subscriptions", "process_definitions", "process_versions"}


async def _copy_table(
    src: sqlite3.Connection,
    dst: Session,
    table: str,
    order: str,
    reseal: _Resealer,
    batch: int,
    progress: Progress,
) -> int:
    target = await _pg_columns(dst, table)
    source = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
    lost = [c for c in source if c not in target]
    if not target or lost:
        raise Refused(f"the target's table {table} lacks the columns {lost or source}")
    # Columns only the target has keep their defaults (COPY leaves them out).
    columns = [c for c in target if c in source]
    converters = [_CONVERT.get(target[c], _same) for c in columns]
    (total,) = src.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    cursor = src.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
    done = 0
    while True:
        chunk = cursor.fetchmany(batch)
        if not chunk:
            break
        records: list[Sequence[Any]] = []
        for raw in chunk:
            cells = [convert(v) for convert, v in zip(converters, raw, strict=True)]
            if table in _SEALED_TABLES:
                named = dict(zip(columns, cells, strict=True))
                reseal.row(table, named)
                cells = [named[c] for c in columns]
            records.append(cells)
        await dst.copy_records_to_table(table, records=records, columns=columns)  # type: ignore[attr-defined]
        done += len(chunk)
        progress(f"{table}: {done}/{total}")
    if total == 0:
        progress(f"{table}: 0/0")
    return done


async def copy(
    db: Path,
    dsn: str,
    old: Vault,
    new: Vault,
    *,
    batch: int = 5000,
    progress: Progress = lambda line: None,
) -> Copied:
    """Copy the SQLite hub at ``db`` into the empty PostgreSQL database at ``dsn``; secrets
    re-sealed from ``old``'s key to ``new``'s. ``Refused`` (nothing written to the target)
    when the source is in use, the target not empty, or a key does not fit."""
    src = open_source(db)
    try:
        _check_tables(src)
        head = int(src.execute(_SQLITE_HEAD).fetchone()[0])
        dst = await connect_target(dsn)
        try:
            foreign = await _foreign_tables(dst)
            if foreign:
                raise Refused(f"the target database is not empty: it holds the tables {foreign}")
            await pg_schema.migrate(dst)
            try:
                await pg_schema.check_vault(dst, new)
            except errors.VaultError as exc:
                raise Refused(str(exc)) from None
            counts = await _copy_all(src, dst, _Resealer(old, new), head, batch, progress)
        finally:
            await dst.close()
    finally:
        src.execute("ROLLBACK")  # nothing was written: this only releases the lock
        src.close()
    return Copied(head, counts)


async def _copy_all(
    src: sqlite3.Connection,
    dst: Session,
    reseal: _Resealer,
    head: int,
    batch: int,
    progress: Progress,
) -> dict[str, int]:
    tx = dst.transaction()
    await tx.start()
    try:
        # log_head locked first (FOR UPDATE in _non_empty): a hub appending meanwhile waits.
        non_empty = await _non_empty(dst)
        if non_empty:
            raise Refused(f"the target database is not empty: {', '.join(non_empty)} hold rows")
        counts = {}
        for table, order in TABLES:
            counts[table] = await _copy_table(src, dst, table, order, reseal, batch, progress)
        await dst.execute("UPDATE log_head SET last_offset = $1", head)
        for table, column in _IDENTITIES:
            await dst.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                f" COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            )
    except BaseException:
        await tx.rollback()
        raise
    await tx.commit()
    progress(f"committed: head {head}")
    return counts
