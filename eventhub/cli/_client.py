"""What every client command shares: the ``--url``/``--key`` arguments, one API call whose
refusal is one line on stderr and exit status 1, and the two ways of printing an answer
(the API's JSON for programs, ``--json``; a table for a reader)."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from typing import Any, TypeAlias
from urllib.parse import quote

# The subcommand registry argparse hands out; each command group adds its parsers to it.
# argparse names no public type for it; the string keeps the subscript away from runtime.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def client(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument(
        "--url",
        default=os.environ.get("EVENTHUB_URL", "http://127.0.0.1:8080"),
        help="the hub's address (default: EVENTHUB_URL, else http://127.0.0.1:8080)",
    )
    p.add_argument(
        "--key",
        default=os.environ.get("EVENTHUB_KEY"),
        help="an API key (default: EVENTHUB_KEY); prefer the variable: a flag shows in ps",
    )
    return p


def reader(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A read command: the client arguments and ``--json``."""
    client(p)
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    return p


def segment(value: str) -> str:
    """``value`` as one percent-encoded path segment."""
    return quote(value, safe="")


def call(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
) -> Any:
    """The JSON answer of ``method path``; a refusal or an unreachable hub ends the command
    with one line on stderr and exit status 1 (``SystemExit`` with a message)."""
    if not args.key:
        raise SystemExit("eventhub: give an API key with --key or EVENTHUB_KEY")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        args.url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {args.key}", "Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"eventhub: {exc.code} {_refusal(exc.read())}") from None
    except urllib.error.URLError as exc:
        raise SystemExit(f"eventhub: cannot reach {args.url}: {exc.reason}") from None
    return json.loads(raw) if raw else None


def _refusal(raw: bytes) -> str:
    """The hub's error shape ``{"error": {code, message, details}}`` as one line; anything
    else (a proxy's page) as it came, its line breaks folded."""
    try:
        error = json.loads(raw)["error"]
        line = f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return " ".join(raw.decode(errors="replace").split())
    details = error.get("details") or []
    if details:
        line += " (" + "; ".join(_detail(d) for d in details) + ")"
    return line


def _detail(detail: Any) -> str:
    if not isinstance(detail, dict):
        return str(detail)
    where = [f"{k} {detail[k]}" for k in ("index", "attribute") if k in detail]
    return ", ".join([*where, str(detail.get("reason", ""))])


def show(value: Any) -> int:
    """Print ``value`` as indented JSON; exit status 0."""
    if value is not None:
        print(json.dumps(value, indent=2))
    return 0


def table(header: list[str], rows: list[list[str]]) -> None:
    """Columns padded to their widest cell, for a reader rather than a program (``--json``)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
