"""``eventhub send`` (a test event) and ``eventhub tail`` (the log, and with ``--follow`` what
is appended from now on, through the long poll ``GET /events?after=N&wait=S``)."""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from eventhub.cli._client import Commands, call, reader, show

# Seconds one long poll waits: under the client's 30 s request timeout.
_POLL_SECONDS = 20
_PAGE = 500


def add(commands: Commands) -> None:
    send = reader(commands.add_parser("send", help="send one CloudEvent (structured mode)"))
    send.add_argument("--source", required=True)
    send.add_argument("--type", required=True)
    send.add_argument("--id", help="the event id (default: a random one)")
    send.add_argument("--subject")
    send.add_argument("--data", help="JSON data (default: none)")
    send.add_argument(
        "--instance", metavar="ID", help="cxpinstanceid: the process instance it names"
    )
    send.set_defaults(func=_send)
    tail = reader(commands.add_parser("tail", help="read the log; --follow keeps reading"))
    tail.add_argument("--after", type=int, help="from this offset (default: the last 10)")
    tail.add_argument("-f", "--follow", action="store_true", help="wait for new events")
    tail.add_argument("--type", help="only events of this type")
    tail.add_argument("--source", help="only events of this source")
    tail.set_defaults(func=_tail)


def _send(args: argparse.Namespace) -> int:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": args.id or uuid.uuid4().hex,
        "source": args.source,
        "type": args.type,
    }
    if args.subject:
        event["subject"] = args.subject
    if args.instance:
        event["cxpinstanceid"] = args.instance
    if args.data is not None:
        try:
            event["data"] = json.loads(args.data)
        except ValueError as exc:
            raise SystemExit(f"eventhub: --data is not JSON: {exc}") from None
        event["datacontenttype"] = "application/json"
    receipt = call(args, "POST", "/events", event, "application/cloudevents+json")
    if args.json:
        return show(receipt)
    for entry in receipt["events"]:
        line = f"offset {entry['offset']}: {entry['source']} {entry['id']}"
        if entry["duplicate"]:
            line += " (a duplicate: already stored)"
        if "correlation" in entry:
            line += f", {entry['correlation']}"
        print(line)
    return 0


def _tail(args: argparse.Namespace) -> int:
    after = args.after
    if after is None:  # the last ten events: the answer says where the log's head is
        after = max(call(args, "GET", "/events?after=0&limit=1")["head"] - 10, 0)
    try:
        while True:
            wait = _POLL_SECONDS if args.follow else 0
            page = call(args, "GET", f"/events?after={after}&limit={_PAGE}&wait={wait}")
            for entry in page["events"]:
                _print(args, entry)
            after = page["nextAfter"]
            if not page["events"] and not args.follow:
                return 0
    except KeyboardInterrupt:
        return 0


def _print(args: argparse.Namespace, entry: dict[str, Any]) -> None:
    event = entry["event"]
    if args.type and event.get("type") != args.type:
        return
    if args.source and event.get("source") != args.source:
        return
    if args.json:
        print(json.dumps(entry), flush=True)
        return
    time = event.get("time") or entry["receivedAt"]
    print(
        f"{entry['offset']}  {time}  {event['source']}  {event['type']}  {event['id']}", flush=True
    )
