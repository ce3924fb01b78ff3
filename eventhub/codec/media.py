"""Media types: which are JSON, which are text, which are CloudEvents formats."""

from __future__ import annotations

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


def essence(content_type: str | None) -> str:
    """``type/subtype`` in lower case, without parameters."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    """JSON media types per json-format.md §3.1: ``*/json`` and ``*/*+json``; none means JSON."""
    e = essence(content_type)
    return e == "" or e.endswith("/json") or e.endswith("+json")


def is_text(content_type: str | None) -> bool:
    e = essence(content_type)
    return (
        e.startswith("text/")
        or e.endswith("/xml")
        or e.endswith("+xml")
        or e in ("application/javascript", "application/x-www-form-urlencoded", "application/yaml")
    )
