-- Knowledge models: the draft being edited, and every published version (what consumers see).
CREATE TABLE knowledge_models (
    id                TEXT PRIMARY KEY,
    draft             TEXT NOT NULL,              -- JSON {name, description, triggers: {...}}
    published_version INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);

CREATE TABLE knowledge_model_versions (
    km           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    snapshot     TEXT    NOT NULL,                 -- JSON, as published
    published_at TEXT    NOT NULL,
    PRIMARY KEY (km, version)
) WITHOUT ROWID;

-- A stable number per (model, trigger), so the match index stays small.
CREATE TABLE triggers (
    tid     INTEGER PRIMARY KEY,
    km      TEXT NOT NULL,
    trigger TEXT NOT NULL,
    UNIQUE (km, trigger)
);

-- Triggers are matched once per event at append time: trigger -> offsets.
CREATE TABLE trigger_events (
    tid          INTEGER NOT NULL,
    event_offset INTEGER NOT NULL,
    PRIMARY KEY (tid, event_offset)
) WITHOUT ROWID;

-- Event classes seen, for discovery.
CREATE TABLE event_types (
    type       TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    grp        TEXT    NOT NULL,
    count      INTEGER NOT NULL,
    first_seen TEXT    NOT NULL,
    last_seen  TEXT    NOT NULL,
    PRIMARY KEY (type, source, grp)
) WITHOUT ROWID;

CREATE TABLE subscriptions (
    id                    TEXT PRIMARY KEY,
    owner                 TEXT    NOT NULL,
    km                    TEXT    NOT NULL,
    trigger               TEXT    NOT NULL,
    tid                   INTEGER NOT NULL,
    config                TEXT    NOT NULL,    -- JSON: name, callback, configurations, format, ...
    secrets               TEXT    NOT NULL,    -- JSON: current and previous signing secrets
    status                TEXT    NOT NULL,
    cursor                INTEGER NOT NULL,    -- the offset delivered up to (inclusive)
    latest_succeed_event  TEXT,
    latest_succeed_offset INTEGER,
    last_error            TEXT,
    delivered             INTEGER NOT NULL DEFAULT 0,
    skipped               INTEGER NOT NULL DEFAULT 0,
    lost                  INTEGER NOT NULL DEFAULT 0,
    failed_since          REAL,
    attempts              INTEGER NOT NULL DEFAULT 0,
    created_at            TEXT    NOT NULL,
    updated_at            TEXT    NOT NULL
);
CREATE INDEX subscriptions_by_trigger ON subscriptions (tid);

-- Recent delivery attempts, the last few per subscription.
CREATE TABLE attempts (
    subscription_id TEXT    NOT NULL,
    n               INTEGER NOT NULL,
    at              TEXT    NOT NULL,
    offsets         TEXT    NOT NULL,          -- JSON [first, last]
    status          INTEGER,                   -- NULL: no answer
    latency_ms      REAL    NOT NULL,
    error           TEXT,
    webhook_id      TEXT    NOT NULL,
    PRIMARY KEY (subscription_id, n)
) WITHOUT ROWID;
