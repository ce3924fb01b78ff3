"""Process definitions and instances in SQLite (schema 6): the rows, and every change of an
instance as one function that runs inside a group commit, with its history lines and its
lifecycle events (``emit``) in the same transaction. The rules are in
``eventhub/processes``; what is here is where they are written down.

Changes of an instance are compare-and-set on its state and step: the engine, the
correlation of ingested events, the timer and a cancel all write through the one writer, so
whichever commits first wins and the others find the instance moved and do nothing.
"""

from __future__ import annotations

import dataclasses
import sqlite3
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
from eventhub.processes import definitions, lifecycle
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

# Appends lifecycle events inside the running transaction (the store gathers those of a
# flush and appends them together, after every write of the flush).
_COLUMNS = (
    "seq, id, definition_id, version, state, step, variables, waiting_for, due, buffer_for,"
    " started_by, last_offset, error, created_at, updated_at"
)


def _instance(row: Sequence[Any]) -> Instance:
    return Instance(
        seq=row[0],
        id=row[1],
        definition_id=row[2],
        version=row[3],
        state=State(row[4]),
        step=row[5],
        variables=jsontext.exact(row[6]),
        waiting_for=row[7],
        due=row[8],
        buffer_for=row[9],
        started_by=orjson.loads(row[10]),
        last_offset=row[11],
        error=row[12],
        created_at=row[13],
        updated_at=row[14],
    )


def _variables(value: dict[str, Any]) -> bytes:
    return jsontext.dumps(value)


_ADD_HISTORY = (
    "INSERT INTO instance_history (instance_id, n, at, step, what, event_offset, detail)"
    " VALUES (?1, (SELECT COALESCE(MAX(n), 0) + 1 FROM instance_history WHERE instance_id = ?1),"
    " ?2, ?3, ?4, ?5, ?6)"
)


def _history(cur: sqlite3.Cursor, instance_id: str, entries: Iterable[Entry]) -> None:
    """Lines at the end of the instance's history: one statement each, numbered in it."""
    cur.executemany(
        _ADD_HISTORY, [(instance_id, e.at, e.step, e.what, e.offset, e.detail) for e in entries]
    )


# -- definitions -------------------------------------------------------------------------------


def save_definition(
    cur: sqlite3.Cursor, stored: definitions.Stored, sealer: Vault
) -> tuple[int, int]:
    """Insert or update a definition with a new version; returns the version number (one
    past any version the id ever had, so a definition deleted and made again never reuses
    one an old instance still names) and the start cursor as stored: with the same start
    trigger it never moves back (a start page may have committed after the caller read it)."""
    d = stored.definition
    (last,) = cur.execute(
        "SELECT COALESCE(MAX(version), 0) FROM process_versions WHERE definition_id = ?", (d.id,)
    ).fetchone()
    version = last + 1
    body = dataclasses.replace(d, version=version).stored().decode()
    cur.execute(
        "INSERT INTO process_versions (definition_id, version, body) VALUES (?, ?, ?)",
        (d.id, version, sealer.seal(body, sealing.process_version(d.id, version))),
    )
    cur.execute(
        "INSERT INTO process_definitions (id, version, owner, secret, start_tid, cursor,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
        " SET version = excluded.version, owner = excluded.owner,"
        " cursor = CASE WHEN start_tid = excluded.start_tid THEN max(cursor, excluded.cursor)"
        " ELSE excluded.cursor END, start_tid = excluded.start_tid,"
        " updated_at = excluded.updated_at",
        (
            d.id,
            version,
            stored.owner,
            sealer.seal(stored.secret, sealing.process_secret(d.id)),
            stored.start_tid,
            stored.cursor,
            stored.created_at,
            stored.updated_at,
        ),
    )
    (cursor,) = cur.execute(
        "SELECT cursor FROM process_definitions WHERE id = ?", (d.id,)
    ).fetchone()
    return int(version), int(cursor)


def delete_definition(cur: sqlite3.Cursor, definition_id: str) -> None:
    """The definition goes; its versions stay, so its instances' histories still read."""
    cur.execute("DELETE FROM process_definitions WHERE id = ?", (definition_id,))


def definition_starts(cur: sqlite3.Cursor) -> dict[str, tuple[int, int]]:
    rows = cur.execute("SELECT id, version, start_tid FROM process_definitions").fetchall()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def load_definitions(
    cur: sqlite3.Cursor, sealer: Vault
) -> tuple[list[definitions.Stored], list[definitions.Definition]]:
    """(every current definition, every version ever), secrets opened: once, at start."""
    versions = [
        definitions.from_stored(
            sealer.unseal(body, sealing.process_version(definition_id, version))
        )
        for definition_id, version, body in cur.execute(
            "SELECT definition_id, version, body FROM process_versions"
        ).fetchall()
    ]
    by_key = {(v.id, v.version): v for v in versions}
    current = [
        definitions.Stored(
            by_key[(r[0], r[1])],
            r[2],
            sealer.unseal(r[3], sealing.process_secret(r[0])),
            r[4],
            r[5],
            r[6],
            r[7],
        )
        for r in cur.execute(
            "SELECT id, version, owner, secret, start_tid, cursor, created_at, updated_at"
            " FROM process_definitions ORDER BY id"
        ).fetchall()
    ]
    return current, versions


# -- starting ----------------------------------------------------------------------------------


def start(
    cur: sqlite3.Cursor,
    emit: Emit,
    definition_id: str,
    cursor: int,
    started: Sequence[tuple[Instance, str | None]],
    clock: Clock,
) -> list[str]:
    """New instances (each with the id of its first step), and the start trigger's cursor
    past the events that started them: both or neither, so each event starts one instance.
    An event at or below the stored cursor already started its instance (a page handled
    again after a write whose caller had gone): it starts none. Returns the ids started."""
    row = cur.execute(
        "SELECT cursor FROM process_definitions WHERE id = ?", (definition_id,)
    ).fetchone()
    if row is None:
        return []  # deleted meanwhile
    done = int(row[0])
    started = [(i, step) for i, step in started if i.last_offset > done]
    cur.executemany(
        "INSERT INTO instances (id, definition_id, version, state, step, variables, waiting_for,"
        " due, buffer_for, started_by, last_offset, error, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, NULL, ?, ?)",
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
        _history(cur, instance.id, [Entry(clock.text, step, STARTED, instance.last_offset)])
    emit(
        [
            lifecycle.event(
                STARTED, i.id, i.definition_id, i.state, step, clock.now, offset=i.last_offset
            )
            for i, step in started
        ]
    )
    move_cursor(cur, definition_id, cursor)
    return [i.id for i, _ in started]


def move_cursor(cur: sqlite3.Cursor, definition_id: str, cursor: int) -> None:
    cur.execute(
        "UPDATE process_definitions SET cursor = max(cursor, ?) WHERE id = ?",
        (cursor, definition_id),
    )


# -- running -------------------------------------------------------------------------------------


def _current(cur: sqlite3.Cursor, instance_id: str) -> Instance | None:
    row = cur.execute(f"SELECT {_COLUMNS} FROM instances WHERE id = ?", (instance_id,)).fetchone()
    return None if row is None else _instance(row)


def advance(
    cur: sqlite3.Cursor,
    emit: Emit,
    instance_id: str,
    step: int,
    variables: dict[str, Any],
    entries: Sequence[Entry],
    names: StepNames,
    clock: Clock,
    then: Then | None = None,
) -> Advanced:
    """A Running instance done with step ``step`` (a call): on to the next, with its new
    variables, and, when ``then`` says what the next step is, that too in the same commit
    (one commit a call, not two). Nothing, writing nothing, if it is no longer Running at
    that step."""
    changed = cur.execute(
        "UPDATE instances SET step = step + 1, variables = ?, updated_at = ?"
        " WHERE id = ? AND state = 'Running' AND step = ?",
        (_variables(variables), clock.text, instance_id, step),
    ).rowcount
    if not changed:
        return Advanced(False)
    _history(cur, instance_id, entries)
    if then is None:
        return Advanced(True)
    if then.complete:
        ended = finish(
            cur, emit, instance_id, (State.RUNNING,), State.COMPLETED, names, clock, step=step + 1
        )
        return Advanced(True, completed=ended is not None)
    assert then.wait_type is not None
    opened = open_wait(cur, emit, instance_id, step + 1, names, then.wait_type, then.timeout, clock)
    return Advanced(True, opened=opened)


def note(cur: sqlite3.Cursor, instance_id: str, entries: Sequence[Entry]) -> None:
    """History lines alone (a failed attempt at a call that will be retried)."""
    _history(cur, instance_id, entries)


def _resume(
    cur: sqlite3.Cursor,
    emit: Emit,
    instance: Instance,
    step_id: str | None,
    offset: int,
    variables: dict[str, Any],
    clock: Clock,
    detail: str | None = None,
) -> None:
    """An event (at ``offset``) takes ``instance`` past the wait at its step: Running at the
    next step with the event's ``variables``, its history line and ``resumed`` event. Both
    ways there: woken by an event as it is appended, or a wait opening on a buffered one.
    ``instance`` follows, so a woken one's task starts from it."""
    cur.execute(
        "UPDATE instances SET state = 'Running', step = step + 1, waiting_for = NULL,"
        " due = NULL, variables = ?, last_offset = ?, updated_at = ? WHERE id = ?",
        (_variables(variables), offset, clock.text, instance.id),
    )
    instance.state, instance.step = State.RUNNING, instance.step + 1
    instance.variables, instance.last_offset = variables, offset
    instance.waiting_for = instance.due = None
    instance.updated_at = clock.text
    _history(cur, instance.id, [Entry(clock.text, step_id, RESUMED, offset, detail)])
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


def open_wait(
    cur: sqlite3.Cursor,
    emit: Emit,
    instance_id: str,
    step: int,
    names: StepNames,
    type_: str,
    timeout: float | None,
    clock: Clock,
) -> Opened | None:
    """A Running instance reaches a wait for ``type_`` at step ``step``: it takes the oldest
    unexpired event buffered for it of that type and goes on, or it sleeps (Waiting, with its
    timeout due). None, writing nothing, if it is no longer Running at that step."""
    instance = _current(cur, instance_id)
    if instance is None or instance.state is not State.RUNNING or instance.step != step:
        return None
    step_id = names(instance.definition_id, instance.version, step)
    row = cur.execute(
        "SELECT event_offset FROM correlations WHERE instance_id = ? AND type = ?"
        " AND fate = 'buffered' AND expires > ? ORDER BY event_offset LIMIT 1",
        (instance_id, type_, clock.now),
    ).fetchone()
    if row is None:
        due = None if timeout is None else clock.now + timeout
        cur.execute(
            "UPDATE instances SET state = 'Waiting', waiting_for = ?, due = ?, updated_at = ?"
            " WHERE id = ?",
            (type_, due, clock.text, instance_id),
        )
        _history(cur, instance_id, [Entry(clock.text, step_id, WAITING, detail=type_)])
        emit(
            [
                lifecycle.event(
                    WAITING, instance_id, instance.definition_id, State.WAITING, step_id, clock.now
                )
            ]
        )
        return Opened(None, instance.variables)
    (offset,) = row
    cur.execute(
        "UPDATE correlations SET fate = 'consumed', expires = NULL WHERE event_offset = ?",
        (offset,),
    )
    variables = _merged(cur, instance.variables, offset)
    _resume(cur, emit, instance, step_id, offset, variables, clock, "from the buffer")
    return Opened(offset, variables)


def _merged(cur: sqlite3.Cursor, variables: dict[str, Any], offset: int) -> dict[str, Any]:
    row = cur.execute(
        "SELECT data, data_kind FROM events WHERE event_offset = ?", (offset,)
    ).fetchone()
    if row is None:
        return variables
    return {**variables, **traces.flat_properties(DataKind(row[1]), row[0])}


def finish(
    cur: sqlite3.Cursor,
    emit: Emit,
    instance_id: str,
    expect: Iterable[State],
    state: State,
    names: StepNames,
    clock: Clock,
    reason: str | None = None,
    step: int | None = None,
) -> Instance | None:
    """A live instance in one of the ``expect``ed states (and at ``step``, if given) ends in
    ``state``; what was still buffered for it is unrouted. None, writing nothing, if it is
    not in such a state (any more)."""
    instance = _current(cur, instance_id)
    if instance is None or instance.state not in set(expect):
        return None
    if step is not None and instance.step != step:
        return None
    move = FINAL_MOVES[state]
    step_id = names(instance.definition_id, instance.version, instance.step)
    cur.execute(
        "UPDATE instances SET state = ?, waiting_for = NULL, due = NULL, error = ?,"
        " updated_at = ? WHERE id = ?",
        (str(state), reason, clock.text, instance_id),
    )
    buffered = [
        offset
        for (offset,) in cur.execute(
            "SELECT event_offset FROM correlations WHERE instance_id = ? AND fate = 'buffered'"
            " ORDER BY event_offset",
            (instance_id,),
        ).fetchall()
    ]
    why = f"the instance is {state} with it still buffered"
    cur.executemany(
        "UPDATE correlations SET fate = 'unrouted', reason = ?, expires = NULL"
        " WHERE event_offset = ?",
        [(why, offset) for offset in buffered],
    )
    entries = [Entry(clock.text, step_id, UNROUTED, offset, why) for offset in buffered]
    entries.append(Entry(clock.text, step_id, move, detail=reason))
    _history(cur, instance_id, entries)
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


def expire(cur: sqlite3.Cursor, emit: Emit, names: StepNames, clock: Clock, limit: int) -> int:
    """Up to ``limit`` Waiting instances past their timeout -> TimedOut, and up to ``limit``
    buffered events past their time -> unrouted; returns how many changed (``limit`` or more:
    call again)."""
    changed = 0
    for (instance_id,) in cur.execute(
        "SELECT id FROM instances WHERE due IS NOT NULL AND due <= ? ORDER BY due LIMIT ?",
        (clock.now, limit),
    ).fetchall():
        ended = finish(
            cur,
            emit,
            instance_id,
            (State.WAITING,),
            State.TIMED_OUT,
            names,
            clock,
            reason="no awaited event came before the timeout",
        )
        if ended is None:  # not Waiting, yet due is set: never written so; clear it
            cur.execute("UPDATE instances SET due = NULL WHERE id = ?", (instance_id,))
        changed += 1
    rows = cur.execute(
        "SELECT event_offset, instance_id FROM correlations WHERE fate = 'buffered'"
        " AND expires <= ? ORDER BY expires LIMIT ?",
        (clock.now, limit),
    ).fetchall()
    why = "its buffer time ran out before a wait took it"
    cur.executemany(
        "UPDATE correlations SET fate = 'unrouted', reason = ?, expires = NULL"
        " WHERE event_offset = ?",
        [(why, offset) for offset, _ in rows],
    )
    for offset, instance_id in rows:
        _history(cur, instance_id, [Entry(clock.text, None, UNROUTED, offset, why)])
    return changed + len(rows)


def next_due(cur: sqlite3.Cursor) -> float | None:
    """The earliest timeout or buffer expiry: two index lookups."""
    (due,) = cur.execute("SELECT MIN(due) FROM instances WHERE due IS NOT NULL").fetchone()
    (expires,) = cur.execute(
        "SELECT MIN(expires) FROM correlations WHERE fate = 'buffered'"
    ).fetchone()
    found = [t for t in (due, expires) if t is not None]
    return min(found) if found else None


# -- correlation -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Correlated:
    """What the correlation of one flush did: the receipt's word per event (None: the event
    names no instance), the instances it woke, and the earliest expiry it set."""

    receipts: list[str | None]
    woken: list[Woken]
    earliest: float | None = None


def correlate_appended(
    cur: sqlite3.Cursor,
    emit: Emit,
    appended: Sequence[tuple[NewEvent, Appended]],
    names: StepNames,
    clock: Clock,
) -> Correlated:
    """Decide the fate of every event of the flush that names an instance, in log order,
    inside the flush's transaction (``eventhub.processes.instances.correlate``). A duplicate
    (not stored again) is not correlated again: its receipt says its fate."""
    out = Correlated([], [])
    for event, result in appended:
        attributes = event.attributes
        instance_id = instance_named(attributes)
        if instance_id is None or event.source == notifications.SOURCE:
            out.receipts.append(None)
            continue
        if result.duplicate:
            row = cur.execute(
                "SELECT fate FROM correlations WHERE event_offset = ?", (result.offset,)
            ).fetchone()
            out.receipts.append(None if row is None else Fate(row[0]).receipt)
            continue
        instance = _current(cur, instance_id)
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
                _resume(cur, emit, instance, step_id, result.offset, variables, clock)
                cause = StoredEvent(
                    result.offset, result.revision, attributes, event.data, event.kind, clock.text
                )
                out.woken.append(Woken(instance, cause))
            elif fate is Fate.BUFFERED:
                expires = clock.now + instance.buffer_for
                if out.earliest is None or expires < out.earliest:
                    out.earliest = expires
                _history(
                    cur,
                    instance_id,
                    [Entry(clock.text, step_id, BUFFERED, result.offset, event.type)],
                )
            else:
                _history(
                    cur, instance_id, [Entry(clock.text, step_id, UNROUTED, result.offset, reason)]
                )
        cur.execute(
            "INSERT INTO correlations (event_offset, instance_id, source, id, type, fate, reason,"
            " expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                result.offset,
                instance_id,
                event.source,
                event.id,
                event.type,
                str(fate),
                reason,
                expires,
            ),
        )
        out.receipts.append(fate.receipt)
    return out


# -- reads -----------------------------------------------------------------------------------------


def load_instance(cur: sqlite3.Cursor, instance_id: str) -> Instance | None:
    """The instance without its history (what a task needs to carry it on)."""
    return _current(cur, instance_id)


def get_instance(cur: sqlite3.Cursor, instance_id: str) -> Instance | None:
    instance = _current(cur, instance_id)
    if instance is None:
        return None
    instance.history = [
        Entry(*row)
        for row in cur.execute(
            "SELECT at, step, what, event_offset, detail FROM instance_history"
            " WHERE instance_id = ? ORDER BY n",
            (instance_id,),
        )
    ]
    return instance


def list_instances(
    cur: sqlite3.Cursor, definition: str | None, state: State | None, after: int, limit: int
) -> list[Instance]:
    where, params = ["seq > ?"], [after]
    if definition is not None:
        where.append("definition_id = ?")
        params.append(definition)  # type: ignore[arg-type]
    if state is not None:
        where.append("state = ?")
        params.append(str(state))  # type: ignore[arg-type]
    rows = cur.execute(
        f"SELECT {_COLUMNS} FROM instances WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [_instance(r) for r in rows]


def running(cur: sqlite3.Cursor) -> list[Instance]:
    rows = cur.execute(
        f"SELECT {_COLUMNS} FROM instances WHERE state = 'Running' ORDER BY seq"
    ).fetchall()
    return [_instance(r) for r in rows]


def live_of(cur: sqlite3.Cursor, definition_id: str) -> list[str]:
    return [
        r[0]
        for r in cur.execute(
            "SELECT id FROM instances WHERE definition_id = ? AND state IN ('Running', 'Waiting')",
            (definition_id,),
        )
    ]


def list_unrouted(cur: sqlite3.Cursor, after: int, limit: int) -> list[dict[str, Any]]:
    return [
        {
            "offset": r[0],
            "source": r[1],
            "id": r[2],
            "type": r[3],
            "cxpinstanceid": r[4],
            "reason": r[5],
        }
        for r in cur.execute(
            "SELECT event_offset, source, id, type, instance_id, reason FROM correlations"
            " WHERE fate = 'unrouted' AND event_offset > ? ORDER BY event_offset LIMIT ?",
            (after, limit),
        )
    ]
