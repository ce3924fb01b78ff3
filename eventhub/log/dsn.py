"""The ``database`` setting: which backend a value names, and how to show it. A PostgreSQL
URL may hold a password (in its user part or as ``?password=``): everything that names the
database (start-up errors, log lines) shows ``masked(url)``, never the value itself."""

from __future__ import annotations

import urllib.parse

SCHEMES = ("postgresql", "postgres")
_HIDDEN = "***"


def is_postgres(database: str) -> bool:
    """Whether ``database`` is a PostgreSQL URL (``postgresql://`` or ``postgres://``)."""
    scheme, sep, _ = database.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def masked(database: str) -> str:
    """``database`` with any password replaced by ``***``: safe to log and to show. A value
    that does not parse as a URL is hidden whole after its scheme (it may be a mistyped
    one with a password in it)."""
    try:
        parts = urllib.parse.urlsplit(database)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            name, sep, _ = user.partition(":")
            netloc = f"{name}:{_HIDDEN}@{host}" if sep else f"{name}@{host}"
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        shown = [(k, _HIDDEN if k.lower() == "password" else v) for k, v in query]
        # Not urlunsplit: it drops the "//" of an empty host (a Unix socket's URL).
        query_text = urllib.parse.urlencode(shown, safe="/*")
        return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query_text}" if query_text else "")
    except ValueError:
        scheme, sep, _ = database.partition("://")
        return f"{scheme}://{_HIDDEN}" if sep else _HIDDEN


def where(database: str) -> str:
    """Host and database of a PostgreSQL URL, for a one-line refusal: ``host/db``."""
    try:
        parts = urllib.parse.urlsplit(database)
        query = dict(urllib.parse.parse_qsl(parts.query))
        host = parts.hostname or query.get("host") or "localhost"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        name = parts.path.lstrip("/") or query.get("dbname") or "(default database)"
    except ValueError:
        return masked(database)
    return f"{host}/{name}"


def scrub(text: str, database: str) -> str:
    """``text`` (a driver's error message) with the URL's password, if any, replaced."""
    try:
        parts = urllib.parse.urlsplit(database)
        secrets = [parts.password] + [
            v for k, v in urllib.parse.parse_qsl(parts.query) if k.lower() == "password"
        ]
    except ValueError:
        return text
    for secret in secrets:
        # As written, and percent-decoded as the driver uses it.
        for form in {secret, urllib.parse.unquote(secret)} if secret else ():
            text = text.replace(form, _HIDDEN)
    return text
