"""Which process drives which instance (SPEC §9): instances are spread over a fixed number of
partitions, and a process drives the instances (and runs the start consumers, and, for
partition 0, the timer) of the partitions it holds. On SQLite one process holds them all
(``delivery.leases.Local``); on PostgreSQL the partitions are leased like subscriptions
(``log/postgres/leases.py``, kind ``partition``).

Why partitions, not a lease per instance: instances are many and short-lived, and a lease
row per instance would be written when it starts and renewed while it runs, on the hot
path. 32 leases per cluster cost nothing, spread well over up to a dozen or so processes,
and hand an instance to one process by a pure function of its id that every process
computes alike (CRC-32, not ``hash()``, which differs per process)."""

from __future__ import annotations

import zlib

PARTITIONS = 32
TIMER_PARTITION = 0  # its holder runs the timer (timeouts, buffer expiry)


def partition_of(key: str) -> int:
    """The partition of an instance (by its id) or of a definition's start consumer (by the
    definition's id)."""
    return zlib.crc32(key.encode()) % PARTITIONS


def lease_id(partition: int) -> str:
    return str(partition)


ALL = frozenset(range(PARTITIONS))
