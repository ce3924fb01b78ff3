"""``eventhub subscriptions …``: webhook subscriptions (SPEC §4), and ``eventhub status``,
their state and lag at a glance."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlencode

from eventhub.cli._client import Commands, call, reader, segment, show, table

SUBS = "/intelligence/api/subscriptions"
KM = "/intelligence/api/knowledge-models"
FORMATS = ("envelope", "binary", "structured", "batch")


def add(commands: Commands) -> None:
    subs = commands.add_parser("subscriptions", help="manage webhook subscriptions").add_subparsers(
        required=True
    )
    listing = reader(subs.add_parser("list", help="subscriptions: yours, or all for an admin"))
    listing.add_argument("--status", help="only this state (Active, Failed, Rejected, …)")
    listing.add_argument("--trigger", help="only this trigger's")
    listing.set_defaults(func=_list)
    get = reader(subs.add_parser("get", help="one subscription: state, offsets, lag, counts"))
    get.add_argument("id")
    get.set_defaults(func=_get)
    create = reader(subs.add_parser("create", help="subscribe a webhook to a trigger"))
    create.add_argument("km", help="the knowledge model")
    create.add_argument("trigger", help="the trigger")
    create.add_argument("--name", required=True)
    create.add_argument("--uri", required=True, help="the callback URL")
    create.add_argument(
        "--header", action="append", default=[], metavar="NAME=VALUE", help="a callback header"
    )
    create.add_argument("--format", choices=FORMATS)
    create.add_argument("--batch-size", type=int)
    create.add_argument("--max-retries", type=int)
    create.add_argument("--skip-errors", action="store_true", help="SKIP_ERRORS")
    create.set_defaults(func=_create)
    for name, path, what in (
        ("pause", "pause", "Active -> Paused; events keep queueing"),
        ("resume", "resume", "Paused -> Active, from where it paused"),
        ("resume-latest", "resume-from-latest", "Paused -> Active, skipping the backlog"),
    ):
        action = reader(subs.add_parser(name, help=what))
        action.add_argument("id")
        action.set_defaults(func=_action, path=path)
    replay = reader(subs.add_parser("replay", help="re-deliver from an offset"))
    replay.add_argument("id")
    replay.add_argument("--from-offset", type=int, required=True)
    replay.set_defaults(func=_replay)
    delete = reader(subs.add_parser("delete", help="delete a subscription and its queue"))
    delete.add_argument("id")
    delete.set_defaults(func=_delete)
    attempts = reader(subs.add_parser("attempts", help="recent delivery attempts"))
    attempts.add_argument("id")
    attempts.add_argument("--limit", type=int, default=20)
    attempts.set_defaults(func=_attempts)
    rotate = reader(
        subs.add_parser("rotate-secret", help="a new signing secret (the old one overlaps)")
    )
    rotate.add_argument("id")
    rotate.set_defaults(func=_rotate)
    status = reader(commands.add_parser("status", help="state and lag of every subscription"))
    status.set_defaults(func=_status)


def _rows(found: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            s["id"],
            s["name"],
            f"{s['knowledgeModelId']}/{s['triggerId']}",
            s["status"],
            str(s["offset"]),
            str(s["lag"]),
            s["lastError"] or "",
        ]
        for s in found
    ]


_HEADER = ["ID", "NAME", "TRIGGER", "STATUS", "OFFSET", "LAG", "LAST ERROR"]


def _list(args: argparse.Namespace) -> int:
    query = {k: v for k, v in (("status", args.status), ("trigger", args.trigger)) if v}
    found = call(args, "GET", f"{SUBS}?{urlencode(query)}" if query else SUBS)
    if args.json:
        return show(found)
    table(_HEADER, _rows(found["content"]))
    return 0


def _status(args: argparse.Namespace) -> int:
    found = call(args, "GET", SUBS)
    if args.json:
        return show(found)
    subs = found["content"]
    table(_HEADER, _rows(subs))
    states: dict[str, int] = {}
    for s in subs:
        states[s["status"]] = states.get(s["status"], 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "none"
    print(f"{len(subs)} subscription(s): {summary}; total lag {sum(s['lag'] for s in subs)}")
    return 0


def _describe(sub: dict[str, Any]) -> int:
    print(f"subscription {sub['id']} ({sub['name']})")
    print(f"trigger: {sub['knowledgeModelId']}/{sub['triggerId']}")
    print(f"status: {sub['status']}")
    print(f"callback: {sub['callbackInfo']['uri']}")
    print(f"format: {sub['format']}, batch size {sub['batchSize']}, retries {sub['maxRetries']}")
    print(f"offset: {sub['offset']} (lag {sub['lag']})")
    print(f"last error: {sub['lastError'] or '-'}")
    counts = sub["counts"]
    print(
        f"delivered {counts['delivered']}, skipped {counts['skipped']}, lost {counts['lost']};"
        f" attempts {sub['attempts']}"
    )
    return 0


def _get(args: argparse.Namespace) -> int:
    found = call(args, "GET", f"{SUBS}/{segment(args.id)}")
    return show(found) if args.json else _describe(found)


def _create(args: argparse.Namespace) -> int:
    headers = {}
    for item in args.header:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"eventhub: --header takes NAME=VALUE, not {item!r}")
        headers[name] = value
    body: dict[str, Any] = {
        "name": args.name,
        "callbackInfo": {"uri": args.uri, "headers": headers},
    }
    for key, value in (
        ("format", args.format),
        ("batchSize", args.batch_size),
        ("maxRetries", args.max_retries),
    ):
        if value is not None:
            body[key] = value
    if args.skip_errors:
        body["configurations"] = ["SKIP_ERRORS"]
    path = f"{KM}/{segment(args.km)}/triggers/{segment(args.trigger)}/subscriptions"
    created = call(args, "POST", path, body)
    if args.json:
        return show(created)
    _describe(created)
    print(f"signing secret (shown once): {created['secret']}")
    return 0


def _action(args: argparse.Namespace) -> int:
    found = call(args, "PATCH", f"{SUBS}/{segment(args.id)}/{args.path}")
    return show(found) if args.json else _describe(found)


def _replay(args: argparse.Namespace) -> int:
    path = f"{SUBS}/{segment(args.id)}/replay?fromOffset={args.from_offset}"
    found = call(args, "PATCH", path)
    return show(found) if args.json else _describe(found)


def _delete(args: argparse.Namespace) -> int:
    call(args, "DELETE", f"{SUBS}/{segment(args.id)}")
    if not args.json:
        print(f"deleted subscription {args.id}")
    return 0


def _attempts(args: argparse.Namespace) -> int:
    found = call(args, "GET", f"{SUBS}/{segment(args.id)}/attempts?limit={args.limit}")
    if args.json:
        return show(found)
    rows = [
        [
            str(a["n"]),
            a["at"],
            f"{a['offsets'][0]}-{a['offsets'][1]}",
            str(a["statusCode"] if a["statusCode"] is not None else "-"),
            f"{a['latencyMs']:.1f}",
            a["error"] or "",
        ]
        for a in found["content"]
    ]
    table(["N", "AT", "OFFSETS", "STATUS", "MS", "ERROR"], rows)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    found = call(args, "POST", f"{SUBS}/{segment(args.id)}/rotate-secret")
    if args.json:
        return show(found)
    print(f"new signing secret (shown once): {found['secret']}")
    print(f"the previous secret still signs until {found['previousSecretExpiresAt']}")
    return 0
