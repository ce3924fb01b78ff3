"""Settings, built once at the edge: flags override ``EVENTHUB_*`` environment variables,
which override a TOML file (``--config`` or ``EVENTHUB_CONFIG``), which overrides defaults."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eventhub import errors


def default_data_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "eventhub" / "eventhub.db"


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data: Path = dataclasses.field(default_factory=default_data_path)
    admin_key: str | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    max_batch_events: int = 10_000
    max_concurrent_ingests: int = 1024
    retry_after_seconds: int = 1
    body_timeout: float = 30.0
    synchronous: str = "full"
    checkpoint_interval: float = 1.0
    log_level: str = "info"
    # catalogue
    catalog_file: Path | None = None
    # delivery
    max_subscriptions: int = 10_000
    delivery_max_retries: int = 5
    delivery_initial_delay: float = 1.0
    delivery_max_delay: float = 300.0
    retry_after_cap: float = 3600.0
    recovery_initial_delay: float = 30.0
    recovery_max_delay: float = 1800.0
    suspend_after: float = 8 * 3600.0
    delivery_timeout: float = 30.0
    delivery_connect_timeout: float = 5.0
    delivery_connections: int = 256
    secret_rotation_overlap: float = 24 * 3600.0


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _convert(name: str, value: Any) -> Any:
    kind = _FIELDS[name].type
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind.startswith("Path"):
            return None if value is None else Path(str(value)).expanduser()
    except (TypeError, ValueError):
        raise errors.InvalidRequest(f"setting {name!r}: {value!r} is not a valid {kind}") from None
    return None if value is None else str(value)


def load(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = config_file or (
        Path(environ["EVENTHUB_CONFIG"]) if "EVENTHUB_CONFIG" in environ else None
    )
    if config_file is not None:
        with config_file.open("rb") as fh:
            table = tomllib.load(fh)
        table = table.get("eventhub", table)
        for key, value in table.items():
            name = key.replace("-", "_")
            if name in _FIELDS and not isinstance(value, dict):
                values[name] = value
    for name in _FIELDS:
        env = environ.get(f"EVENTHUB_{name.upper()}")
        if env is not None:
            values[name] = env
    for name, value in (flags or {}).items():
        if value is not None and name in _FIELDS:
            values[name] = value
    settings = Settings(**{name: _convert(name, value) for name, value in values.items()})
    if settings.synchronous not in ("full", "normal"):
        raise errors.InvalidRequest("setting 'synchronous' must be 'full' or 'normal'")
    return settings
