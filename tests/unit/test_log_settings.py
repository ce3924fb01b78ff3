"""The settings of the logs and the webhook handshake, and the handshake's consent rule."""

from __future__ import annotations

import pytest

from eventhub import errors, settings
from eventhub.api.handshake import consent


def test_log_format_and_origins_are_read_and_checked() -> None:
    env = {
        "EVENTHUB_LOG_FORMAT": "json",
        "EVENTHUB_WEBHOOK_ALLOWED_ORIGINS": "a.example, b.example",
    }
    built = settings.load({}, env)
    assert built.log_format == "json"
    assert built.webhook_allowed_origins == ("a.example", "b.example")
    defaults = settings.load({}, {})
    assert defaults.log_format == "text" and defaults.webhook_allowed_origins == ()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"EVENTHUB_LOG_FORMAT": "xml"}, "log_format"),
        ({"EVENTHUB_WEBHOOK_ALLOWED_ORIGINS": "a b.example"}, "webhook_allowed_origins"),
        ({"EVENTHUB_WEBHOOK_ALLOWED_ORIGINS": "bücher.example"}, "webhook_allowed_origins"),
    ],
)
def test_bad_values_are_refused_naming_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(errors.EventHubError, match=named):
        settings.load({}, env)


def test_consent_is_the_origin_asked_for_or_a_star() -> None:
    assert consent((), "a.example") is None
    assert consent(("a.example",), "A.Example") == "A.Example"
    assert consent(("a.example",), "b.example") is None
    assert consent(("a.example",), " ") is None
    assert consent(("a.example", "*"), "b.example") == "*"
