"""The PostgreSQL backend (SPEC §9): ``PostgresStore``, the same storage port as
``SqliteStore`` on a database several eventhub processes share.

- ``store.py``: the store; group commit (``log/writer.py``), reads on a pool.
- ``append.py``: one flush's events into the log, the trigger index and traces.
- ``rows.py``: the records beside the log (keys, sources, models, subscriptions, attempts).
- ``schema.py`` and ``migrations/``: the schema and its version; the vault's check.
- ``wakeup.py``: ``LISTEN/NOTIFY``, so a commit on any process wakes every process, and an
  action on a subscription reaches the others.
- ``leases.py``: which process delivers which subscription (``delivery/leases.py``).
- ``connection.py``: the few asyncpg calls we use, typed (asyncpg ships no types).
"""

from __future__ import annotations

from eventhub.log.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
