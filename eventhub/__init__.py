"""eventhub: a self-hosted CloudEvents hub."""
