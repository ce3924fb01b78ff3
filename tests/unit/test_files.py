"""Private files: the database's directory and files are narrowed, other people's folders
are not."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventhub import files


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    # The usual 022, so a file that comes out private was made so by files.py.
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_database_gets_a_private_directory_and_file(tmp_path: Path) -> None:
    db = tmp_path / "a" / "data" / "eventhub.db"
    files.secure_database(db)
    assert mode(db.parent) == 0o700 and mode(db) == 0o600 and db.stat().st_size == 0


def test_existing_files_and_the_hubs_own_directory_are_narrowed(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    db = folder / "eventhub.db"
    for name in ("eventhub.db", "eventhub.db-wal", "eventhub.db-shm", "eventhub.db.key"):
        (folder / name).write_bytes(b"")
        (folder / name).chmod(0o644)
    files.secure_database(db)
    assert mode(folder) == 0o700
    for name in ("eventhub.db", "eventhub.db-wal", "eventhub.db-shm"):
        assert mode(folder / name) == 0o600, name


def test_a_directory_that_holds_other_files_is_left_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "home"
    folder.mkdir()
    folder.chmod(0o755)
    (folder / "notes.txt").write_text("not ours")
    files.secure_database(folder / "eventhub.db")
    assert mode(folder) == 0o755
    assert mode(folder / "eventhub.db") == 0o600
    assert "chmod 700" in caplog.text


def test_a_sticky_shared_directory_is_never_narrowed(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    files.secure_database(shared / "eventhub.db")
    assert mode(shared) == 0o1777


def test_write_private_refuses_to_replace(tmp_path: Path) -> None:
    path = tmp_path / "eventhub.db.backup-1"
    files.write_private(path, b"copy")
    assert mode(path) == 0o600 and path.read_bytes() == b"copy"
    with pytest.raises(FileExistsError):
        files.write_private(path, b"other")
