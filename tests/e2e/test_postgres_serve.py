"""``eventhub serve`` on PostgreSQL (SPEC §9): the ``database`` setting refused at start in one
line when it cannot be used, the URL's password never shown (logs, errors, ``/readyz``,
``/metrics``), and backups left to ``pg_dump`` with a clear 501. Real processes, the session's
PostgreSQL (tests/postgres.py); delivery and durability on PostgreSQL are the parameterised
``test_delivery*.py`` and ``test_durability.py``."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import TEST_SECRET_KEY, free_port
from tests.e2e.helpers import ServerProcess, bearer, error_of
from tests.e2e.test_backup import backup_cli
from tests.e2e.test_startup_errors import assert_one_line, serve

PASSWORD = "hunter2-not-to-be-shown"


def test_a_database_that_is_not_a_postgresql_url_is_refused(tmp_path: Path) -> None:
    refused = serve(
        tmp_path / "e.db",
        {"EVENTHUB_DATABASE": f"mysql://app:{PASSWORD}@127.0.0.1/hub"},
    )
    assert_one_line(refused, "setting 'database'")
    assert PASSWORD not in refused.stderr


def test_postgresql_without_a_secret_key_is_refused(tmp_path: Path) -> None:
    refused = serve(tmp_path / "e.db", {}, "--database", "postgresql://app@127.0.0.1/hub")
    assert_one_line(refused, "EVENTHUB_SECRET_KEY")
    assert "PostgreSQL" in refused.stderr


@pytest.mark.parametrize(
    "where",
    [
        # Nothing listens on the port: refused at once (only 127.0.0.1 is ever dialled).
        f"127.0.0.1:{free_port()}/hub",
        # A socket directory with no server in it.
        "/hub?host=/nonexistent-eventhub-socket-dir",
    ],
)
def test_an_unreachable_database_is_one_line_naming_host_and_db(tmp_path: Path, where: str) -> None:
    refused = serve(
        tmp_path / "e.db",
        {
            "EVENTHUB_DATABASE": f"postgresql://app:{PASSWORD}@{where}",
            "EVENTHUB_SECRET_KEY": TEST_SECRET_KEY,
        },
        "--database",  # the flag wins over the variable: the same URL either way
        f"postgresql://app:{PASSWORD}@{where}",
    )
    assert_one_line(refused, "setting 'database': cannot connect to ")
    assert PASSWORD not in refused.stderr
    host = "127.0.0.1" if where.startswith("127") else "/nonexistent-eventhub-socket-dir"
    assert f"{host}" in refused.stderr and "/hub" in refused.stderr
    assert not (tmp_path / "e.db").exists(), "nothing written at 'data'"


async def test_the_password_is_never_shown_and_backups_are_pg_dumps(
    tmp_path: Path, pg_dsn: str
) -> None:
    # pgserver trusts local connections: the password is carried, unused, like a real one.
    assert "postgres:@" in pg_dsn
    dsn = pg_dsn.replace("postgres:@", f"postgres:{PASSWORD}@")
    hub = ServerProcess(
        tmp_path / "eventhub.db",
        tmp_path / "hub.log",
        {
            "EVENTHUB_DATABASE": dsn,
            "EVENTHUB_SECRET_KEY": TEST_SECRET_KEY,
            "EVENTHUB_LOG_LEVEL": "debug",
        },
    )
    try:
        async with aiohttp.ClientSession() as http:
            await hub.ready(http)
            shown = []
            for path in ("/readyz", "/metrics", "/healthz"):
                async with http.get(hub.url + path, headers=bearer()) as r:
                    shown.append(await r.text())
            async with http.get(hub.url + "/admin/backup", headers=bearer()) as r:
                error = await error_of(r, 501, "not_implemented")
            assert "pg_dump" in error["message"]
            code, out, err = await backup_cli(tmp_path / "copy.db", hub.url)
            assert code != 0 and out == ""
            assert len(err.splitlines()) == 1 and "pg_dump" in err, err
            assert not (tmp_path / "copy.db").exists()
            assert not (tmp_path / "copy.db.partial").exists()
        hub.signal(signal.SIGTERM)
        assert await hub.exited() == 0
    finally:
        hub.close()
    assert not (tmp_path / "eventhub.db").exists(), "nothing written at 'data'"
    assert all(PASSWORD not in text for text in shown)
    assert "# TYPE" in shown[1], "the metrics were read"
    assert PASSWORD not in hub.log_path.read_text()
