"""``eventhub traces list|get``: events sharing a ``traceid`` (``/api/traces``)."""

from __future__ import annotations

import argparse
import json

from eventhub.cli._client import Commands, call, reader, segment, show, table


def add(commands: Commands) -> None:
    traces = commands.add_parser(
        "traces", help="read traces (events sharing a traceid)"
    ).add_subparsers(required=True)
    listing = reader(traces.add_parser("list", help="traces, most recently active first"))
    listing.add_argument("--after", type=int, default=0, help="continue from a page's nextAfter")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=_list)
    get = reader(traces.add_parser("get", help="one trace: its events and variables"))
    get.add_argument("id")
    get.set_defaults(func=_get)


def _list(args: argparse.Namespace) -> int:
    found = call(args, "GET", f"/api/traces?after={args.after}&limit={args.limit}")
    if args.json:
        return show(found)
    rows = [
        [t["traceId"], str(t["events"]), t["firstTime"], t["lastTime"]] for t in found["traces"]
    ]
    table(["TRACE", "EVENTS", "FIRST", "LAST"], rows)
    if found["nextAfter"] is not None:
        print(f"more: eventhub traces list --after {found['nextAfter']}")
    return 0


def _get(args: argparse.Namespace) -> int:
    trace = call(args, "GET", f"/api/traces/{segment(args.id)}")
    if args.json:
        return show(trace)
    print(f"trace {trace['traceId']}")
    rows = [
        [e["time"], e["type"], e["source"], e["id"], e["group"] or "", str(e["revision"])]
        for e in trace["events"]
    ]
    table(["TIME", "TYPE", "SOURCE", "ID", "GROUP", "REVISION"], rows)
    if trace["variables"]:
        print("variables:")
        for name, value in trace["variables"].items():
            print(f"  {name} = {json.dumps(value)}")
    return 0
