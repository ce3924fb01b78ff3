"""``eventhub instances list|get|cancel|unrouted``: process instances (``/api/instances``)
and the events that named none (``/api/unrouted``)."""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import urlencode

from eventhub.cli._client import Commands, call, reader, segment, show, table


def add(commands: Commands) -> None:
    instances = commands.add_parser(
        "instances", help="read and cancel process instances"
    ).add_subparsers(required=True)
    listing = reader(instances.add_parser("list", help="instances, oldest first"))
    listing.add_argument("--definition", help="only this definition's")
    listing.add_argument(
        "--state", help="only this state (Running, Waiting, Completed, Failed, TimedOut, Cancelled)"
    )
    listing.add_argument("--after", type=int, default=0, help="continue from a page's nextAfter")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=_list)
    get = reader(instances.add_parser("get", help="one instance: variables and history"))
    get.add_argument("id")
    get.set_defaults(func=_get)
    cancel = reader(instances.add_parser("cancel", help="cancel a Running or Waiting instance"))
    cancel.add_argument("id")
    cancel.set_defaults(func=_cancel)
    unrouted = reader(
        instances.add_parser("unrouted", help="events that named no live instance, by offset")
    )
    unrouted.add_argument("--after", type=int, default=0, help="continue from a page's nextAfter")
    unrouted.add_argument("--limit", type=int, default=100)
    unrouted.set_defaults(func=_unrouted)


def _list(args: argparse.Namespace) -> int:
    query: dict[str, Any] = {"after": args.after, "limit": args.limit}
    if args.definition is not None:
        query["definition"] = args.definition
    if args.state is not None:
        query["state"] = args.state
    found = call(args, "GET", f"/api/instances?{urlencode(query)}")
    if args.json:
        return show(found)
    rows = [
        [i["id"], i["definitionId"], str(i["version"]), i["state"], i["step"] or "", i["updatedAt"]]
        for i in found["instances"]
    ]
    table(["INSTANCE", "DEFINITION", "VERSION", "STATE", "STEP", "UPDATED"], rows)
    if found["nextAfter"] is not None:
        print(f"more: eventhub instances list --after {found['nextAfter']}")
    return 0


def _get(args: argparse.Namespace) -> int:
    found = call(args, "GET", f"/api/instances/{segment(args.id)}")
    if args.json:
        return show(found)
    _describe(found)
    return 0


def _cancel(args: argparse.Namespace) -> int:
    found = call(args, "POST", f"/api/instances/{segment(args.id)}/cancel")
    if args.json:
        return show(found)
    _describe(found)
    return 0


def _describe(instance: dict[str, Any]) -> None:
    started = instance["startedBy"]
    print(f"instance {instance['id']}")
    print(f"definition: {instance['definitionId']} (version {instance['version']})")
    print(f"state: {instance['state']}")
    print(f"step: {instance['step'] or '-'}")
    if instance.get("waitingFor"):
        print(f"waiting for: {instance['waitingFor']}")
    if instance.get("error"):
        print(f"error: {instance['error']}")
    print(f"started by: {started['source']} {started['id']} (offset {started['offset']})")
    print("variables:" if instance["variables"] else "variables: none")
    for name, value in instance["variables"].items():
        print(f"  {name} = {json.dumps(value)}")
    rows = [
        [
            e["at"],
            e["step"] or "",
            e["what"],
            "" if e.get("offset") is None else str(e["offset"]),
            e.get("detail") or "",
        ]
        for e in instance.get("history", [])
    ]
    print("history:")
    table(["AT", "STEP", "WHAT", "OFFSET", "DETAIL"], rows)


def _unrouted(args: argparse.Namespace) -> int:
    query = urlencode({"after": args.after, "limit": args.limit})
    found = call(args, "GET", f"/api/unrouted?{query}")
    if args.json:
        return show(found)
    rows = [
        [str(e["offset"]), e["source"], e["id"], e["type"], e["cxpinstanceid"], e["reason"]]
        for e in found["events"]
    ]
    table(["OFFSET", "SOURCE", "ID", "TYPE", "INSTANCE", "REASON"], rows)
    if found["nextAfter"] is not None:
        print(f"more: eventhub instances unrouted --after {found['nextAfter']}")
    return 0
