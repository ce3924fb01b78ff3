-- Process definitions and instances (SPEC §6.2): the tables of the SQLite migration
-- 0006_processes.sql (its comments say what each column holds), in PostgreSQL's types.

CREATE TABLE process_definitions (
    id         TEXT COLLATE "C" PRIMARY KEY,
    version    INTEGER NOT NULL,
    owner      TEXT    NOT NULL,
    secret     TEXT    NOT NULL,
    start_tid  INTEGER NOT NULL,
    cursor     BIGINT  NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL
);

CREATE TABLE process_versions (
    definition_id TEXT COLLATE "C" NOT NULL,
    version       INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    PRIMARY KEY (definition_id, version)
);

CREATE TABLE instances (
    seq           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            TEXT COLLATE "C" NOT NULL UNIQUE,
    definition_id TEXT COLLATE "C" NOT NULL,
    version       INTEGER NOT NULL,
    state         TEXT COLLATE "C" NOT NULL,
    step          INTEGER NOT NULL,
    variables     BYTEA   NOT NULL,
    waiting_for   TEXT,
    due           DOUBLE PRECISION,
    buffer_for    DOUBLE PRECISION NOT NULL,
    started_by    TEXT    NOT NULL,
    last_offset   BIGINT  NOT NULL,
    error         TEXT,
    created_at    TEXT COLLATE "C" NOT NULL,
    updated_at    TEXT COLLATE "C" NOT NULL
);
CREATE INDEX instances_by_definition ON instances (definition_id, state, seq);
CREATE INDEX instances_by_state ON instances (state, seq);
CREATE INDEX instances_due ON instances (due) WHERE due IS NOT NULL;

CREATE TABLE instance_history (
    instance_id  TEXT COLLATE "C" NOT NULL,
    n            INTEGER NOT NULL,
    at           TEXT    NOT NULL,
    step         TEXT,
    what         TEXT    NOT NULL,
    event_offset BIGINT,
    detail       TEXT,
    PRIMARY KEY (instance_id, n)
);

CREATE TABLE correlations (
    event_offset BIGINT  PRIMARY KEY,
    instance_id  TEXT COLLATE "C" NOT NULL,
    source       TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    type         TEXT COLLATE "C" NOT NULL,
    fate         TEXT    NOT NULL CHECK (fate IN ('woke', 'buffered', 'consumed', 'unrouted')),
    reason       TEXT,
    expires      DOUBLE PRECISION
);
CREATE INDEX correlations_buffered ON correlations (instance_id, type, event_offset)
    WHERE fate = 'buffered';
CREATE INDEX correlations_expiry ON correlations (expires) WHERE fate = 'buffered';
CREATE INDEX correlations_unrouted ON correlations (event_offset) WHERE fate = 'unrouted';
