-- The catalogue's version (issue 12, keys/sources/catalogue shared between processes): moved
-- by every commit that changes what matches events (a model published or deleted), under the
-- log head's row lock that every append takes first. An append reads it with that lock, in
-- the same statement, and reloads its match index when it moved (log/postgres/store.py):
-- so an event is matched against every model published before it was appended, whichever
-- process published it.
ALTER TABLE log_head ADD COLUMN catalogue_version BIGINT NOT NULL DEFAULT 0;
