"""``eventhub serve``: run the hub."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from eventhub import errors, settings
from eventhub.cli._client import Commands


def add(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="run the hub")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8080)")
    serve.add_argument("--data", type=Path, help="SQLite database file")
    serve.add_argument(
        "--database", help="a postgresql:// URL to serve from PostgreSQL (default: SQLite)"
    )
    serve.add_argument("--config", type=Path, help="TOML settings file")
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    flags = {"host": args.host, "port": args.port, "data": args.data, "database": args.database}
    try:
        built = settings.load(flags, config_file=args.config)
    except (errors.EventHubError, OSError) as exc:
        print(f"eventhub: {exc}", file=sys.stderr)
        return 2
    # uvicorn and the app: only this command needs them, and a refused setting does not wait
    # for their import.
    from eventhub import server

    try:
        server.run(built)
    except errors.EventHubError as exc:
        # Raised while building or starting the hub, before the server listens: an unusable
        # data path (files.py), a secret key that does not fit the database
        # (log/sealing.py), a refused catalogue file. One line, no traceback.
        print(f"eventhub: {exc}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as exc:
        # Opening or migrating the database: e.g. the data path is some other file.
        print(f"eventhub: setting 'data': {str(built.data)!r}: {exc}", file=sys.stderr)
        return 2
    return 0
