from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from eventhub import errors, settings


def test_flags_beat_environment_beat_file_beat_defaults(tmp_path: Path) -> None:
    config = tmp_path / "eventhub.toml"
    config.write_text('port = 9000\nhost = "0.0.0.0"\nmax_batch_events = 5\n')
    env = {"EVENTHUB_PORT": "9100", "EVENTHUB_MAX_BATCH_EVENTS": "7"}
    built = settings.load({"port": 9200}, env, config)
    assert built.port == 9200
    assert built.max_batch_events == 7
    assert built.host == "0.0.0.0"
    assert built.max_body_bytes == 10 * 1024 * 1024


def test_config_file_from_environment_and_eventhub_table(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[eventhub]\ndata = "~/x.db"\n')
    built = settings.load({}, {"EVENTHUB_CONFIG": str(config)})
    assert built.data == Path("~/x.db").expanduser()


def test_settings_are_frozen() -> None:
    built = settings.load({}, {})
    with pytest.raises(AttributeError):
        built.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "env", [{"EVENTHUB_PORT": "eighty"}, {"EVENTHUB_SYNCHRONOUS": "sometimes"}]
)
def test_bad_values_are_refused_with_the_setting_named(env: dict[str, str]) -> None:
    with pytest.raises(errors.EventHubError):
        settings.load({}, env)


def test_the_secret_key_is_checked_and_never_shown() -> None:
    key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"  # bytes 0..31, base64url
    built = settings.load({}, {"EVENTHUB_SECRET_KEY": key})
    assert built.secret_key == key and key not in repr(built)
    with pytest.raises(errors.InvalidRequest, match="EVENTHUB_SECRET_KEY") as caught:
        settings.load({}, {"EVENTHUB_SECRET_KEY": key[:-4]})
    assert key[:-4] not in str(caught.value)


def test_every_number_and_word_setting_has_a_rule() -> None:
    """A new setting cannot skip validation: each int, float and plain str field has a range
    or a choice in ``settings.RULES`` (the rest: paths, keys, booleans, lists, host)."""
    checked_elsewhere = {"host", "admin_key", "secret_key"}
    for field in dataclasses.fields(settings.Settings):
        if field.type in ("int", "float", "str") and field.name not in checked_elsewhere:
            assert field.name in settings.RULES, field.name
    for name, rule in settings.RULES.items():
        default = getattr(settings.Settings(), name)
        if isinstance(rule, settings.Range):
            assert rule.admits(default), name
        else:
            assert default in rule.values, name


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"EVENTHUB_PORT": "99999"}, "'port'"),
        ({"EVENTHUB_PORT": "0"}, "'port'"),
        ({"EVENTHUB_RETRY_AFTER_SECONDS": "0"}, "'retry_after_seconds'"),
        ({"EVENTHUB_SUSPEND_AFTER": "nan"}, "'suspend_after'"),
        ({"EVENTHUB_SECRET_ROTATION_OVERLAP": "-1"}, "'secret_rotation_overlap'"),
        ({"EVENTHUB_CHECKPOINT_INTERVAL": "inf"}, "'checkpoint_interval'"),
        ({"EVENTHUB_DELIVERY_INITIAL_DELAY": "600"}, "'delivery_initial_delay'"),
        ({"EVENTHUB_ADMIN_KEY": ""}, "'admin_key'"),
    ],
)
def test_out_of_range_values_are_refused_naming_the_setting(
    env: dict[str, str], names: str
) -> None:
    with pytest.raises(errors.InvalidRequest, match=names):
        settings.load({}, env)


def test_edges_of_the_ranges_and_words_in_any_case_are_accepted() -> None:
    built = settings.load(
        {},
        {
            "EVENTHUB_PORT": "65535",
            "EVENTHUB_DELIVERY_MAX_RETRIES": "0",
            "EVENTHUB_SECRET_ROTATION_OVERLAP": "0",
            "EVENTHUB_LOG_LEVEL": "WARNING",
            "EVENTHUB_SYNCHRONOUS": " Normal ",
            "EVENTHUB_ADMIN_KEY": "x" * settings.MIN_ADMIN_KEY_CHARS,
        },
    )
    assert (built.port, built.log_level, built.synchronous) == (65535, "warning", "normal")


def test_unknown_keys_in_a_settings_file_are_refused_by_name(tmp_path: Path) -> None:
    config = tmp_path / "eventhub.toml"
    config.write_text("[eventhub]\nport = 9000\n[eventhub.extra]\nx = 1\n")
    with pytest.raises(errors.InvalidRequest, match="unknown setting 'extra'"):
        settings.load({}, {}, config)
    # Beside an [eventhub] table, other tables are the file's business, not ours.
    config.write_text("[eventhub]\nport = 9000\n[other]\nx = 1\n")
    assert settings.load({}, {}, config).port == 9000
