"""``eventhub migrate --from PATH.db --to postgresql://…``: copy a stopped SQLite hub into an
empty PostgreSQL database (``log/migrate.py`` does the copy and says how).

Keys: the SQLite hub's secrets open with its key file (``PATH.db.key``, or ``--from-key-file``),
else with ``EVENTHUB_SECRET_KEY`` (a hub run with it has no key file); they are sealed again
with ``EVENTHUB_SECRET_KEY``, the key the PostgreSQL hubs will run with (required). Keys come
from files and the environment only, never the command line (``ps`` shows it).

Progress is one line per batch on stderr; a refusal is one line and exit status 2."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from eventhub import errors, vault
from eventhub.cli._client import Commands
from eventhub.log import migrate
from eventhub.vault import Vault

_KEY_ENV = "EVENTHUB_SECRET_KEY"
_DATABASE_ENV = "EVENTHUB_DATABASE"


def add(commands: Commands) -> None:
    p = commands.add_parser(
        "migrate",
        help="copy a stopped SQLite hub into an empty PostgreSQL database",
        description="Copy every event (same offsets), the catalogue, keys, sources,"
        " subscriptions with their cursors, process definitions and instances from a stopped"
        " SQLite hub into an empty PostgreSQL database, in one transaction. Secrets are"
        " re-sealed with EVENTHUB_SECRET_KEY, which the PostgreSQL hubs then run with.",
    )
    p.add_argument("--from", dest="source", type=Path, required=True, help="the SQLite database")
    p.add_argument(
        "--to",
        dest="target",
        default=os.environ.get(_DATABASE_ENV),
        help=f"postgresql://… of an empty database (default: {_DATABASE_ENV}, which keeps a"
        " password out of ps)",
    )
    p.add_argument(
        "--from-key-file",
        type=Path,
        help="the SQLite hub's key file (default: PATH.db.key if it exists, else"
        " EVENTHUB_SECRET_KEY)",
    )
    p.add_argument("--batch", type=int, default=5000, help="rows per batch (default 5000)")
    p.set_defaults(func=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    try:
        old, new = _keys(args)
        copied = asyncio.run(
            migrate.copy(args.source, args.target, old, new, batch=args.batch, progress=_progress)
        )
    except errors.EventHubError as exc:
        print(f"eventhub: {exc}", file=sys.stderr)
        return 2
    total = sum(copied.rows.values())
    print(f"migrated {total} rows, head offset {copied.head}, into the PostgreSQL database")
    return 0


def _keys(args: argparse.Namespace) -> tuple[Vault, Vault]:
    """The SQLite hub's vault (it must open its secrets) and the target's."""
    if not args.target:
        raise migrate.Refused(f"give the target database: --to postgresql://… or {_DATABASE_ENV}")
    if args.batch < 1:
        raise migrate.Refused("--batch must be at least 1")
    secret_key = os.environ.get(_KEY_ENV)
    if not secret_key:
        raise migrate.Refused(
            f"set {_KEY_ENV}: a PostgreSQL hub requires it, and the secrets are sealed with it"
        )
    new = Vault(vault.parse_key(secret_key, _KEY_ENV))
    db: Path = args.source
    if not db.is_file():
        raise migrate.Refused(f"{db} does not exist")
    # Before this process opens the database (log/migrate.py, held_by_another says why).
    if migrate.held_by_another(db):
        raise migrate.Refused(f"{db} is open in another process: stop the hub first")
    return migrate.source_vault(db, args.from_key_file, secret_key), new


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
