-- The log: one row per revision of an event, in offset order.
CREATE TABLE events (
    event_offset INTEGER PRIMARY KEY AUTOINCREMENT,
    source       TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    revision     INTEGER NOT NULL,
    type         TEXT    NOT NULL,
    attributes   BLOB    NOT NULL,  -- JSON object of every context attribute
    data         BLOB,              -- the data bytes, NULL when the event has none
    data_kind    INTEGER NOT NULL,  -- eventhub.events.DataKind
    received_at  TEXT    NOT NULL
);

-- (source, id) identity: the latest revision and the digest of its content.
CREATE TABLE event_ids (
    source        TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    latest_offset INTEGER NOT NULL,
    revision      INTEGER NOT NULL,
    digest        BLOB    NOT NULL,
    PRIMARY KEY (source, id)
) WITHOUT ROWID;

CREATE TABLE api_keys (
    key_id     TEXT PRIMARY KEY,
    hash       BLOB NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'producer', 'consumer')),
    sources    TEXT,             -- JSON array of allowed sources; NULL means any
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE TABLE sources (
    name              TEXT PRIMARY KEY,
    secret            TEXT NOT NULL,
    require_signature INTEGER NOT NULL,
    created_at        TEXT NOT NULL
);
