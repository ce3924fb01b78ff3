-- Leases (SPEC §9): which process delivers which subscription. One row per leased thing
-- (kind 'subscription'); a process renews its rows' expires_at, by the database's clock
-- (now()), every lease_seconds / 3. A row whose expires_at has passed is free to claim.
-- Nodes heartbeat in their own table, so a process can count the live ones and take its
-- fair share (ceil(subscriptions / live nodes)).

CREATE TABLE leases (
    kind       TEXT COLLATE "C" NOT NULL,
    id         TEXT COLLATE "C" NOT NULL,
    owner      TEXT COLLATE "C" NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX leases_owner ON leases (owner);

CREATE TABLE nodes (
    id         TEXT COLLATE "C" PRIMARY KEY,
    seen_until TIMESTAMPTZ NOT NULL
);
