"""``eventhub processes apply|list|get|delete``: process definitions (``/api/processes``).

``apply`` reads ``[processes.<id>]`` tables from a TOML file, the shape the catalogue file
takes at start (``eventhub.processes.definition_file``), and PUTs each one: a new version
every time, running instances staying on theirs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import msgspec

from eventhub import errors, tomlfile
from eventhub.cli._client import Commands, call, client, reader, segment, show, table
from eventhub.processes import definition_file


def add(commands: Commands) -> None:
    processes = commands.add_parser("processes", help="manage process definitions").add_subparsers(
        required=True
    )
    apply = client(
        processes.add_parser(
            "apply", help="create or update the [processes.<id>] definitions of a TOML file"
        )
    )
    apply.add_argument("file", type=Path)
    apply.add_argument("--json", action="store_true", help="print the API's answers as JSON")
    apply.set_defaults(func=_apply)
    reader(processes.add_parser("list", help="list definitions")).set_defaults(func=_list)
    get = reader(processes.add_parser("get", help="one definition: its start and steps"))
    get.add_argument("id")
    get.set_defaults(func=_get)
    delete = client(processes.add_parser("delete", help="delete a definition"))
    delete.add_argument("id")
    delete.add_argument(
        "--cancel-instances",
        action="store_true",
        help="cancel its live instances first (without it, a definition with any is kept: 409)",
    )
    delete.set_defaults(func=_delete)


def _apply(args: argparse.Namespace) -> int:
    try:
        found = definition_file.bodies(tomlfile.load(args.file), args.file)
    except errors.EventHubError as exc:
        raise SystemExit(f"eventhub: {exc.message}") from None
    except OSError as exc:
        raise SystemExit(f"eventhub: {exc}") from None
    if not found:
        raise SystemExit(f"eventhub: {args.file}: no [processes.<id>] table")
    answers = []
    for definition_id, body in found.items():
        # As the Struct writes it: what the file left out stays out (msgspec omits UNSET).
        body_json = msgspec.to_builtins(body)
        answer = call(args, "PUT", f"/api/processes/{segment(definition_id)}", body_json)
        answers.append(answer)
        if args.json:
            continue
        if "secret" in answer:  # only the answer that created it carries the secret
            print(f"created {definition_id} (version {answer['version']})")
            print(f"  signing secret (shown once): {answer['secret']}")
        else:
            print(f"updated {definition_id} (version {answer['version']})")
    return show({"processes": answers}) if args.json else 0


def _start(start: dict[str, Any]) -> str:
    if "filters" in start:
        return f"{len(start['filters'])} filter(s)"
    return f"{start['knowledgeModel']}/{start['trigger']}"


def _list(args: argparse.Namespace) -> int:
    found = call(args, "GET", "/api/processes")
    if args.json:
        return show(found)
    rows = [
        [p["id"], p["name"], str(p["version"]), _start(p["start"]), str(len(p["steps"]))]
        for p in found["processes"]
    ]
    table(["ID", "NAME", "VERSION", "START", "STEPS"], rows)
    return 0


def _get(args: argparse.Namespace) -> int:
    found = call(args, "GET", f"/api/processes/{segment(args.id)}")
    if args.json:
        return show(found)
    print(f"process {found['id']}: {found['name']} (version {found['version']})")
    print(f"start: {_start(found['start'])}")
    print(f"bufferSeconds: {found['bufferSeconds']:g}")
    print(f"updated: {found['updatedAt']}")
    rows = []
    for step in found["steps"]:
        if "call" in step:
            rows.append([step["id"], "call", step["call"]["uri"], ""])
        else:
            timeout = step["wait"].get("timeoutSeconds")
            rows.append(
                [
                    step["id"],
                    "wait",
                    step["wait"]["type"],
                    "" if timeout is None else f"{timeout:g}",
                ]
            )
    table(["STEP", "KIND", "TARGET", "TIMEOUT"], rows)
    return 0


def _delete(args: argparse.Namespace) -> int:
    flag = "?cancelInstances=true" if args.cancel_instances else ""
    call(args, "DELETE", f"/api/processes/{segment(args.id)}{flag}")
    print(f"deleted {args.id}")
    return 0
