"""CloudEvents in and out of HTTP: validation, binary/structured/batch parsing, producers' formats."""
