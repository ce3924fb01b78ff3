"""Which store a hub runs on, from its settings: ``database`` empty, the SQLite file at
``data`` (the embedded default); a PostgreSQL URL, ``PostgresStore`` on it (SPEC §9). The
one place that chooses; everything above sees the ``Store`` port only."""

from __future__ import annotations

import logging
from collections.abc import Callable

from eventhub import vault
from eventhub.clock import Clock
from eventhub.delivery.leases import Leases
from eventhub.log import dsn, sealing
from eventhub.log.base import Hooks, Store
from eventhub.settings import Settings

log = logging.getLogger(__name__)


def uses_postgres(settings: Settings) -> bool:
    return bool(settings.database)


def store_for(
    settings: Settings,
    clock: Clock,
    hooks: Hooks,
    observe_commit: Callable[[int, float], None] | None = None,
) -> Store:
    """The hub's store, built (not yet opened: ``Store.open`` connects). On SQLite the vault
    is checked against the file now; on PostgreSQL, when the store opens (the key is
    ``secret_key``, which settings require with a PostgreSQL database)."""
    if settings.database:
        # Imported here: asyncpg is only loaded by hubs that use it.
        from eventhub.log.postgres import PostgresStore

        log.info("database: PostgreSQL at %s", dsn.masked(settings.database))
        assert settings.secret_key is not None  # settings.validate requires it
        sealer = vault.Vault(
            vault.parse_key(settings.secret_key, "setting 'secret_key' (EVENTHUB_SECRET_KEY)")
        )
        return PostgresStore(
            settings.database, clock, vault=sealer, observe_commit=observe_commit, hooks=hooks
        )
    from eventhub.log.sqlite import SqliteStore

    return SqliteStore(
        settings.data,
        clock,
        settings.synchronous,
        settings.checkpoint_interval,
        vault=sealing.vault_for(settings.data, settings.secret_key),
        observe_commit=observe_commit,
        hooks=hooks,
    )


def leases_for(settings: Settings, store: Store) -> Leases | None:
    """The subscription leases of a hub on PostgreSQL (SPEC §9); None on SQLite, where the
    one process holds every subscription."""
    if not settings.database:
        return None
    from eventhub.log.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    return store.leases(settings.lease_seconds)


def partitions_for(settings: Settings, store: Store) -> Leases | None:
    """The process instances' partition leases of a hub on PostgreSQL (SPEC §9,
    ``processes/partitions.py``); None on SQLite, where the one process holds them all."""
    if not settings.database:
        return None
    from eventhub.log.postgres import PostgresStore
    from eventhub.log.postgres.leases import Kind
    from eventhub.processes import partitions

    assert isinstance(store, PostgresStore)
    last = partitions.PARTITIONS - 1
    kind = Kind(
        "partition",
        f"SELECT g::text FROM generate_series(0, {last}) AS g",
        "partition-leases",
    )
    return store.leases(settings.lease_seconds, kind)
