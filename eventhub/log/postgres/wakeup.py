"""Wake-ups by ``LISTEN/NOTIFY`` (SPEC §9): a commit that appended events sends, inside its
transaction, ``NOTIFY eventhub_commit`` with the new head and the triggers it fired;
PostgreSQL delivers it at the COMMIT, to every listening process, the writer's own included.
So a commit on one process wakes supervisors and long polls on all of them within
milliseconds, and every process wakes the same way (no separate local path to keep alike).

A notification lost while the listening connection was down is made good on reconnecting:
every trigger is woken once (a supervisor that wakes with nothing new reads one empty page).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from eventhub.log.postgres.connection import Connection, Session

log = logging.getLogger(__name__)

CHANNEL = "eventhub_commit"
# A subscription was saved or deleted by an action (payload: its id), so that every other
# process reloads its copy and the lease holder restarts its supervisor (SPEC §9).
SUBSCRIPTION_CHANNEL = "eventhub_subscription"
# An API key, a source or the catalogue changed (payload ``"<kind> <id>"``, kinds in
# ``CHANGE_KINDS``; ``"<kind>"`` alone: anything of that kind), so that every other process
# reloads that part: its keyring entry, the source, the catalogue and its match index.
CHANGE_CHANNEL = "eventhub_changed"
CHANGE_KINDS = ("key", "source", "model")
# A commit made process instances Running (payload: their ids) or set a due time (a wait's
# timeout, a buffered event's expiry) the holder of their partition must hear of (SPEC §9);
# or (payload ``"stop <id>,..."``) cancelled them, so that the holder stops their tasks at
# once rather than at its next compare-and-set (a call in flight, its retries).
INSTANCE_CHANNEL = "eventhub_instance"
STOP = "stop"
# A process definition was saved or deleted (payload: its id): the others reload it.
PROCESS_CHANNEL = "eventhub_process"
# NOTIFY payloads must stay under 8000 bytes: tids are cut into payloads of this size.
_PAYLOAD_CHARS = 7000


def payloads(head: int, tids: set[int]) -> list[str]:
    """``"<head> <tid>,<tid>,..."``: as many as the triggers need (at least one); sent by
    the statement that writes the appended batch (``append.py``)."""
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for tid in sorted(tids):
        text = str(tid)
        if chunk and size + len(text) + 1 > _PAYLOAD_CHARS:
            out.append(f"{head} {','.join(chunk)}")
            chunk, size = [], 0
        chunk.append(text)
        size += len(text) + 1
    out.append(f"{head} {','.join(chunk)}")
    return out


def parse(payload: str) -> tuple[int, set[int]]:
    head, _, tids = payload.partition(" ")
    return int(head), {int(t) for t in tids.split(",") if t}


def instance_payloads(ids: set[str], due: float | None) -> list[str]:
    """``"<due or -> <id>,<id>,..."``: as many as the ids need (at least one)."""
    return _id_payloads("-" if due is None else repr(due), ids)


def stop_payloads(ids: set[str]) -> list[str]:
    """``"stop <id>,<id>,..."``: cancelled instances, for their holders to stop."""
    return _id_payloads(STOP, ids)


def _id_payloads(when: str, ids: set[str]) -> list[str]:
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for instance_id in sorted(ids):
        if chunk and size + len(instance_id) + 1 > _PAYLOAD_CHARS:
            out.append(f"{when} {','.join(chunk)}")
            chunk, size = [], 0
        chunk.append(instance_id)
        size += len(instance_id) + 1
    out.append(f"{when} {','.join(chunk)}")
    return out


def parse_instances(payload: str) -> tuple[set[str], float | None]:
    when, _, ids = payload.partition(" ")
    return {i for i in ids.split(",") if i}, None if when == "-" else float(when)


def parse_stopped(payload: str) -> set[str] | None:
    """The ids of a ``"stop <id>,..."`` payload (cancelled instances); None for another."""
    marker, _, ids = payload.partition(" ")
    return {i for i in ids.split(",") if i} if marker == STOP else None


class Nudges:
    """What one flush tells the holders of instances: the ids it made Running, the
    earliest due time it set, the ids it cancelled. Sent once, inside the flush's
    transaction."""

    __slots__ = ("due", "ids", "stopped")

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.due: float | None = None
        self.stopped: set[str] = set()

    def add(self, ids: Iterable[str] = (), due: float | None = None) -> None:
        self.ids.update(ids)
        if due is not None and (self.due is None or due < self.due):
            self.due = due

    async def notify(self, conn: Connection) -> None:
        sent: list[str] = []
        if self.ids or self.due is not None:
            sent += instance_payloads(self.ids, self.due)
        if self.stopped:
            sent += stop_payloads(self.stopped)
        for payload in sent:
            await conn.execute("SELECT pg_notify($1, $2)", INSTANCE_CHANNEL, payload)


async def notify_process(conn: Connection, definition_id: str) -> None:
    """Inside the transaction that saved or deleted the definition ``definition_id``."""
    await conn.execute("SELECT pg_notify($1, $2)", PROCESS_CHANNEL, definition_id)


class Listener:
    """Holds one connection that LISTENs, and hands each notification to ``deliver``.
    ``run`` is a watched task (``tasks.Tasks``): it returns never, raises when the connection
    is lost (the watcher restarts it, with backoff), and wakes everything on a reconnect."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Session]],
        deliver: Callable[[int, set[int]], None],
        wake_all: Callable[[], Awaitable[None]],
        on_subscription: Callable[[int, str], None] | None = None,
        on_instances: Callable[[int, str], None] | None = None,
        on_process: Callable[[int, str], None] | None = None,
        on_change: Callable[[int, str], None] | None = None,
    ) -> None:
        self._on_instances = on_instances
        self._on_process = on_process
        self._connect = connect
        self._on_subscription = on_subscription
        self._on_change = on_change
        self._deliver = deliver
        self._wake_all = wake_all
        self._connected_before = False
        self.ready = asyncio.Event()  # set once the first LISTEN is in place

    async def run(self) -> None:
        conn: Any = await self._connect()
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, self._on_notification)
            if self._on_subscription is not None:
                await conn.add_listener(SUBSCRIPTION_CHANNEL, self._on_subscription_changed)
            if self._on_instances is not None:
                await conn.add_listener(INSTANCE_CHANNEL, _relay(self._on_instances))
            if self._on_process is not None:
                await conn.add_listener(PROCESS_CHANNEL, _relay(self._on_process))
            if self._on_change is not None:
                await conn.add_listener(CHANGE_CHANNEL, _relay(self._on_change))
            if self._connected_before:
                await self._wake_all()  # what was committed while we were not listening
            self._connected_before = True
            self.ready.set()
            await lost.wait()
            raise ConnectionError("the LISTEN connection to PostgreSQL was lost")
        finally:
            if not conn.is_closed():
                await asyncio.shield(conn.close(timeout=2))

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            head, tids = parse(payload)
        except ValueError:
            log.warning("ignored a malformed %s notification: %r", CHANNEL, payload)
            return
        self._deliver(head, tids)

    def _on_subscription_changed(self, _conn: Any, pid: int, _channel: str, payload: str) -> None:
        if self._on_subscription is not None:
            self._on_subscription(pid, payload)


def _relay(to: Callable[[int, str], None]) -> Callable[[Any, int, str, str], None]:
    """An asyncpg listener that hands (sender pid, payload) to ``to``."""

    def listener(_conn: Any, pid: int, _channel: str, payload: str) -> None:
        to(pid, payload)

    return listener


async def notify_subscription(conn: Connection, sub_id: str) -> None:
    """Inside the transaction that saved or deleted ``sub_id``."""
    await conn.execute("SELECT pg_notify($1, $2)", SUBSCRIPTION_CHANNEL, sub_id)


async def notify_change(conn: Connection, kind: str, id: str) -> None:
    """Inside the transaction that changed ``id`` of ``kind`` (one of ``CHANGE_KINDS``). An id
    too long for a payload is sent as the kind alone: the receivers reload all of that kind."""
    payload = f"{kind} {id}" if len(id.encode()) <= _PAYLOAD_CHARS else kind
    await conn.execute("SELECT pg_notify($1, $2)", CHANGE_CHANNEL, payload)


def parse_change(payload: str) -> tuple[str, str | None] | None:
    """``(kind, id)`` of a ``CHANGE_CHANNEL`` payload (id None: all of that kind), or None
    if it is not one of ours."""
    kind, space, id_ = payload.partition(" ")
    if kind not in CHANGE_KINDS:
        return None
    return kind, (id_ if space else None)
