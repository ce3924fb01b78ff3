"""Secrets at rest in the SQLite store (SPEC §8): which key opens a database, the *place* of
each secret (the associated data of its seal: table, column, row), and the start-up step
that seals rows older versions wrote in plain text.

Where the key comes from, in order:

1. ``secret_key`` (``EVENTHUB_SECRET_KEY``): a key file is then neither read nor made;
2. the key file beside the database (``eventhub.db.key``), created 0600 on the first start.

The ``vault`` table keeps a known text sealed with the database's key. A start whose key
does not open it is refused before anything is sealed with the wrong key; so is a start
without ``EVENTHUB_SECRET_KEY`` whose key file has gone missing (a new key would not open
the old secrets, and silently making one would lose them).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from eventhub import errors, files, vault
from eventhub.vault import Vault

log = logging.getLogger(__name__)

_CHECK_PLACE = "vault.check"
_CHECK_TEXT = "eventhub secret key check"
_SETTING = "setting 'secret_key' (EVENTHUB_SECRET_KEY)"


def source_secret(name: str) -> str:
    return f"sources.secret/{name}"


def subscription_secrets(sub_id: str) -> str:
    return f"subscriptions.secrets/{sub_id}"


def subscription_headers(sub_id: str) -> str:
    return f"subscriptions.config.headers/{sub_id}"


def key_file_of(db: Path) -> Path:
    return db.with_name(db.name + ".key")


# -- the key -----------------------------------------------------------------------------------


def vault_for(db: Path, secret_key: str | None) -> Vault:
    """The vault that opens ``db``'s secrets, after making its directory and files private.

    Synchronous and run while the hub is built, before the server starts: a key that does
    not fit is one line and exit status 2 from ``eventhub serve``, not a failed lifespan."""
    files.secure_database(db)
    check = _stored_check(db)
    if secret_key is not None:
        key, origin = vault.parse_key(secret_key, _SETTING), _SETTING
    else:
        path = key_file_of(db)
        found = vault.read_key_file(path)
        if found is None and check is not None:
            raise errors.VaultError(
                f"{db} holds secrets sealed with a key that is not here: restore the key file"
                f" {path} or set EVENTHUB_SECRET_KEY to the key they were sealed with"
            )
        key = found if found is not None else vault.create_key_file(path)
        origin = f"key file {path}"
    sealer = Vault(key)
    if check is not None:
        verify_check(sealer, check, f"{origin} does not open the secrets sealed in {db}")
    return sealer


def seal_check(sealer: Vault) -> str:
    """The check a new database keeps (its ``vault`` row named ``check``): whichever key
    opens it opens the database's secrets."""
    return sealer.seal(_CHECK_TEXT, _CHECK_PLACE)


def opens_check(sealer: Vault, check: str) -> bool:
    """Whether ``sealer``'s key is the one that sealed ``check`` (and the secrets beside it)."""
    try:
        sealer.unseal(check, _CHECK_PLACE)
    except errors.VaultError:
        return False
    return True


def verify_check(sealer: Vault, check: str, message: str) -> None:
    """Raise ``VaultError`` (``message``, and what to do) unless ``sealer`` opens ``check``."""
    if not opens_check(sealer, check):
        raise errors.VaultError(f"{message}: start with the key they were sealed with")


def _stored_check(db: Path) -> str | None:
    """The sealed check text of an existing database; None for a new one, or one older than
    sealing."""
    if db.stat().st_size == 0:
        return None
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'vault'"
        ).fetchone()
        if has_table is None:
            return None
        row = conn.execute("SELECT value FROM vault WHERE name = 'check'").fetchone()
        return None if row is None else str(row[0])
    finally:
        conn.close()


# -- sealing rows written in plain text --------------------------------------------------------


def seal_plaintext(conn: sqlite3.Connection, sealer: Vault) -> int:
    """After the SQL migrations: check the key (writing the check on a database's first
    sealed start), then seal every secret still in plain text, all in one transaction.
    Idempotent: a sealed value has the ``v1:`` prefix and is left alone. Returns how many
    values it sealed."""
    # secure_delete zeroes the cells the plaintext leaves behind, instead of leaving it in
    # the page's free space; for this transaction only (it costs writes on every delete).
    (secure_delete,) = conn.execute("PRAGMA secure_delete").fetchone()
    conn.execute("PRAGMA secure_delete = ON")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            sealed = _seal_rows(conn.cursor(), sealer)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute(f"PRAGMA secure_delete = {int(secure_delete)}")
    if sealed:
        # The sealed pages are in the WAL; the plaintext ones stay in the database file
        # until a checkpoint writes over them, and an old WAL may hold plaintext frames.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        log.info("sealed %d secrets stored in plain text by an earlier version", sealed)
    return sealed


def _seal_rows(cur: sqlite3.Cursor, sealer: Vault) -> int:
    row = cur.execute("SELECT value FROM vault WHERE name = 'check'").fetchone()
    if row is None:
        cur.execute(
            "INSERT INTO vault (name, value) VALUES ('check', ?)",
            (seal_check(sealer),),
        )
    else:
        verify_check(sealer, str(row[0]), "the secret key does not open this database's secrets")
    count = 0
    for name, secret in cur.execute("SELECT name, secret FROM sources").fetchall():
        if not vault.is_sealed(_text(secret)):
            sealed = sealer.seal(_text(secret), source_secret(name))
            cur.execute("UPDATE sources SET secret = ? WHERE name = ?", (sealed, name))
            count += 1
    rows = cur.execute("SELECT id, config, secrets FROM subscriptions").fetchall()
    for sub_id, config_text, secrets_text in rows:
        config: dict[str, Any] = orjson.loads(config_text)
        secrets = _text(secrets_text)
        headers = config.get("headers")
        before = count
        if isinstance(headers, dict):  # sealed, it is a string
            config["headers"] = seal_headers(sealer, sub_id, headers)
            count += 1
        if not vault.is_sealed(secrets):
            secrets = sealer.seal(secrets, subscription_secrets(sub_id))
            count += 1
        if count == before:
            continue
        cur.execute(
            "UPDATE subscriptions SET config = ?, secrets = ? WHERE id = ?",
            (orjson.dumps(config).decode(), secrets, sub_id),
        )
    return count


def seal_headers(sealer: Vault, sub_id: str, headers: dict[str, str]) -> str:
    """Callback headers sealed as one value: their names are no secret (reads show them), but
    sealed together no value can be swapped with another's."""
    return sealer.seal(orjson.dumps(headers).decode(), subscription_headers(sub_id))


def open_headers(sealer: Vault, sub_id: str, sealed: str) -> dict[str, str]:
    headers: dict[str, str] = orjson.loads(sealer.unseal(sealed, subscription_headers(sub_id)))
    return headers


def _text(value: str | bytes) -> str:
    # Older versions bound orjson's bytes, which SQLite keeps as a BLOB in a TEXT column.
    return value.decode("utf-8") if isinstance(value, bytes) else value


def process_secret(definition_id: str) -> str:
    return f"process_definitions.secret/{definition_id}"


def process_version(definition_id: str, version: int) -> str:
    return f"process_versions.body/{definition_id}/{version}"
