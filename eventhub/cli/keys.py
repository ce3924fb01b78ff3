"""``eventhub keys create|list|revoke``: API keys (``/admin/keys``)."""

from __future__ import annotations

import argparse

from eventhub.cli._client import Commands, call, client, segment, show


def add(commands: Commands) -> None:
    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(required=True)
    create = client(keys.add_parser("create", help="create a key (printed once)"))
    create.add_argument("--role", required=True, choices=["admin", "producer", "consumer"])
    create.add_argument("--name", default="")
    create.add_argument("--source", action="append", help="limit a producer key to a source")
    create.set_defaults(func=_create)
    client(keys.add_parser("list", help="list keys")).set_defaults(func=_list)
    revoke = client(keys.add_parser("revoke", help="revoke a key by id"))
    revoke.add_argument("id")
    revoke.set_defaults(func=_revoke)


def _create(args: argparse.Namespace) -> int:
    body = {"name": args.name, "role": args.role, "sources": args.source or None}
    return show(call(args, "POST", "/admin/keys", body))


def _list(args: argparse.Namespace) -> int:
    return show(call(args, "GET", "/admin/keys"))


def _revoke(args: argparse.Namespace) -> int:
    return show(call(args, "DELETE", f"/admin/keys/{segment(args.id)}"))
