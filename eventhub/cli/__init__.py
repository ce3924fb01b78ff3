"""The ``eventhub`` command: ``serve`` runs the hub; the other commands are a thin client of
the API of a running hub (``--url``/``EVENTHUB_URL``, ``--key``/``EVENTHUB_KEY``), one module
per command group. Reads print a table, or the API's JSON with ``--json``; a refusal is one
line on stderr and exit status 1 (``_client.call``)."""

from __future__ import annotations

import argparse
import sys

from eventhub.cli import (
    backup,
    events,
    instances,
    keys,
    migrate,
    models,
    processes,
    serve,
    sources,
    subscriptions,
    traces,
)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="eventhub", description="A self-hosted CloudEvents hub.")
    commands = top.add_subparsers(dest="command", required=True)
    for group in (
        serve,
        keys,
        sources,
        models,
        subscriptions,
        events,
        traces,
        processes,
        instances,
        backup,
        migrate,
    ):
        group.add(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
