-- Secrets at rest (SPEC §8). One row today: 'check', a known text sealed with the database's
-- key, so a start with another key is refused before it could seal anything with it. The
-- sealing of rows written before this version runs in Python after the migrations
-- (eventhub/log/sealing.py): SQL cannot encrypt.
CREATE TABLE vault (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
