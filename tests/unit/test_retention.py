"""Retention's pure parts: the age cut-off, which prefix of the oldest events may go, and
its settings."""

from __future__ import annotations

import pytest

from eventhub import errors, settings
from eventhub.clock import rfc3339
from eventhub.log.retention import deletable
from eventhub.retention import DAY, cutoff

NOW = 1_800_000_000.0


def test_cutoff_is_the_receive_time_days_ago() -> None:
    assert cutoff(NOW, 2.0) == rfc3339(NOW - 2 * DAY)
    assert cutoff(NOW, 0.5) == rfc3339(NOW - 0.5 * DAY)


@pytest.mark.parametrize("days", [0.0, float("inf")])
def test_no_age_limit_cuts_nothing(days: float) -> None:
    assert cutoff(NOW, days) is None


OLD, CUT, YOUNG = rfc3339(NOW - 3 * DAY), rfc3339(NOW - 2 * DAY), rfc3339(NOW - DAY)


@pytest.mark.parametrize(
    ("rows", "older_than", "oversize", "expected"),
    [
        ([], CUT, False, None),
        ([(1, OLD), (2, OLD), (3, YOUNG)], CUT, False, 2),
        ([(1, OLD), (2, CUT)], CUT, False, 1),  # received at the cut-off: stays
        ([(1, YOUNG), (2, OLD)], CUT, False, None),  # a prefix only: never past a young one
        ([(1, YOUNG), (2, YOUNG)], CUT, True, 2),  # over the size: any age goes
        ([(1, YOUNG), (2, YOUNG)], None, True, 2),
        ([(1, OLD)], None, False, None),  # no limit set: nothing goes
    ],
)
def test_the_deletable_prefix(
    rows: list[tuple[int, str]], older_than: str | None, oversize: bool, expected: int | None
) -> None:
    assert deletable(rows, older_than, oversize) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RETENTION_DAYS", "-1"),
        ("RETENTION_DAYS", "nan"),
        ("RETENTION_DAYS", "a week"),
        ("RETENTION_BYTES", "-5"),
        ("RETENTION_BYTES", "1.5"),
        ("RETENTION_INTERVAL", "0"),
        ("RETENTION_INTERVAL", "inf"),
    ],
)
def test_bad_retention_settings_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(errors.InvalidRequest, match=name.lower()):
        settings.load(environ={f"EVENTHUB_{name}": value})


def test_retention_is_off_by_default_and_settable() -> None:
    default = settings.load(environ={})
    assert (default.retention_days, default.retention_bytes) == (0.0, 0)
    chosen = settings.load(
        environ={"EVENTHUB_RETENTION_DAYS": "7", "EVENTHUB_RETENTION_BYTES": "1000000"}
    )
    assert (chosen.retention_days, chosen.retention_bytes) == (7.0, 1_000_000)
