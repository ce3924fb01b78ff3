"""``eventhub keys create|list|revoke``: API keys (``/admin/keys``)."""

from __future__ import annotations

import argparse

from eventhub.cli._client import Commands, call, client, reader, segment, show, table


def add(commands: Commands) -> None:
    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(required=True)
    create = client(keys.add_parser("create", help="create a key (printed once)"))
    create.add_argument("--role", required=True, choices=["admin", "producer", "consumer"])
    create.add_argument("--name", default="")
    create.add_argument("--source", action="append", help="limit a producer key to a source")
    create.set_defaults(func=_create)
    reader(keys.add_parser("list", help="list keys, revoked ones too")).set_defaults(func=_list)
    revoke = client(keys.add_parser("revoke", help="revoke a key by id"))
    revoke.add_argument("id")
    revoke.set_defaults(func=_revoke)


def _create(args: argparse.Namespace) -> int:
    body = {"name": args.name, "role": args.role, "sources": args.source or None}
    return show(call(args, "POST", "/admin/keys", body))


def _list(args: argparse.Namespace) -> int:
    found = call(args, "GET", "/admin/keys")
    if args.json:
        return show(found)
    rows = [
        [
            k["id"],
            k["role"],
            k["name"] or "-",
            "any" if k["sources"] is None else ",".join(k["sources"]),
            k["createdAt"],
            k["revokedAt"] or "-",
        ]
        for k in found["keys"]
    ]
    table(["ID", "ROLE", "NAME", "SOURCES", "CREATED", "REVOKED"], rows)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    return show(call(args, "DELETE", f"/admin/keys/{segment(args.id)}"))
