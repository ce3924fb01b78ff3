"""Knowledge models and their triggers: drafts edited by admins, versions published to
consumers, and the match index the log consults once per appended event.

Only published triggers match events: what consumers can discover is exactly what fires.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eventhub import errors, tomlfile
from eventhub.catalog import filters
from eventhub.clock import Clock, rfc3339
from eventhub.log.store import Store
from eventhub.models import ModelVersion


def _text(body: Mapping[str, Any], name: str, required: bool) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise errors.InvalidRequest(
            f"{name} is required and must be a non-empty string"
            if required
            else f"{name} must be a string"
        )
    return value


def _check_id(kind: str, value: str) -> None:
    if not value or len(value) > 200 or "/" in value:
        raise errors.InvalidRequest(f"a {kind} id must be 1-200 characters without '/'")


class Catalog:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self.drafts: dict[str, dict[str, Any]] = {}
        self.published: dict[str, ModelVersion] = {}
        self._tids: dict[tuple[str, str], int] = {}
        self.index = filters.TriggerIndex()

    async def load(self) -> None:
        self.drafts = {km: draft for km, draft, _ in await self._store.load_models()}
        self._tids = await self._store.trigger_ids()
        for snapshot in await self._store.load_published():
            self._install(ModelVersion.from_json(snapshot))

    def match(self, attributes: dict[str, Any]) -> list[int]:
        """The triggers an event fires; called by the writer for every new event."""
        return self.index.match(attributes)

    def _install(self, version: ModelVersion) -> None:
        previous = self.published.get(version.id)
        if previous is not None:
            for trigger_id in previous.triggers:
                self.index.remove(self._tids[(version.id, trigger_id)])
        for trigger in version.triggers.values():
            self.index.add(self._tids[(version.id, trigger.id)], list(trigger.filters))
        self.published[version.id] = version

    # -- admin edits -------------------------------------------------------------------------

    def _draft(self, km: str) -> dict[str, Any]:
        draft = self.drafts.get(km)
        if draft is None:
            raise errors.NotFound(f"no knowledge model {km!r}")
        return draft

    async def put_model(self, km: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.InvalidRequest("send a JSON object {name, description}")
        _check_id("knowledge model", km)
        previous = self.drafts.get(km, {})
        draft = {
            "id": km,
            "name": _text(body, "name", True),
            "description": _text(body, "description", False),
            "triggers": previous.get("triggers", []),
        }
        await self._store.save_draft(km, draft, rfc3339(self._clock.now()))
        self.drafts[km] = draft
        return draft

    async def put_trigger(self, km: str, trigger_id: str, body: Any) -> dict[str, Any]:
        draft = self._draft(km)
        if not isinstance(body, dict):
            raise errors.InvalidRequest("send a JSON object {name, description, filters}")
        _check_id("trigger", trigger_id)
        raw_filters = body.get("filters", [])
        if not isinstance(raw_filters, list):
            raise errors.InvalidRequest("filters must be a list of filter expressions")
        filters.compile_filters(raw_filters)  # refuse what could never be published
        trigger = {
            "id": trigger_id,
            "name": _text(body, "name", True),
            "description": _text(body, "description", False),
            "filters": raw_filters,
        }
        triggers = [t for t in draft["triggers"] if t["id"] != trigger_id]
        position = next(
            (i for i, t in enumerate(draft["triggers"]) if t["id"] == trigger_id), len(triggers)
        )
        triggers.insert(position, trigger)
        new = {**draft, "triggers": triggers}
        await self._store.save_draft(km, new, rfc3339(self._clock.now()))
        self.drafts[km] = new
        return trigger

    async def delete_trigger(self, km: str, trigger_id: str) -> None:
        draft = self._draft(km)
        triggers = [t for t in draft["triggers"] if t["id"] != trigger_id]
        if len(triggers) == len(draft["triggers"]):
            raise errors.NotFound(f"no trigger {trigger_id!r} in knowledge model {km!r}")
        new = {**draft, "triggers": triggers}
        await self._store.save_draft(km, new, rfc3339(self._clock.now()))
        self.drafts[km] = new

    async def delete_model(self, km: str) -> None:
        self._draft(km)
        previous = self.published.pop(km, None)
        if previous is not None:
            for trigger_id in previous.triggers:
                self.index.remove(self._tids[(km, trigger_id)])
        await self._store.delete_model(km)
        del self.drafts[km]

    async def publish(self, km: str) -> ModelVersion:
        draft = self._draft(km)
        now = rfc3339(self._clock.now())
        previous = self.published.get(km)
        snapshot = {
            **draft,
            "version": (previous.version if previous else 0) + 1,
            "publishedAt": now,
        }
        self._tids = await self._store.publish(km, snapshot, now)
        version = ModelVersion.from_json(snapshot)
        self._install(version)
        return version

    # -- consumers ---------------------------------------------------------------------------

    def model(self, km: str) -> ModelVersion:
        version = self.published.get(km)
        if version is None:
            raise errors.NotFound(f"no published knowledge model {km!r}")
        return version

    def trigger(self, km: str, trigger_id: str) -> tuple[dict[str, Any], int]:
        """A published trigger and its number in the match index."""
        trigger = self.model(km).triggers.get(trigger_id)
        if trigger is None:
            raise errors.NotFound(f"no trigger {trigger_id!r} in knowledge model {km!r}")
        return trigger.to_json(), self._tids[(km, trigger_id)]

    # -- start-up ----------------------------------------------------------------------------

    async def ensure(self, draft: dict[str, Any]) -> None:
        """Make ``draft`` the published state of its model, publishing only if it changed."""
        km = draft["id"]
        draft = {
            "id": km,
            "name": draft.get("name") or km,
            "description": draft.get("description", ""),
            "triggers": [
                {
                    "id": t["id"],
                    "name": t.get("name") or t["id"],
                    "description": t.get("description", ""),
                    "filters": t.get("filters", []),
                }
                for t in draft.get("triggers", [])
            ],
        }
        for trigger in draft["triggers"]:
            # Refuse a bad file before the model's draft is stored, not half way through.
            filters.compile_filters(trigger["filters"])
        current = self.drafts.get(km)
        published = self.published.get(km)
        same = (
            current is not None
            and published is not None
            and {k: current[k] for k in ("name", "description", "triggers")}
            == {k: draft[k] for k in ("name", "description", "triggers")}
        )
        if same:
            return
        await self.put_model(km, draft)
        for trigger in draft["triggers"]:
            await self.put_trigger(km, trigger["id"], trigger)
        keep = {t["id"] for t in draft["triggers"]}
        for trigger in list(self.drafts[km]["triggers"]):
            if trigger["id"] not in keep:
                await self.delete_trigger(km, trigger["id"])
        await self.publish(km)

    async def load_file(self, path: Path) -> None:
        """Models from a TOML file: ``[models.<id>]`` with name, description and
        ``[[models.<id>.triggers]]`` tables (id, name, description, filters).

        A trigger's filters are validated like an API request's (``put_trigger``), nesting
        limit included, before anything is stored; a refusal names the file."""
        document = tomlfile.load(path)
        models = document.get("models", {})
        if not isinstance(models, dict):
            raise errors.InvalidRequest(f"{path}: [models] must be a table")
        for km, table in models.items():
            if not isinstance(table, dict):
                raise errors.InvalidRequest(f"{path}: models.{km} must be a table")
            triggers = table.get("triggers", [])
            # ensure() indexes each trigger table: a wrong shape would be a TypeError there.
            if not isinstance(triggers, list) or not all(
                isinstance(t, dict) and isinstance(t.get("id"), str) for t in triggers
            ):
                raise errors.InvalidRequest(
                    f"{path}: models.{km}.triggers must be [[models.{km}.triggers]] tables,"
                    " each with a string id"
                )
            try:
                await self.ensure(
                    {
                        "id": km,
                        "name": table.get("name", km),
                        "description": table.get("description", ""),
                        "triggers": table.get("triggers", []),
                    }
                )
            except errors.InvalidRequest as exc:
                raise errors.InvalidRequest(f"{path}: models.{km}: {exc.message}") from None
