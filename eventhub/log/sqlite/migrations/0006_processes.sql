-- Process instances (SPEC §6.2; eventhub/processes has the rules). A waiting instance is one
-- row here and nothing in memory: the correlation of an event that names it, its timeout
-- and the expiry of what was buffered for it are index lookups.

-- A definition as it is now; each version it had stays in process_versions while instances
-- that started on it may still run.
CREATE TABLE process_definitions (
    id         TEXT    PRIMARY KEY,
    version    INTEGER NOT NULL,
    owner      TEXT    NOT NULL,   -- the admin key that defined it: its per-owner call share
    secret     TEXT    NOT NULL,   -- the whsec_ signing secret, sealed
    start_tid  INTEGER NOT NULL,   -- the trigger whose events start instances
    cursor     INTEGER NOT NULL,   -- the start trigger's offset started up to (inclusive)
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL
);

CREATE TABLE process_versions (
    definition_id TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    body          TEXT    NOT NULL,  -- the definition's JSON, sealed (call headers are secrets)
    PRIMARY KEY (definition_id, version)
) WITHOUT ROWID;

CREATE TABLE instances (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,  -- paging order: oldest first
    id            TEXT    NOT NULL UNIQUE,
    definition_id TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    state         TEXT    NOT NULL,
    step          INTEGER NOT NULL,  -- index of the step running or waited in
    variables     BLOB    NOT NULL,  -- JSON object, integers exact (codec/jsontext.py)
    waiting_for   TEXT,              -- the awaited event type, while Waiting
    due           REAL,              -- when a Waiting instance times out (epoch seconds)
    buffer_for    REAL    NOT NULL,  -- bufferSeconds of its definition version
    started_by    TEXT    NOT NULL,  -- JSON {source, id, offset}
    last_offset   INTEGER NOT NULL,  -- the event that started or last woke it
    error         TEXT,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE INDEX instances_by_definition ON instances (definition_id, state, seq);
CREATE INDEX instances_by_state ON instances (state, seq);
CREATE INDEX instances_due ON instances (due) WHERE due IS NOT NULL;

CREATE TABLE instance_history (
    instance_id  TEXT    NOT NULL,
    n            INTEGER NOT NULL,
    at           TEXT    NOT NULL,
    step         TEXT,               -- the step's id; NULL past the last step
    what         TEXT    NOT NULL,
    event_offset INTEGER,
    detail       TEXT,
    PRIMARY KEY (instance_id, n)
) WITHOUT ROWID;

-- Every event that carries cxpinstanceid, and what became of it: woke an instance, buffered
-- for one (until it is consumed or its time runs out), consumed from the buffer, unrouted.
CREATE TABLE correlations (
    event_offset INTEGER PRIMARY KEY,
    instance_id  TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    fate         TEXT    NOT NULL CHECK (fate IN ('woke', 'buffered', 'consumed', 'unrouted')),
    reason       TEXT,
    expires      REAL               -- while buffered
);
CREATE INDEX correlations_buffered ON correlations (instance_id, type, event_offset)
    WHERE fate = 'buffered';
CREATE INDEX correlations_expiry ON correlations (expires) WHERE fate = 'buffered';
CREATE INDEX correlations_unrouted ON correlations (event_offset) WHERE fate = 'unrouted';
