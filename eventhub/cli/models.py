"""``eventhub models list|get|apply|publish``: knowledge models and their triggers (SPEC §3).

``apply`` takes the catalogue file's shape (``[models.<id>]`` with ``[[models.<id>.triggers]]``)
and PUTs each model's draft and triggers; ``--publish`` (or ``publish`` later) makes the draft
what consumers see. A trigger the file leaves out is not deleted."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from eventhub import errors, tomlfile
from eventhub.cli._client import Commands, call, client, reader, segment, show, table

KM = "/intelligence/api/knowledge-models"


def add(commands: Commands) -> None:
    models = commands.add_parser(
        "models", help="knowledge models and their triggers"
    ).add_subparsers(required=True)
    reader(models.add_parser("list", help="published models")).set_defaults(func=_list)
    get = reader(models.add_parser("get", help="a published model and its triggers"))
    get.add_argument("km")
    get.set_defaults(func=_get)
    apply = client(
        models.add_parser("apply", help="PUT the [models.<id>] drafts and triggers of a TOML file")
    )
    apply.add_argument("file", type=Path)
    apply.add_argument("--publish", action="store_true", help="publish each model afterwards")
    apply.set_defaults(func=_apply)
    publish = reader(models.add_parser("publish", help="publish a model's draft"))
    publish.add_argument("km")
    publish.set_defaults(func=_publish)


def _list(args: argparse.Namespace) -> int:
    found = call(args, "GET", KM)
    if args.json:
        return show(found)
    rows = [
        [m["id"], m["name"], str(m["version"]), m["publishedAt"] or ""] for m in found["content"]
    ]
    table(["MODEL", "NAME", "VERSION", "PUBLISHED"], rows)
    return 0


def _get(args: argparse.Namespace) -> int:
    found = call(args, "GET", f"{KM}/{segment(args.km)}")
    if args.json:
        return show(found)
    print(f"model {found['id']} ({found['name']}), version {found['version']}")
    rows = [
        [t["id"], t["name"], json.dumps(t["filters"], separators=(",", ":"))]
        for t in found["triggers"]
    ]
    table(["TRIGGER", "NAME", "FILTERS"], rows)
    return 0


def _models_of(path: Path) -> dict[str, Any]:
    try:
        document = tomlfile.load(path)
    except errors.InvalidRequest as exc:
        raise SystemExit(f"eventhub: {exc.message}") from None
    except OSError as exc:
        raise SystemExit(f"eventhub: cannot read {path}: {exc.strerror}") from None
    models = document.get("models")
    if not isinstance(models, dict) or not models:
        raise SystemExit(f"eventhub: {path}: no [models.<id>] tables")
    return models


def _apply(args: argparse.Namespace) -> int:
    for km, model in _models_of(args.file).items():
        if not isinstance(model, dict):
            raise SystemExit(f"eventhub: {args.file}: models.{km} must be a table")
        base = f"{KM}/{segment(km)}"
        body = {"name": model.get("name", km), "description": model.get("description", "")}
        call(args, "PUT", base, body)
        triggers = model.get("triggers", [])
        if not isinstance(triggers, list):
            raise SystemExit(f"eventhub: {args.file}: models.{km}.triggers must be a list")
        for trigger in triggers:
            if not isinstance(trigger, dict) or not isinstance(trigger.get("id"), str):
                raise SystemExit(f"eventhub: {args.file}: models.{km}: a trigger needs an id")
            call(
                args,
                "PUT",
                f"{base}/triggers/{segment(trigger['id'])}",
                {
                    "name": trigger.get("name", trigger["id"]),
                    "description": trigger.get("description", ""),
                    "filters": trigger.get("filters", []),
                },
            )
        print(f"applied model {km}: {len(triggers)} trigger(s)")
        if args.publish:
            published = call(args, "POST", f"{base}/publish")
            print(f"published model {km} (version {published['version']})")
    return 0


def _publish(args: argparse.Namespace) -> int:
    found = call(args, "POST", f"{KM}/{segment(args.km)}/publish")
    if args.json:
        return show(found)
    print(f"published model {found['id']} (version {found['version']})")
    return 0
