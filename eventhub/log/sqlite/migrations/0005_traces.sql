-- Traces (SPEC §6.1; eventhub/traces.py has the definitions). Kept in the append transaction,
-- so no read scans the log: one membership row per (source, id), which a new revision
-- replaces (same trace), moves (another traceid) or deletes (no traceid any more).
CREATE TABLE trace_members (
    source       TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    trace_id     TEXT    NOT NULL,
    time_key     TEXT    NOT NULL,  -- eventhub.traces.time_key of time: sorts by instant
    time         TEXT    NOT NULL,  -- the time attribute, else the time the hub received it
    event_offset INTEGER NOT NULL,  -- the current revision's offset
    PRIMARY KEY (source, id)
) WITHOUT ROWID;
CREATE INDEX trace_members_in_order ON trace_members (trace_id, time_key, event_offset);
CREATE INDEX trace_members_by_offset ON trace_members (trace_id, event_offset);

-- One row per trace with at least one member: what the list shows, and its paging key.
CREATE TABLE traces (
    trace_id   TEXT    PRIMARY KEY,
    events     INTEGER NOT NULL,
    first_key  TEXT    NOT NULL,
    first_time TEXT    NOT NULL,    -- time of the first member in trace order
    last_key   TEXT    NOT NULL,
    last_time  TEXT    NOT NULL,    -- time of the last member in trace order
    activity   INTEGER NOT NULL     -- the highest offset among the members: unique per trace
) WITHOUT ROWID;
CREATE INDEX traces_by_activity ON traces (activity);

-- Joining is counted by the store, one upsert per trace a flush (log/sqlite/append.py
-- _write_members): it writes only new members, each with the highest offset so far. Leaving
-- (a new revision of a member is first deleted, then joins again if it has a traceid)
-- recomputes the trace's bounds here, from the indexes above: a few B-tree probes, never a
-- scan; a trace that loses its last member goes.
CREATE TRIGGER trace_member_leaves AFTER DELETE ON trace_members BEGIN
    DELETE FROM traces WHERE trace_id = old.trace_id AND events = 1;
    UPDATE traces SET
        events = events - 1,
        first_key = (SELECT time_key FROM trace_members WHERE trace_id = old.trace_id
            ORDER BY time_key, event_offset LIMIT 1),
        first_time = (SELECT time FROM trace_members WHERE trace_id = old.trace_id
            ORDER BY time_key, event_offset LIMIT 1),
        last_key = (SELECT time_key FROM trace_members WHERE trace_id = old.trace_id
            ORDER BY time_key DESC, event_offset DESC LIMIT 1),
        last_time = (SELECT time FROM trace_members WHERE trace_id = old.trace_id
            ORDER BY time_key DESC, event_offset DESC LIMIT 1),
        activity = (SELECT max(event_offset) FROM trace_members WHERE trace_id = old.trace_id)
        WHERE trace_id = old.trace_id;
END
