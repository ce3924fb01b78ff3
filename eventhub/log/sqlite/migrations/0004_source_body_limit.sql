-- A registered source's own body limit for requests without an API key (SPEC §8: such a body
-- is read "up to that source's limit"). NULL: the hub's max_unauthenticated_body_bytes.
ALTER TABLE sources ADD COLUMN max_body_bytes INTEGER
