"""The ``eventhub`` command: ``serve`` runs the hub; the other commands are a thin client of
the admin API of a running hub (``--url``/``EVENTHUB_URL``, ``--key``/``EVENTHUB_KEY``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from eventhub import errors, settings


def _serve(args: argparse.Namespace) -> int:
    from eventhub import server

    flags = {"host": args.host, "port": args.port, "data": args.data}
    try:
        built = settings.load(flags, config_file=args.config)
    except (errors.EventHubError, OSError) as exc:
        print(f"eventhub: {exc}", file=sys.stderr)
        return 2
    try:
        server.run(built)
    except errors.EventHubError as exc:
        # Raised while building the hub, before the server starts: a secret key that does
        # not fit the database (log/sealing.py). One line, no traceback.
        print(f"eventhub: {exc}", file=sys.stderr)
        return 2
    return 0


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    if not args.key:
        raise SystemExit("eventhub: give an API key with --key or EVENTHUB_KEY")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        args.url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"eventhub: {exc.code} {exc.read().decode(errors='replace')}") from None
    except urllib.error.URLError as exc:
        raise SystemExit(f"eventhub: cannot reach {args.url}: {exc.reason}") from None
    return json.loads(raw) if raw else None


def _print(value: Any) -> int:
    if value is not None:
        print(json.dumps(value, indent=2))
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    body = {"name": args.name, "role": args.role, "sources": args.source or None}
    return _print(_call(args, "POST", "/admin/keys", body))


def _keys_list(args: argparse.Namespace) -> int:
    return _print(_call(args, "GET", "/admin/keys"))


def _keys_revoke(args: argparse.Namespace) -> int:
    return _print(_call(args, "DELETE", f"/admin/keys/{quote(args.id, safe='')}"))


def _sources_put(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.require_signature is not None:
        body["requireSignature"] = args.require_signature
    if args.max_body_bytes is not None:
        body["maxBodyBytes"] = args.max_body_bytes or None  # 0: back to the default
    if args.secret:
        body["secret"] = args.secret
    if args.rotate_secret:
        body["rotateSecret"] = True
    return _print(_call(args, "PUT", f"/admin/sources/{quote(args.name, safe='')}", body))


def _sources_list(args: argparse.Namespace) -> int:
    return _print(_call(args, "GET", "/admin/sources"))


def _sources_delete(args: argparse.Namespace) -> int:
    return _print(_call(args, "DELETE", f"/admin/sources/{quote(args.name, safe='')}"))


def _table(header: list[str], rows: list[list[str]]) -> None:
    """Columns padded to their widest cell, for a reader rather than a program (``--json``)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _traces_list(args: argparse.Namespace) -> int:
    found = _call(args, "GET", f"/api/traces?after={args.after}&limit={args.limit}")
    if args.json:
        return _print(found)
    rows = [
        [t["traceId"], str(t["events"]), t["firstTime"], t["lastTime"]] for t in found["traces"]
    ]
    _table(["TRACE", "EVENTS", "FIRST", "LAST"], rows)
    if found["nextAfter"] is not None:
        print(f"more: eventhub traces list --after {found['nextAfter']}")
    return 0


def _traces_get(args: argparse.Namespace) -> int:
    trace = _call(args, "GET", f"/api/traces/{quote(args.id, safe='')}")
    if args.json:
        return _print(trace)
    print(f"trace {trace['traceId']}")
    rows = [
        [e["time"], e["type"], e["source"], e["id"], e["group"] or "", str(e["revision"])]
        for e in trace["events"]
    ]
    _table(["TIME", "TYPE", "SOURCE", "ID", "GROUP", "REVISION"], rows)
    if trace["variables"]:
        print("variables:")
        for name, value in trace["variables"].items():
            print(f"  {name} = {json.dumps(value)}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="eventhub", description="A self-hosted CloudEvents hub.")
    commands = top.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the hub")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8080)")
    serve.add_argument("--data", type=Path, help="SQLite database file")
    serve.add_argument("--config", type=Path, help="TOML settings file")
    serve.set_defaults(func=_serve)

    def client(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--url", default=os.environ.get("EVENTHUB_URL", "http://127.0.0.1:8080"))
        p.add_argument("--key", default=os.environ.get("EVENTHUB_KEY"))
        return p

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(required=True)
    create = client(keys.add_parser("create", help="create a key (printed once)"))
    create.add_argument("--role", required=True, choices=["admin", "producer", "consumer"])
    create.add_argument("--name", default="")
    create.add_argument("--source", action="append", help="limit a producer key to a source")
    create.set_defaults(func=_keys_create)
    client(keys.add_parser("list", help="list keys")).set_defaults(func=_keys_list)
    revoke = client(keys.add_parser("revoke", help="revoke a key by id"))
    revoke.add_argument("id")
    revoke.set_defaults(func=_keys_revoke)

    sources = commands.add_parser("sources", help="manage sources").add_subparsers(required=True)
    put = client(sources.add_parser("put", help="create or update a source"))
    put.add_argument("name")
    secret = put.add_mutually_exclusive_group()
    secret.add_argument(
        "--secret", help="set the shared secret (a new source without one gets a generated one)"
    )
    secret.add_argument(
        "--rotate-secret",
        action="store_true",
        help="replace the secret with a generated one, printed once (an update keeps it otherwise)",
    )
    put.add_argument(
        "--require-signature",
        action=argparse.BooleanOptionalAction,
        help="refuse unsigned requests for this source (an update keeps the current choice)",
    )
    put.add_argument(
        "--max-body-bytes",
        type=int,
        help="the largest body a request without an API key may send for this source"
        " (0: the hub's max_unauthenticated_body_bytes)",
    )
    put.set_defaults(func=_sources_put)
    client(sources.add_parser("list", help="list sources")).set_defaults(func=_sources_list)
    delete = client(sources.add_parser("delete", help="delete a source"))
    delete.add_argument("name")
    delete.set_defaults(func=_sources_delete)
    trace_commands = commands.add_parser(
        "traces", help="read traces (events sharing a traceid)"
    ).add_subparsers(required=True)
    listing = client(trace_commands.add_parser("list", help="traces, most recently active first"))
    listing.add_argument("--after", type=int, default=0, help="continue from a page's nextAfter")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="print the API's JSON")
    listing.set_defaults(func=_traces_list)
    get = client(trace_commands.add_parser("get", help="one trace: its events and variables"))
    get.add_argument("id")
    get.add_argument("--json", action="store_true", help="print the API's JSON")
    get.set_defaults(func=_traces_get)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
