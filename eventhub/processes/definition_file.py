"""Process definitions in a TOML file: ``[processes.<id>]`` tables in the shape of the
``PUT /api/processes/{id}`` body, for example::

    [processes.order-approval]
    name = "Order approval"
    start = { knowledgeModel = "orders", trigger = "created" }   # or start.filters = [...]
    [[processes.order-approval.steps]]
    id = "notify"
    call = { uri = "https://erp.example/hook", headers = { Authorization = "Bearer t" } }
    [[processes.order-approval.steps]]
    id = "approval"
    wait = { type = "order.approved", timeoutSeconds = 86400 }

The same reading serves the catalogue file at start (``apply``, after its models, so a start
may name a trigger of the same file) and ``eventhub processes apply FILE`` (``bodies``), so
both accept exactly the same files.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventhub import auth, errors, tomlfile
from eventhub.delivery import egress
from eventhub.processes import definitions

if TYPE_CHECKING:  # the CLI reads these files too, without the engine behind it
    from eventhub.processes.engine import Engine


def bodies(document: Mapping[str, Any], path: Path) -> dict[str, definitions.ProcessBody]:
    """The body of every ``[processes.<id>]`` table of ``document``, by id, in file order,
    converted to the API's ``definitions.ProcessBody`` (the same Struct that decodes
    ``PUT /api/processes/{id}``): a table of the wrong shape is refused here, naming the file
    and the key. ``definitions.parse`` judges the rest."""
    found = document.get("processes", {})
    if not isinstance(found, dict):
        raise errors.InvalidRequest(f"{path}: [processes] must be a table")
    out: dict[str, definitions.ProcessBody] = {}
    for definition_id, table in found.items():
        where = f"{path}: processes.{definition_id}"
        if not isinstance(table, dict):
            raise errors.InvalidRequest(f"{where} must be a table")
        try:
            _check_plain(table, "")
        except errors.InvalidRequest as exc:
            raise errors.InvalidRequest(f"{where}: {exc.message}") from None
        out[definition_id] = tomlfile.convert(table, definitions.ProcessBody, where)
    return out


async def apply(engine: Engine, path: Path, rules: egress.Rules, who: auth.Principal) -> list[str]:
    """Define the file's processes (after the engine has started); returns the ids that were
    created or changed. A definition equal to the stored one, version aside, is left alone,
    so a restart does not make a new version of every process."""
    found = bodies(tomlfile.load(path), path)
    changed: list[str] = []
    for definition_id, body in found.items():
        try:
            wanted = definitions.parse(definition_id, body, rules)
            current = engine.definitions.get(definition_id)
            if current is not None and _same(current.definition, wanted):
                continue
            await engine.put(definition_id, body, who)
        except errors.InvalidRequest as exc:
            raise errors.InvalidRequest(
                f"{path}: processes.{definition_id}: {exc.message}"
            ) from None
        changed.append(definition_id)
    return changed


def _same(a: definitions.Definition, b: definitions.Definition) -> bool:
    return dataclasses.replace(a, version=0) == dataclasses.replace(b, version=0)


def _check_plain(value: Any, where: str) -> None:
    """Refuse TOML's dates and times: a definition is JSON, and they have no JSON form."""
    if isinstance(value, (datetime.date, datetime.time)):
        raise errors.InvalidRequest(f"{where or 'a value'}: dates and times are not allowed")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
