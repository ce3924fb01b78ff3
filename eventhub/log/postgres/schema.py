"""The schema's version and its migrations (``migrations/NNNN_*.sql``, one transaction each),
and the vault's check row (``log/sealing.py``: a start with the wrong key is refused).

Several processes may start at once on one database: each migrates under one
transaction-scoped advisory lock, so exactly one runs a migration and the others find it
done."""

from __future__ import annotations

import importlib.resources
import logging

from eventhub.log import sealing
from eventhub.log.postgres.connection import Session
from eventhub.vault import Vault

log = logging.getLogger(__name__)

# The check SQLite databases hold too, so a hub migrated from SQLite keeps its key. (Private
# in log/sealing.py, which this slice does not edit: the lead may make them public.)

# pg_advisory_xact_lock key for migrations: any constant no other lock of ours uses.
_MIGRATION_LOCK = 0x6576_656E_7468_7562  # "eventhub"


def _migrations() -> list[tuple[int, str]]:
    folder = importlib.resources.files("eventhub.log.postgres") / "migrations"
    found = [
        (int(entry.name.split("_", 1)[0]), entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found)


async def migrate(conn: Session) -> int:
    """Bring the schema to the newest version; returns it. Safe to run from several
    processes at once."""
    version = 0
    for number, script in _migrations():
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            version = int(
                await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            )
            if number > version:
                await conn.execute(script)  # simple protocol: many statements in one call
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
                log.info("database migrated to schema version %d", number)
                version = number
        except BaseException:
            await tx.rollback()
            raise
        await tx.commit()
    return version


async def check_vault(conn: Session, sealer: Vault) -> None:
    """Write the vault's check on a new database, else verify that ``sealer`` opens it."""
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        check = await conn.fetchval("SELECT value FROM vault WHERE name = 'check'")
        if check is None:
            await conn.execute(
                "INSERT INTO vault (name, value) VALUES ('check', $1)",
                sealing.seal_check(sealer),
            )
    except BaseException:
        await tx.rollback()
        raise
    await tx.commit()
    if check is not None:
        sealing.verify_check(
            sealer,
            str(check),
            "the secret key does not open the secrets sealed in this PostgreSQL database",
        )
