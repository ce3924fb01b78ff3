"""``eventhub sources put|list|delete``: registered sources (``/admin/sources``)."""

from __future__ import annotations

import argparse
from typing import Any

from eventhub.cli._client import Commands, call, client, reader, segment, show, table


def add(commands: Commands) -> None:
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
    put.set_defaults(func=_put)
    reader(sources.add_parser("list", help="list sources")).set_defaults(func=_list)
    delete = client(sources.add_parser("delete", help="delete a source"))
    delete.add_argument("name")
    delete.set_defaults(func=_delete)


def _put(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.require_signature is not None:
        body["requireSignature"] = args.require_signature
    if args.max_body_bytes is not None:
        body["maxBodyBytes"] = args.max_body_bytes or None  # 0: back to the default
    if args.secret:
        body["secret"] = args.secret
    if args.rotate_secret:
        body["rotateSecret"] = True
    return show(call(args, "PUT", f"/admin/sources/{segment(args.name)}", body))


def _list(args: argparse.Namespace) -> int:
    found = call(args, "GET", "/admin/sources")
    if args.json:
        return show(found)
    rows = [
        [
            s["name"],
            "yes" if s["requireSignature"] else "no",
            "default" if s["maxBodyBytes"] is None else str(s["maxBodyBytes"]),
            s["createdAt"],
        ]
        for s in found["sources"]
    ]
    table(["NAME", "SIGNATURE REQUIRED", "MAX BODY BYTES", "CREATED"], rows)
    return 0


def _delete(args: argparse.Namespace) -> int:
    return show(call(args, "DELETE", f"/admin/sources/{segment(args.name)}"))
