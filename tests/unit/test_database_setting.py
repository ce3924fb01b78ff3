"""The ``database`` setting (log/dsn.py, settings.py): which values mean PostgreSQL, and that
a URL's password never survives into anything shown."""

from __future__ import annotations

import pytest

from eventhub import errors, settings
from eventhub.log import dsn

KEY = "ZXZlbnRodWItdGVzdC1zZWNyZXQta2V5LTAxMjM0NTY="


@pytest.mark.parametrize(
    ("url", "shown", "where"),
    [
        ("postgresql://app:s3cret@db:5432/hub", "postgresql://app:***@db:5432/hub", "db:5432/hub"),
        ("postgres://app@db/hub?password=s3cret", "postgres://app@db/hub?password=***", "db/hub"),
        ("postgresql://app:p@s3cret@db/hub", "postgresql://app:***@db/hub", "db/hub"),
        ("postgresql:///hub?host=/run/pg", "postgresql:///hub?host=/run/pg", "/run/pg/hub"),
        ("postgresql://[s3cret", "postgresql://***", "postgresql://***"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str, where: str) -> None:
    assert dsn.is_postgres(url)
    assert dsn.masked(url) == shown
    assert dsn.where(url) == where
    assert "s3cret" not in dsn.masked(url) + dsn.where(url)


def test_a_drivers_message_is_scrubbed_as_written_and_decoded() -> None:
    url = "postgresql://app:p%40ss@db/hub?password=other"
    assert dsn.scrub("bad p@ss, p%40ss or other", url) == "bad ***, *** or ***"


@pytest.mark.parametrize("value", ["sqlite:///x.db", "/var/lib/x.db", "postgresql:/hub", "pg://h"])
def test_only_postgresql_urls_name_postgresql(value: str) -> None:
    assert not dsn.is_postgres(value)
    with pytest.raises(errors.InvalidRequest, match="setting 'database'"):
        settings.load({"database": value, "secret_key": KEY}, environ={})


def test_empty_is_sqlite_and_postgresql_needs_the_key() -> None:
    assert settings.load({}, environ={"EVENTHUB_DATABASE": ""}).database == ""
    with pytest.raises(errors.InvalidRequest, match="EVENTHUB_SECRET_KEY"):
        settings.load({}, environ={"EVENTHUB_DATABASE": "postgresql://app@db/hub"})
    loaded = settings.load(
        {}, environ={"EVENTHUB_DATABASE": "postgresql://a:s3cret@db/h", "EVENTHUB_SECRET_KEY": KEY}
    )
    assert loaded.database == "postgresql://a:s3cret@db/h"
    assert "s3cret" not in repr(loaded)
