"""The SQLite backend: the embedded default (one process, one file).

``store.py`` is the ``Store`` itself; the rest are its parts: ``connections.py`` and
``schema.py`` (opening, migrations), ``append.py`` (the group commit's rows),
``reads.py``, ``admin.py`` (keys, sources), ``records.py`` (catalogue, subscriptions,
attempts), ``deliveries.py`` (delivery batching), ``instances.py`` (process instances) and
``checkpointer.py``."""

from eventhub.log.sqlite.connections import storage_error
from eventhub.log.sqlite.schema import migrate
from eventhub.log.sqlite.store import SqliteStore

__all__ = ["SqliteStore", "migrate", "storage_error"]
