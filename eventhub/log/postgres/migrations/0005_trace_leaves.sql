-- A flush that revises several members of one trace deletes them in one statement
-- (append.py's _LEAVE_TRACES). PostgreSQL runs AFTER ROW triggers once the statement is
-- done, so each run already sees every member gone, not only its own row as SQLite's does:
-- 0001's function kept a trace whose last members all left at once, with NULL bounds
-- (NOT NULL violation, the flush failed). Each run now looks at the members left: none,
-- and the trace goes; else its bounds are theirs and its count drops by this run's row.
CREATE OR REPLACE FUNCTION trace_member_leaves() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM trace_members WHERE trace_id = OLD.trace_id) THEN
        DELETE FROM traces WHERE trace_id = OLD.trace_id;
        RETURN NULL;
    END IF;
    UPDATE traces SET
        events = events - 1,
        first_key = (SELECT time_key FROM trace_members WHERE trace_id = OLD.trace_id
            ORDER BY time_key, event_offset LIMIT 1),
        first_time = (SELECT time FROM trace_members WHERE trace_id = OLD.trace_id
            ORDER BY time_key, event_offset LIMIT 1),
        last_key = (SELECT time_key FROM trace_members WHERE trace_id = OLD.trace_id
            ORDER BY time_key DESC, event_offset DESC LIMIT 1),
        last_time = (SELECT time FROM trace_members WHERE trace_id = OLD.trace_id
            ORDER BY time_key DESC, event_offset DESC LIMIT 1),
        activity = (SELECT max(event_offset) FROM trace_members WHERE trace_id = OLD.trace_id)
        WHERE trace_id = OLD.trace_id;
    RETURN NULL;
END
$$;
