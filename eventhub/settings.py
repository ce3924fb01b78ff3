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

from eventhub import errors, tomlfile, vault
from eventhub.log import dsn


def default_data_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "eventhub" / "eventhub.db"


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data: Path = dataclasses.field(default_factory=default_data_path)
    # PostgreSQL (SPEC §9): a postgresql:// URL; None or empty: the SQLite file at ``data``.
    # It may hold a password: never shown (repr, logs, errors show log/dsn.py's masked form).
    database: str | None = dataclasses.field(default=None, repr=False)
    admin_key: str | None = dataclasses.field(default=None, repr=False)
    max_body_bytes: int = 10 * 1024 * 1024
    max_batch_events: int = 10_000
    max_concurrent_ingests: int = 1024
    retry_after_seconds: int = 1
    body_timeout: float = 30.0
    synchronous: str = "full"
    checkpoint_interval: float = 1.0
    log_level: str = "info"
    # logs (SPEC §7; eventhub/ops/logs.py): "text" lines, or "json" (one object a line)
    log_format: str = "text"
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
    # CloudEvents webhook handshake (api/handshake.py): the origins (WebHook-Request-Origin)
    # the ingest endpoints consent to; "*" consents to any. None by default: consent is the
    # operator's to give (http-webhook.md §4).
    webhook_allowed_origins: tuple[str, ...] = ()
    # secrets at rest (SPEC §8): EVENTHUB_SECRET_KEY, else a key file beside the database
    secret_key: str | None = dataclasses.field(default=None, repr=False)
    # retention (SPEC §7; eventhub/retention.py): 0 keeps every event. Only events that no
    # live subscription, process start or instance still needs are ever deleted.
    retention_days: float = 0.0
    retention_bytes: int = 0
    retention_interval: float = 60.0  # seconds between retention passes
    # /metrics (README, "Metrics"): lag series per subscription (10,000 subscriptions would be
    # 20,000 series, so off by default), and a token a scraper may use instead of an admin key.
    metrics_per_subscription: bool = False
    metrics_token: str | None = dataclasses.field(default=None, repr=False)
    # scale-out (SPEC §9): how long a process's subscription lease lasts unrenewed (PostgreSQL
    # only): renewed every third of it; a dead process's subscriptions move after it.
    lease_seconds: float = 15.0


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
        if value is not None and not isinstance(value, str | Path):
            # A TOML number or table where a word or a path belongs: str() would take it.
            raise ValueError(value)
        if kind.startswith("Path"):
            return None if value is None else Path(str(value)).expanduser()
        if isinstance(RULES.get(name), Choice):
            return str(value).strip().lower()
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
            if name not in _FIELDS:
                # A misspelt key would otherwise leave its setting at the default, silently.
                raise errors.InvalidRequest(
                    f"config file {str(config_file)!r}: unknown setting {key!r}"
                )
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
    ``eventhub serve`` says what to fix instead of dying with a traceback; so is a file that
    cannot be read."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise errors.InvalidRequest(
            f"config file {str(path)!r} cannot be read: {exc.strerror or exc}"
        ) from None
    with fh:
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


@dataclasses.dataclass(frozen=True, slots=True)
class Range:
    """The numbers a setting may take: at least (or, with ``above``, more than) ``low``, at
    most ``high``. Infinity is never one of them: every such setting is a count, a size or a
    number of seconds that something is scheduled or bounded by."""

    low: float
    high: float | None = None
    above: bool = False

    def admits(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if value < self.low or (self.above and value == self.low):
            return False
        return self.high is None or value <= self.high

    def text(self) -> str:
        """As the README's Configuration reference shows it (a test holds the two together)."""
        if self.high is not None:
            return f"{self.low:g} to {self.high:g}"
        return f"{'>' if self.above else '>='} {self.low:g}"


@dataclasses.dataclass(frozen=True, slots=True)
class Choice:
    values: tuple[str, ...]

    def text(self) -> str:
        return ", ".join(f"`{value}`" for value in self.values)


POSITIVE = Range(0, above=True)
# The shortest EVENTHUB_ADMIN_KEY accepted: as a source's HMAC secret (api/admin.py). The
# key is compared as a hash, so its length is all that stands between it and a guess.
MIN_ADMIN_KEY_CHARS = 16
# A metrics token is a bearer credential: long enough not to be guessed.
MIN_TOKEN_LENGTH = 16
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

# Every number and word setting's allowed values; validate() checks each, and the README's
# Configuration reference shows each rule's text() (tests/unit/test_readme_settings.py).
RULES: dict[str, Range | Choice] = {
    "port": Range(1, 65535),
    "max_body_bytes": POSITIVE,
    "max_batch_events": POSITIVE,
    "max_concurrent_ingests": POSITIVE,
    "retry_after_seconds": POSITIVE,
    "body_timeout": POSITIVE,
    "synchronous": Choice(("full", "normal")),
    "checkpoint_interval": POSITIVE,
    "log_level": Choice(LOG_LEVELS),
    "log_format": Choice(("text", "json")),
    "max_subscriptions": POSITIVE,
    "delivery_max_retries": Range(0),
    "delivery_initial_delay": POSITIVE,
    "delivery_max_delay": POSITIVE,
    "retry_after_cap": POSITIVE,
    "recovery_initial_delay": POSITIVE,
    "recovery_max_delay": POSITIVE,
    "suspend_after": POSITIVE,
    "delivery_timeout": POSITIVE,
    "delivery_connect_timeout": POSITIVE,
    "delivery_connections": POSITIVE,
    "secret_rotation_overlap": Range(0),
    "delivery_connections_per_owner": POSITIVE,
    "header_timeout": POSITIVE,
    "max_header_bytes": POSITIVE,
    "keepalive_timeout": POSITIVE,
    "max_connections": POSITIVE,
    "max_unauthenticated_ingests": POSITIVE,
    "max_unauthenticated_body_bytes": POSITIVE,
    "retention_days": Range(0),  # 0: keep every event
    "retention_bytes": Range(0),  # 0: no limit
    "retention_interval": POSITIVE,
    "lease_seconds": Range(1),  # renewals every third of it: below 1 s is a busy loop
}

# Pairs (low, high) where the first may not exceed the second.
_ORDERED = (
    ("delivery_initial_delay", "delivery_max_delay"),
    ("recovery_initial_delay", "recovery_max_delay"),
)


def validate(settings: Settings) -> None:
    """Refuse a value no hub can run with, naming the setting."""
    for origin in settings.webhook_allowed_origins:
        # A DNS name (or "*"): compared with WebHook-Request-Origin, echoed in a header.
        if not origin or not origin.isascii() or not origin.isprintable() or " " in origin:
            raise errors.InvalidRequest(
                f"setting 'webhook_allowed_origins': {origin!r} is not a host name or '*'"
            )
    for name, rule in RULES.items():
        value = getattr(settings, name)
        if isinstance(rule, Choice):
            if value not in rule.values:
                allowed = ", ".join(repr(v) for v in rule.values)
                raise errors.InvalidRequest(f"setting {name!r}: {value!r} is not one of {allowed}")
        elif not math.isfinite(value):
            raise errors.InvalidRequest(f"setting {name!r}: {value!r} is not a finite number")
        elif not rule.admits(value):
            wanted = (
                f"from {rule.low:g} to {rule.high:g}"
                if rule.high is not None
                else f"{'greater than' if rule.above else 'at least'} {rule.low:g}"
            )
            raise errors.InvalidRequest(f"setting {name!r}: {value!r} must be {wanted}")
    for low, high in _ORDERED:
        if getattr(settings, low) > getattr(settings, high):
            raise errors.InvalidRequest(
                f"setting {low!r} ({getattr(settings, low):g}) must not exceed"
                f" {high!r} ({getattr(settings, high):g})"
            )
    if not settings.host:
        raise errors.InvalidRequest("setting 'host' must not be empty")
    if settings.admin_key is not None and len(settings.admin_key) < MIN_ADMIN_KEY_CHARS:
        # The key itself is never shown: it may be a real one, only mistyped.
        raise errors.InvalidRequest(
            f"setting 'admin_key' (EVENTHUB_ADMIN_KEY) must be at least {MIN_ADMIN_KEY_CHARS}"
            f" characters, not {len(settings.admin_key)}"
        )
    if settings.catalog_file is not None:
        if not settings.catalog_file.is_file():
            raise errors.InvalidRequest(
                f"setting 'catalog_file': {str(settings.catalog_file)!r} is not a file"
            )
        # Its TOML is checked now, before the database is created or an admin key printed;
        # its models and processes when the hub starts (they need the store).
        try:
            tomlfile.load(settings.catalog_file)
        except errors.InvalidRequest as exc:
            raise errors.InvalidRequest(f"setting 'catalog_file': {exc.message}") from None
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
    if settings.database:
        if not dsn.is_postgres(settings.database):
            raise errors.InvalidRequest(
                f"setting 'database' (EVENTHUB_DATABASE): {dsn.masked(settings.database)!r} is"
                " not a postgresql:// or postgres:// URL (leave it empty for SQLite at 'data')"
            )
        if settings.secret_key is None:
            # Several processes must share the key, and there is no place beside a DSN for a
            # key file; a key kept in the database would be in every dump of it.
            raise errors.InvalidRequest(
                "setting 'secret_key' (EVENTHUB_SECRET_KEY) is required with a PostgreSQL"
                " database: every process sharing it needs the same key"
                " (openssl rand -base64 32)"
            )
    if settings.secret_key is not None:
        # Malformed is refused here, at the edge; whether the key fits the database is
        # checked when the hub is built (log/sealing.py).
        vault.parse_key(settings.secret_key, "setting 'secret_key' (EVENTHUB_SECRET_KEY)")
