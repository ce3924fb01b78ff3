"""Settings, built once at the edge: flags override ``EVENTHUB_*`` environment variables,
which override a TOML file (``--config`` or ``EVENTHUB_CONFIG``), which overrides defaults."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eventhub import errors, vault


def default_data_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "eventhub" / "eventhub.db"


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data: Path = dataclasses.field(default_factory=default_data_path)
    admin_key: str | None = dataclasses.field(default=None, repr=False)
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
    # Per-owner bound on requests in flight, so one tenant's stalled receivers cannot take
    # every connection from another's (SPEC §8).
    delivery_connections_per_owner: int = 128
    # connections (SPEC §8): every route, before anything is authenticated
    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024
    keepalive_timeout: float = 5.0
    max_connections: int = 2048
    # Ingest slots for requests that carry no API key (signed-by-source or refused): they
    # never take one of ``max_concurrent_ingests`` from keyed producers.
    max_unauthenticated_ingests: int = 64
    # ... and each reads at most this much body (a source may set its own, up to
    # max_body_bytes): keyless load holds at most 64 x 1 MiB by default.
    max_unauthenticated_body_bytes: int = 1024 * 1024
    # callback egress (SPEC §8): networks a callback may reach besides the public Internet,
    # or, with callback_networks_only, the only ones it may reach.
    allowed_callback_networks: tuple[str, ...] = ()
    callback_networks_only: bool = False
    # secrets at rest (SPEC §8): EVENTHUB_SECRET_KEY, else a key file beside the database
    secret_key: str | None = dataclasses.field(default=None, repr=False)
    # /metrics (README, "Metrics"): lag series per subscription (10,000 subscriptions would be
    # 20,000 series, so off by default), and a token a scraper may use instead of an admin key.
    metrics_per_subscription: bool = False
    metrics_token: str | None = dataclasses.field(default=None, repr=False)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _convert(name: str, value: Any) -> Any:
    kind = _FIELDS[name].type
    try:
        if kind == "int":
            # ASCII digits only: int() also takes "1_000" and Arabic-Indic digits.
            if isinstance(value, bool | float):
                raise ValueError(value)
            text = str(value).strip()
            if not (text.isascii() and text.lstrip("-").isdigit()):
                raise ValueError(value)
            return int(text)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            # NaN passes every bound (``nan <= 0`` is false) and poisons every comparison after.
            if math.isnan(number):
                raise ValueError(value)
            return number
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(value)
        if kind.startswith("tuple"):
            if isinstance(value, str):
                items = [part.strip() for part in value.split(",") if part.strip()]
            elif isinstance(value, list | tuple):
                items = list(value)
            else:
                raise ValueError(value)
            if not all(isinstance(item, str) for item in items):
                raise ValueError(value)
            return tuple(items)
        if kind.startswith("Path"):
            return None if value is None else Path(str(value)).expanduser()
    # RuntimeError: expanduser() of "~someone" when there is no such user.
    except (TypeError, ValueError, RuntimeError):
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
        for key, value in _read_config(config_file).items():
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
    validate(settings)
    return settings


def _read_config(path: Path) -> dict[str, Any]:
    """The settings table of a TOML file: its ``[eventhub]`` table, else the whole document.

    A file that is not TOML is an ``InvalidRequest`` naming the file and the place, so that
    ``eventhub serve`` says what to fix instead of dying with a traceback. A file that cannot be
    read stays an ``OSError``, whose message names the file already."""
    with path.open("rb") as fh:
        try:
            document = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise errors.InvalidRequest(
                f"config file {str(path)!r} is not valid TOML: {exc}"
            ) from None
        except UnicodeDecodeError as exc:
            raise errors.InvalidRequest(
                f"config file {str(path)!r} is not valid TOML: not UTF-8 at byte {exc.start}"
            ) from None
    table = document.get("eventhub", document)
    if not isinstance(table, dict):
        raise errors.InvalidRequest(
            f"config file {str(path)!r}: 'eventhub' must be a table ([eventhub]), not a value"
        )
    return table


# A metrics token is a bearer credential: long enough not to be guessed.
MIN_TOKEN_LENGTH = 16

_POSITIVE = (
    "max_body_bytes",
    "max_batch_events",
    "max_concurrent_ingests",
    "body_timeout",
    "checkpoint_interval",
    "max_subscriptions",
    "delivery_timeout",
    "delivery_connect_timeout",
    "delivery_connections",
    "delivery_connections_per_owner",
    "header_timeout",
    "max_header_bytes",
    "keepalive_timeout",
    "max_connections",
    "max_unauthenticated_ingests",
    "max_unauthenticated_body_bytes",
)


def validate(settings: Settings) -> None:
    """Refuse a value no hub can run with, naming the setting."""
    if settings.synchronous not in ("full", "normal"):
        raise errors.InvalidRequest("setting 'synchronous' must be 'full' or 'normal'")
    for name in _POSITIVE:
        if getattr(settings, name) <= 0:
            raise errors.InvalidRequest(f"setting {name!r} must be greater than 0")
    if not 0 <= settings.port <= 65535:
        raise errors.InvalidRequest("setting 'port' must be from 0 to 65535")
    for network in settings.allowed_callback_networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise errors.InvalidRequest(
                f"setting 'allowed_callback_networks': {network!r} is not an IP network"
                " (write it as 127.0.0.0/8 or ::1/128)"
            ) from None
    if settings.callback_networks_only and not settings.allowed_callback_networks:
        raise errors.InvalidRequest(
            "setting 'callback_networks_only' needs 'allowed_callback_networks' to list at least"
            " one network"
        )
    if settings.metrics_token is not None and len(settings.metrics_token) < MIN_TOKEN_LENGTH:
        raise errors.InvalidRequest(
            f"setting 'metrics_token' must be at least {MIN_TOKEN_LENGTH} characters"
        )
    if settings.secret_key is not None:
        # Malformed is refused here, at the edge; whether the key fits the database is
        # checked when the hub is built (log/sealing.py).
        vault.parse_key(settings.secret_key, "setting 'secret_key' (EVENTHUB_SECRET_KEY)")
