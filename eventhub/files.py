"""Private files (SPEC §8): the data directory 0700; the database, its WAL and SHM, the key
file and backups 0600. Applied at every start, so files an older version left 0644/0755 are
narrowed too, and before SQLite opens anything: SQLite creates ``-wal``, ``-shm`` and
``-journal`` with the mode of the database file, so a private database keeps them private.

A backup's snapshot (eventhub/backup.py) is made 0600 beside the database and named after it
(``eventhub.db.backup-…``), so ``private_directory`` still sees a directory of the hub's own
files; the CLI writes its copy with ``create_private``.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from eventhub import errors

log = logging.getLogger(__name__)

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
# What SQLite keeps beside a database file.
SIDECARS = ("-wal", "-shm", "-journal")


def secure_database(db: Path) -> None:
    """Make ``db``'s directory and files private, creating the directory and an empty
    database file (SQLite takes an empty file as a new database) when they are missing.

    A path that cannot hold a database (a file where a directory belongs, a directory where
    the database belongs, no permission) is an ``InvalidRequest`` naming the setting and the
    path: ``eventhub serve`` prints it as one line and exits 2."""
    try:
        if db.exists() and not db.is_file():
            raise errors.InvalidRequest(
                f"setting 'data': {str(db)!r} is not a file (give the database file's path,"
                " not its directory)"
            )
        private_directory(db.parent, owned_prefix=db.name)
        ensure_private(db)
        for suffix in SIDECARS:
            make_private(db.with_name(db.name + suffix))
    except OSError as exc:
        where = exc.filename if exc.filename is not None else db
        raise errors.InvalidRequest(
            f"setting 'data': cannot use {str(db)!r}: {exc.strerror or exc} ({where})"
        ) from None


def private_directory(path: Path, owned_prefix: str) -> None:
    """Create ``path`` 0700, or narrow it to 0700 when it exists and is the hub's own: owned
    by this user, not sticky (``/tmp`` is shared by design), and holding nothing but files
    whose names start with ``owned_prefix`` (the database's). Any other directory is left
    as it is, with a warning: narrowing a home or a shared folder would break its other
    users."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=DIRECTORY_MODE)
    except FileExistsError:
        pass
    else:
        os.chmod(path, DIRECTORY_MODE)  # mkdir's mode is filtered by the umask
        return
    info = path.stat()
    if stat.S_IMODE(info.st_mode) & 0o077 == 0:
        return
    ours = info.st_uid == os.geteuid() and not info.st_mode & stat.S_ISVTX
    if ours and all(entry.startswith(owned_prefix) for entry in os.listdir(path)):
        os.chmod(path, DIRECTORY_MODE)
        return
    log.warning(
        "data directory %s is %o and holds more than the database: left as it is; make it"
        " private (chmod 700) or give the database a directory of its own",
        path,
        stat.S_IMODE(info.st_mode),
    )


def make_private(path: Path) -> None:
    """Narrow an existing file to 0600; nothing when it does not exist."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode != FILE_MODE:
        try:
            os.chmod(path, FILE_MODE)
        except PermissionError:
            log.warning("%s is %o and not ours to change: make it 0600", path, mode)


def create_private(path: Path) -> int:
    """Create ``path`` 0600 whatever the umask and return its descriptor (write only);
    ``FileExistsError`` if it exists."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def ensure_private(path: Path) -> None:
    """Create ``path`` empty and 0600 if missing, else narrow it to 0600."""
    try:
        os.close(create_private(path))
    except FileExistsError:
        make_private(path)


def write_private(path: Path, data: bytes) -> None:
    """Write a new file 0600 and make it durable; ``FileExistsError`` if it exists."""
    fd = create_private(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
