"""``eventhub backup PATH``: a consistent copy of a running hub's database, over the API
(``GET /admin/backup``), so it works from another machine.

The copy is written to ``PATH.partial`` (0600), checked (every byte the hub announced, then
SQLite's ``quick_check``), made durable, and only then renamed to ``PATH``: a ``PATH`` that
exists is always a whole, sound copy. An existing ``PATH`` is never overwritten (exit 2).
Restore: ``eventhub serve --data PATH``, with the key file the hub names copied beside it as
``PATH.key`` (or the same ``EVENTHUB_SECRET_KEY``); README, *Backup and restore*."""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from eventhub import files
from eventhub.cli._client import Commands, _refusal, client

CHUNK = 1024 * 1024
TIMEOUT = 3600.0  # seconds any one read may wait


def add(commands: Commands) -> None:
    p = client(
        commands.add_parser(
            "backup",
            help="copy a running hub's database to PATH (online, consistent)",
            description="Take a consistent copy of the hub's database while it serves. The"
            " copy needs the hub's key file (or EVENTHUB_SECRET_KEY) to open its secrets: the"
            " key is never part of the backup.",
        )
    )
    p.add_argument("path", type=Path, help="the file to write (must not exist)")
    p.set_defaults(func=_backup)


def _backup(args: argparse.Namespace) -> int:
    target: Path = args.path
    partial = target.with_name(target.name + ".partial")
    if target.exists() or partial.exists():
        print(
            f"eventhub: {target if target.exists() else partial} exists; give a new path",
            file=sys.stderr,
        )
        return 2
    if not args.key:
        raise SystemExit("eventhub: give an API key with --key or EVENTHUB_KEY")
    request = urllib.request.Request(
        args.url.rstrip("/") + "/admin/backup", headers={"Authorization": f"Bearer {args.key}"}
    )
    try:
        fd = files.create_private(partial)
    except OSError as exc:
        print(f"eventhub: cannot write {partial}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        with os.fdopen(fd, "wb") as out:
            received, expected, headers = _download(args, request, out)
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and received != expected:
            raise SystemExit(
                f"eventhub: the backup stream ended after {received} of {expected} bytes;"
                " nothing was written, try again"
            )
        problem = _check(partial)
        if problem is not None:
            raise SystemExit(f"eventhub: the copy fails SQLite's check ({problem}); try again")
        os.rename(partial, target)
        _sync_directory(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    key_file = headers.get("eventhub-key-file")
    print(
        f"backup written to {target} ({received} bytes, offsets up to"
        f" {headers.get('eventhub-last-offset', '?')})"
    )
    if key_file:
        print(
            f"its secrets need the key file {key_file}: copy it beside the backup as"
            f" {target.name}.key (it is not in the backup)"
        )
    else:
        print("its secrets need the hub's EVENTHUB_SECRET_KEY (it is not in the backup)")
    return 0


def _download(
    args: argparse.Namespace, request: urllib.request.Request, out: IO[bytes]
) -> tuple[int, int | None, dict[str, str]]:
    """Stream the snapshot into ``out``: (bytes received, bytes announced, headers)."""
    received = 0
    try:
        # The answer starts once the snapshot is made: minutes for a large database.
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            length = response.headers.get("Content-Length")
            headers = {k.lower(): v for k, v in response.headers.items()}
            while chunk := response.read(CHUNK):
                out.write(chunk)
                received += len(chunk)
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"eventhub: {exc.code} {_refusal(exc.read())}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise SystemExit(f"eventhub: backup from {args.url} failed: {reason}") from None
    return received, None if length is None else int(length), headers


def _check(path: Path) -> str | None:
    """None if SQLite finds the copy sound; else what it says. Read-only and immutable: the
    check leaves no -wal or -shm beside the copy."""
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            (verdict,) = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return str(exc)
    return None if verdict == "ok" else str(verdict)


def _sync_directory(folder: Path) -> None:
    """Make the rename durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
