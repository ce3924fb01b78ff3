"""The PostgreSQL server and the per-test database (``pg_server``, ``pg_dsn``) are the whole
suite's: ``tests/postgres.py``, loaded by ``tests/conftest.py``."""
