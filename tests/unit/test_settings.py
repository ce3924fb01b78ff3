from __future__ import annotations

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
