"""The append-only event log and the records kept beside it (keys, sources)."""
