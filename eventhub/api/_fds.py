"""The file-descriptor budget behind ``max_connections``.

Each client connection is a file descriptor, and so is each outbound delivery connection, the
database, its WAL and SHM, a backup, the listening socket and the event loop's own. A process
that runs out (``RLIMIT_NOFILE``) fails ``accept`` and every new client is reset, whatever the
cap says; so the cap is fitted to the limit at start, before any client can use it up."""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

log = logging.getLogger(__name__)

# Descriptors besides connections: database, WAL, SHM, backup, key file, listening sockets,
# stdio, the event loop's epoll and signal pipe, imports and log files, with room to spare.
RESERVE = 128


@dataclass(frozen=True, slots=True)
class Budget:
    soft_limit: int  # the RLIMIT_NOFILE soft limit to run with
    max_connections: int  # the connection cap that fits in it


def plan(max_connections: int, delivery_connections: int, soft: int, hard: int | None) -> Budget:
    """Raise the soft limit as far as needed and allowed (``hard``; None is unlimited), then cap
    connections at what fits beside delivery and the reserve (at least one)."""
    needed = max_connections + delivery_connections + RESERVE
    target = soft
    if needed > soft:
        target = needed if hard is None else max(soft, min(needed, hard))
    fits = target - delivery_connections - RESERVE
    return Budget(target, max(1, min(max_connections, fits)))


def fit_connections(max_connections: int, delivery_connections: int) -> int:
    """Apply ``plan`` to this process: raise its soft ``RLIMIT_NOFILE`` if needed, and return
    the effective connection cap, logging one line when it is below ``max_connections``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = plan(
        max_connections,
        delivery_connections,
        soft,
        None if hard == resource.RLIM_INFINITY else hard,
    )
    if budget.soft_limit > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (budget.soft_limit, hard))
        except (OSError, ValueError):
            budget = plan(max_connections, delivery_connections, soft, soft)
    if budget.max_connections < max_connections:
        log.warning(
            "max_connections lowered from %d to %d: the open-file limit (RLIMIT_NOFILE) is %d,"
            " and %d descriptors are kept for delivery_connections and %d for the database and"
            " the server; raise the limit (ulimit -n) to allow more",
            max_connections,
            budget.max_connections,
            budget.soft_limit,
            delivery_connections,
            RESERVE,
        )
    return budget.max_connections
