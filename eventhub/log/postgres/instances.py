"""Process definitions and instances in PostgreSQL: ``log/instances.py`` (whose docstrings
say what each change does; the rules are in ``eventhub/processes``) in PostgreSQL's dialect,
each change one coroutine that runs inside a group commit, with its history lines and its
lifecycle events (``emit``) in the same transaction.

Changes are compare-and-set on an instance's state and step, as on SQLite; with several
processes writing, the instance row is locked (``FOR UPDATE``) where a change reads it
before it writes, so two commits on two processes cannot both move it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from eventhub import notifications, traces
from eventhub.codec import jsontext
from eventhub.events import Appended, DataKind, NewEvent, StoredEvent
from eventhub.log import sealing
from eventhub.log.base import StepNames
from eventhub.log.commit import Clock, Emit
from eventhub.log.postgres.connection import Connection, affected
from eventhub.processes import definitions, lifecycle, starts
from eventhub.processes.instances import (
    BUFFERED,
    FINAL_MOVES,
    RESUMED,
    STARTED,
    UNROUTED,
    WAITING,
    Advanced,
    Entry,
    Fate,
    Instance,
    Named,
    Opened,
    State,
    Then,
    Woken,
    correlate,
    instance_named,
)
from eventhub.vault import Vault

_COLUMNS = (
    "seq, id, definition_id, version, state, step, variables, waiting_for, due, buffer_for,"
    " started_by, last_offset, error, created_at, updated_at"
)


def _instance(row: Sequence[Any]) -> Instance:
    return Instance(
        seq=int(row[0]),
        id=row[1],
        definition_id=row[2],
        version=row[3],
        state=State(row[4]),
        step=row[5],
        variables=jsontext.exact(bytes(row[6])),
        waiting_for=row[7],
        due=row[8],
        buffer_for=row[9],
        started_by=orjson.loads(row[10]),
        last_offset=int(row[11]),
        error=row[12],
        created_at=row[13],
        updated_at=row[14],
    )


def _variables(value: dict[str, Any]) -> bytes:
    return jsontext.dumps(value)


_ADD_HISTORY = (
    "INSERT INTO instance_history (instance_id, n, at, step, what, event_offset, detail)"
    " VALUES ($1, (SELECT COALESCE(MAX(n), 0) + 1 FROM instance_history WHERE instance_id = $1),"
    " $2, $3, $4, $5, $6)"
)


async def _history(conn: Connection, instance_id: str, entries: Iterable[Entry]) -> None:
    rows = [(instance_id, e.at, e.step, e.what, e.offset, e.detail) for e in entries]
    if rows:
        await conn.executemany(_ADD_HISTORY, rows)


# -- definitions -------------------------------------------------------------------------------


async def save_definition(
    conn: Connection, stored: definitions.Stored, sealer: Vault
) -> tuple[int, int]:
    d = stored.definition
    # Two processes saving one definition at once must not take the same version number.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"process:{d.id}")
    last = await conn.fetchval(
        "SELECT COALESCE(MAX(version), 0) FROM process_versions WHERE definition_id = $1", d.id
    )
    version = int(last) + 1
    body = dataclasses.replace(d, version=version).stored().decode()
    await conn.execute(
        "INSERT INTO process_versions (definition_id, version, body) VALUES ($1, $2, $3)",
        d.id,
        version,
        sealer.seal(body, sealing.process_version(d.id, version)),
    )
    cursor = await conn.fetchval(
        "INSERT INTO process_definitions AS p (id, version, owner, secret, start_tid, cursor,"
        " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id)"
        " DO UPDATE SET version = excluded.version, owner = excluded.owner,"
        " cursor = CASE WHEN p.start_tid = excluded.start_tid"
        " THEN GREATEST(p.cursor, excluded.cursor) ELSE excluded.cursor END,"
        " start_tid = excluded.start_tid, updated_at = excluded.updated_at RETURNING cursor",
        d.id,
        version,
        stored.owner,
        sealer.seal(stored.secret, sealing.process_secret(d.id)),
        stored.start_tid,
        stored.cursor,
        stored.created_at,
        stored.updated_at,
    )
    return version, int(cursor)


async def delete_definition(conn: Connection, definition_id: str) -> None:
    await conn.execute("DELETE FROM process_definitions WHERE id = $1", definition_id)


async def move_starts(conn: Connection, definition_id: str, filters: bool) -> bool:
    """First in a save or delete of ``definition_id``: move ``log_head.catalogue_version``
    (under the head's row lock, as a publish does: ``store.py`` says why) when what it
    matches changes: the definition starts by its own filters (``filters``: the new
    version's start), or did (its current start trigger is its private one). True if moved.
    The look at the current row locks nothing, so the lock order stays head first."""
    moved = await conn.fetchval(
        "UPDATE log_head SET catalogue_version = catalogue_version + 1 WHERE id = 1 AND ($2"
        " OR EXISTS (SELECT 1 FROM process_definitions p JOIN triggers t ON t.tid = p.start_tid"
        " WHERE p.id = $1 AND t.km = $3)) RETURNING 1",
        definition_id,
        filters,
        starts.PRIVATE_MODEL + definition_id,
    )
    return moved is not None


async def definition_starts(conn: Connection) -> dict[str, tuple[int, int]]:
    rows = await conn.fetch("SELECT id, version, start_tid FROM process_definitions")
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


async def load_definitions(
    conn: Connection, sealer: Vault
) -> tuple[list[definitions.Stored], list[definitions.Definition]]:
    versions = [
        definitions.from_stored(
            sealer.unseal(body, sealing.process_version(definition_id, version))
        )
        for definition_id, version, body in await conn.fetch(
            "SELECT definition_id, version, body FROM process_versions"
        )
    ]
    by_key = {(v.id, v.version): v for v in versions}
    current = [
        definitions.Stored(
            by_key[(r[0], r[1])],
            r[2],
            sealer.unseal(r[3], sealing.process_secret(r[0])),
            r[4],
            int(r[5]),
            r[6],
            r[7],
        )
        for r in await conn.fetch(
            "SELECT id, version, owner, secret, start_tid, cursor, created_at, updated_at"
            " FROM process_definitions ORDER BY id"
        )
    ]
    return current, versions


# -- starting ----------------------------------------------------------------------------------


async def start(
    conn: Connection,
    emit: Emit,
    definition_id: str,
    cursor: int,
    started: Sequence[tuple[Instance, str | None]],
    clock: Clock,
) -> list[str]:
    # FOR UPDATE: a start page handled on two processes at once starts each instance once.
    done = await conn.fetchval(
        "SELECT cursor FROM process_definitions WHERE id = $1 FOR UPDATE", definition_id
    )
    if done is None:
        return []  # deleted meanwhile
    started = [(i, step) for i, step in started if i.last_offset > int(done)]
    if started:
        await conn.executemany(
            "INSERT INTO instances (id, definition_id, version, state, step, variables,"
            " waiting_for, due, buffer_for, started_by, last_offset, error, created_at,"
            " updated_at) VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, $7, $8, $9, NULL, $10, $11)",
            [
                (
                    i.id,
                    i.definition_id,
                    i.version,
                    str(i.state),
                    i.step,
                    _variables(i.variables),
                    i.buffer_for,
                    orjson.dumps(i.started_by).decode(),
                    i.last_offset,
                    i.created_at,
                    i.updated_at,
                )
                for i, _ in started
            ],
        )
    for instance, step in started:
        await _history(conn, instance.id, [Entry(clock.text, step, STARTED, instance.last_offset)])
    emit(
        [
            lifecycle.event(
                STARTED, i.id, i.definition_id, i.state, step, clock.now, offset=i.last_offset
            )
            for i, step in started
        ]
    )
    await conn.execute(
        "UPDATE process_definitions SET cursor = GREATEST(cursor, $1) WHERE id = $2",
        cursor,
        definition_id,
    )
    return [i.id for i, _ in started]


# -- running -------------------------------------------------------------------------------------


async def _current(conn: Connection, instance_id: str, lock: bool = False) -> Instance | None:
    """The instance; ``lock``: its row locked to the commit (a change that reads, then writes)."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM instances WHERE id = $1{' FOR UPDATE' if lock else ''}",
        instance_id,
    )
    return None if row is None else _instance(row)


async def advance(
    conn: Connection,
    emit: Emit,
    instance_id: str,
    step: int,
    variables: dict[str, Any],
    entries: Sequence[Entry],
    names: StepNames,
    clock: Clock,
    then: Then | None = None,
) -> Advanced:
    changed = affected(
        await conn.execute(
            "UPDATE instances SET step = step + 1, variables = $1, updated_at = $2"
            " WHERE id = $3 AND state = 'Running' AND step = $4",
            _variables(variables),
            clock.text,
            instance_id,
            step,
        )
    )
    if not changed:
        return Advanced(False)
    await _history(conn, instance_id, entries)
    if then is None:
        return Advanced(True)
    if then.complete:
        ended = await finish(
            conn, emit, instance_id, (State.RUNNING,), State.COMPLETED, names, clock, step=step + 1
        )
        return Advanced(True, completed=ended is not None)
    assert then.wait_type is not None
    opened = await open_wait(
        conn, emit, instance_id, step + 1, names, then.wait_type, then.timeout, clock
    )
    return Advanced(True, opened=opened)


async def note(conn: Connection, instance_id: str, entries: Sequence[Entry]) -> None:
    await _history(conn, instance_id, entries)


async def _resume(
    conn: Connection,
    emit: Emit,
    instance: Instance,
    step_id: str | None,
    offset: int,
    variables: dict[str, Any],
    clock: Clock,
    detail: str | None = None,
) -> None:
    await conn.execute(
        "UPDATE instances SET state = 'Running', step = step + 1, waiting_for = NULL,"
        " due = NULL, variables = $1, last_offset = $2, updated_at = $3 WHERE id = $4",
        _variables(variables),
        offset,
        clock.text,
        instance.id,
    )
    instance.state, instance.step = State.RUNNING, instance.step + 1
    instance.variables, instance.last_offset = variables, offset
    instance.waiting_for = instance.due = None
    instance.updated_at = clock.text
    await _history(conn, instance.id, [Entry(clock.text, step_id, RESUMED, offset, detail)])
    emit(
        [
            lifecycle.event(
                RESUMED,
                instance.id,
                instance.definition_id,
                State.RUNNING,
                step_id,
                clock.now,
                offset=offset,
            )
        ]
    )


async def open_wait(
    conn: Connection,
    emit: Emit,
    instance_id: str,
    step: int,
    names: StepNames,
    type_: str,
    timeout_seconds: float | None,
    clock: Clock,
) -> Opened | None:
    instance = await _current(conn, instance_id, lock=True)
    if instance is None or instance.state is not State.RUNNING or instance.step != step:
        return None
    step_id = names(instance.definition_id, instance.version, step)
    offset = await conn.fetchval(
        "SELECT event_offset FROM correlations WHERE instance_id = $1 AND type = $2"
        " AND fate = 'buffered' AND expires > $3 ORDER BY event_offset LIMIT 1",
        instance_id,
        type_,
        clock.now,
    )
    if offset is None:
        due = None if timeout_seconds is None else clock.now + timeout_seconds
        await conn.execute(
            "UPDATE instances SET state = 'Waiting', waiting_for = $1, due = $2, updated_at = $3"
            " WHERE id = $4",
            type_,
            due,
            clock.text,
            instance_id,
        )
        await _history(conn, instance_id, [Entry(clock.text, step_id, WAITING, detail=type_)])
        emit(
            [
                lifecycle.event(
                    WAITING, instance_id, instance.definition_id, State.WAITING, step_id, clock.now
                )
            ]
        )
        return Opened(None, instance.variables)
    offset = int(offset)
    await conn.execute(
        "UPDATE correlations SET fate = 'consumed', expires = NULL WHERE event_offset = $1",
        offset,
    )
    variables = await _merged(conn, instance.variables, offset)
    await _resume(conn, emit, instance, step_id, offset, variables, clock, "from the buffer")
    return Opened(offset, variables)


async def _merged(conn: Connection, variables: dict[str, Any], offset: int) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT data, data_kind FROM events WHERE event_offset = $1", offset)
    if row is None:
        return variables
    return {**variables, **traces.flat_properties(DataKind(row[1]), row[0])}


async def finish(
    conn: Connection,
    emit: Emit,
    instance_id: str,
    expect: Iterable[State],
    state: State,
    names: StepNames,
    clock: Clock,
    reason: str | None = None,
    step: int | None = None,
) -> Instance | None:
    instance = await _current(conn, instance_id, lock=True)
    if instance is None or instance.state not in set(expect):
        return None
    if step is not None and instance.step != step:
        return None
    move = FINAL_MOVES[state]
    step_id = names(instance.definition_id, instance.version, instance.step)
    await conn.execute(
        "UPDATE instances SET state = $1, waiting_for = NULL, due = NULL, error = $2,"
        " updated_at = $3 WHERE id = $4",
        str(state),
        reason,
        clock.text,
        instance_id,
    )
    why = f"the instance is {state} with it still buffered"
    buffered = [
        int(r[0])
        for r in await conn.fetch(
            "UPDATE correlations SET fate = 'unrouted', reason = $1, expires = NULL"
            " WHERE instance_id = $2 AND fate = 'buffered' RETURNING event_offset",
            why,
            instance_id,
        )
    ]
    buffered.sort()
    entries = [Entry(clock.text, step_id, UNROUTED, offset, why) for offset in buffered]
    entries.append(Entry(clock.text, step_id, move, detail=reason))
    await _history(conn, instance_id, entries)
    emit(
        [
            lifecycle.event(
                move, instance_id, instance.definition_id, state, step_id, clock.now, reason=reason
            )
        ]
    )
    instance.state = state
    return instance


# -- the timer -----------------------------------------------------------------------------------


async def expire(conn: Connection, emit: Emit, names: StepNames, clock: Clock, limit: int) -> int:
    changed = 0
    for (instance_id,) in await conn.fetch(
        "SELECT id FROM instances WHERE due IS NOT NULL AND due <= $1 ORDER BY due LIMIT $2",
        clock.now,
        limit,
    ):
        ended = await finish(
            conn,
            emit,
            instance_id,
            (State.WAITING,),
            State.TIMED_OUT,
            names,
            clock,
            reason="no awaited event came before the timeout",
        )
        if ended is None:  # not Waiting (any more): its due is stale
            await conn.execute(
                "UPDATE instances SET due = NULL WHERE id = $1 AND state != 'Waiting'", instance_id
            )
        changed += 1
    why = "its buffer time ran out before a wait took it"
    rows = await conn.fetch(
        "UPDATE correlations SET fate = 'unrouted', reason = $1, expires = NULL"
        " WHERE event_offset IN (SELECT event_offset FROM correlations WHERE fate = 'buffered'"
        " AND expires <= $2 ORDER BY expires LIMIT $3 FOR UPDATE SKIP LOCKED)"
        " RETURNING event_offset, instance_id",
        why,
        clock.now,
        limit,
    )
    for offset, instance_id in sorted((int(r[0]), r[1]) for r in rows):
        await _history(conn, instance_id, [Entry(clock.text, None, UNROUTED, offset, why)])
    return changed + len(rows)


async def next_due(conn: Connection) -> float | None:
    due = await conn.fetchval("SELECT MIN(due) FROM instances WHERE due IS NOT NULL")
    expires = await conn.fetchval("SELECT MIN(expires) FROM correlations WHERE fate = 'buffered'")
    found = [float(t) for t in (due, expires) if t is not None]
    return min(found) if found else None


# -- correlation -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Correlated:
    """What the correlation of one flush did (as ``log/instances.py``'s)."""

    receipts: list[str | None]
    woken: list[Woken]
    earliest: float | None = None


async def correlate_appended(
    conn: Connection,
    emit: Emit,
    appended: Sequence[tuple[NewEvent, Appended]],
    names: StepNames,
    clock: Clock,
) -> Correlated:
    """Runs after ``append.append_rows``, under its lock of the log head: correlations on all
    processes happen in log order."""
    out = Correlated([], [])
    for event, result in appended:
        attributes = event.attributes
        instance_id = instance_named(attributes)
        if instance_id is None or event.source == notifications.SOURCE:
            out.receipts.append(None)
            continue
        if result.duplicate:
            fate_text = await conn.fetchval(
                "SELECT fate FROM correlations WHERE event_offset = $1", result.offset
            )
            out.receipts.append(None if fate_text is None else Fate(fate_text).receipt)
            continue
        instance = await _current(conn, instance_id, lock=True)
        named = (
            None
            if instance is None
            else Named(instance.state, instance.waiting_for, instance.buffer_for)
        )
        fate, reason = correlate(named, event.type)
        expires = None
        if instance is not None:
            step_id = names(instance.definition_id, instance.version, instance.step)
            if fate is Fate.WOKE:
                variables = {
                    **instance.variables,
                    **traces.flat_properties(event.kind, event.data),
                }
                await _resume(conn, emit, instance, step_id, result.offset, variables, clock)
                cause = StoredEvent(
                    result.offset, result.revision, attributes, event.data, event.kind, clock.text
                )
                out.woken.append(Woken(instance, cause))
            elif fate is Fate.BUFFERED:
                expires = clock.now + instance.buffer_for
                if out.earliest is None or expires < out.earliest:
                    out.earliest = expires
                await _history(
                    conn,
                    instance_id,
                    [Entry(clock.text, step_id, BUFFERED, result.offset, event.type)],
                )
            else:
                await _history(
                    conn,
                    instance_id,
                    [Entry(clock.text, step_id, UNROUTED, result.offset, reason)],
                )
        await conn.execute(
            "INSERT INTO correlations (event_offset, instance_id, source, id, type, fate, reason,"
            " expires) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            result.offset,
            instance_id,
            event.source,
            event.id,
            event.type,
            str(fate),
            reason,
            expires,
        )
        out.receipts.append(fate.receipt)
    return out


# -- reads -----------------------------------------------------------------------------------------


async def load_instance(conn: Connection, instance_id: str) -> Instance | None:
    return await _current(conn, instance_id)


async def get_instance(conn: Connection, instance_id: str) -> Instance | None:
    instance = await _current(conn, instance_id)
    if instance is None:
        return None
    instance.history = [
        Entry(r[0], r[1], r[2], None if r[3] is None else int(r[3]), r[4])
        for r in await conn.fetch(
            "SELECT at, step, what, event_offset, detail FROM instance_history"
            " WHERE instance_id = $1 ORDER BY n",
            instance_id,
        )
    ]
    return instance


async def list_instances(
    conn: Connection, definition: str | None, state: State | None, after: int, limit: int
) -> list[Instance]:
    where, params = ["seq > $1"], [after]
    if definition is not None:
        params.append(definition)  # type: ignore[arg-type]
        where.append(f"definition_id = ${len(params)}")
    if state is not None:
        params.append(str(state))  # type: ignore[arg-type]
        where.append(f"state = ${len(params)}")
    params.append(limit)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM instances WHERE {' AND '.join(where)} ORDER BY seq"
        f" LIMIT ${len(params)}",
        *params,
    )
    return [_instance(r) for r in rows]


async def running(conn: Connection) -> list[Instance]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM instances WHERE state = 'Running' ORDER BY seq"
    )
    return [_instance(r) for r in rows]


async def live_of(conn: Connection, definition_id: str) -> list[str]:
    return [
        r[0]
        for r in await conn.fetch(
            "SELECT id FROM instances WHERE definition_id = $1 AND state IN ('Running', 'Waiting')",
            definition_id,
        )
    ]


async def list_unrouted(conn: Connection, after: int, limit: int) -> list[dict[str, Any]]:
    return [
        {
            "offset": int(r[0]),
            "source": r[1],
            "id": r[2],
            "type": r[3],
            "cxpinstanceid": r[4],
            "reason": r[5],
        }
        for r in await conn.fetch(
            "SELECT event_offset, source, id, type, instance_id, reason FROM correlations"
            " WHERE fate = 'unrouted' AND event_offset > $1 ORDER BY event_offset LIMIT $2",
            after,
            limit,
        )
    ]
