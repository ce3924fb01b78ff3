"""Knowledge models and their triggers: drafts edited by admins, versions published to
consumers, and the match index the log consults once per appended event.

Only published triggers match events: what consumers can discover is exactly what fires.

With several processes on one PostgreSQL, another process's edits reach this one by ``load``
(called when it hears of them, and inside an append when the catalogue's version moved:
``log/postgres/store.py``). ``load`` may run at any time, even while an edit of this process
awaits its write: every change of the state here is made in one step without an await, after
the write it reflects committed, and counted (``_changes``); a ``load`` whose reads were
overtaken by such a change reads again, so it never puts back an older state.

The match index also holds the process engine's own entries (a definition's start filters,
under numbers no published trigger has): ``load`` touches only published triggers' entries.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from eventhub import errors, tomlfile
from eventhub.catalog import filters
from eventhub.catalog.shapes import FileModel, ModelSpec, TriggerSpec
from eventhub.clock import Clock, rfc3339
from eventhub.log.base import Catalogue
from eventhub.models import ModelVersion, Trigger


def _check_id(kind: str, value: str) -> None:
    if not value or len(value) > 200 or "/" in value:
        raise errors.InvalidRequest(f"a {kind} id must be 1-200 characters without '/'")


class Catalog:
    def __init__(
        self, store: Catalogue, clock: Clock, index: filters.TriggerIndex | None = None
    ) -> None:
        """``index``: the match index to fill, when its ``match`` was handed out before
        (the hub gives it to the store, which is built first, as its matcher)."""
        self._store = store
        self._clock = clock
        self.drafts: dict[str, dict[str, Any]] = {}
        self.published: dict[str, ModelVersion] = {}
        self._tids: dict[tuple[str, str], int] = {}
        self.index = filters.TriggerIndex() if index is None else index
        self._changes = 0  # every change of the state above, counted (``load``)

    async def load(self) -> None:
        """Make the stored catalogue this object's state: drafts, published versions and
        their entries in the match index (only those that changed are compiled again)."""
        while True:
            seen = self._changes
            drafts = {km: draft for km, draft, _ in await self._store.load_models()}
            tids = await self._store.trigger_ids()
            published = [ModelVersion.from_json(s) for s in await self._store.load_published()]
            if seen == self._changes:
                break  # nothing changed here while we read: what we read is not older
        self.drafts = drafts
        self._tids = {**self._tids, **tids}  # numbers are never reused: keep any we knew
        fresh = {version.id: version for version in published}
        for km in [km for km in self.published if km not in fresh]:
            self._uninstall(km)
        for version in published:
            if self.published.get(version.id) != version:
                self._install(version)
        self._changes += 1

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
        self._changes += 1

    def _uninstall(self, km: str) -> None:
        previous = self.published.pop(km, None)
        if previous is not None:
            for trigger_id in previous.triggers:
                self.index.remove(self._tids[(km, trigger_id)])
        self._changes += 1

    # -- admin edits -------------------------------------------------------------------------

    def _draft(self, km: str) -> dict[str, Any]:
        draft = self.drafts.get(km)
        if draft is None:
            raise errors.NotFound(f"no knowledge model {km!r}")
        return draft

    async def put_model(self, km: str, spec: ModelSpec) -> dict[str, Any]:
        """Create or edit the draft of ``km``; its triggers stay. Consumers see nothing of it
        until ``publish``."""
        _check_id("knowledge model", km)
        previous = self.drafts.get(km, {})
        draft = {
            "id": km,
            "name": spec.name,
            "description": spec.description,
            "triggers": previous.get("triggers", []),
        }
        await self._store.save_draft(km, draft, rfc3339(self._clock.now()))
        self.drafts[km] = draft
        self._changes += 1
        return draft

    async def put_trigger(self, km: str, trigger_id: str, spec: TriggerSpec) -> dict[str, Any]:
        """Create or edit a trigger in the draft of ``km``, in its place if it exists."""
        draft = self._draft(km)
        _check_id("trigger", trigger_id)
        filters.compile_filters(spec.filters)  # refuse what could never be published
        trigger = {
            "id": trigger_id,
            "name": spec.name,
            "description": spec.description,
            "filters": spec.filters,
        }
        triggers = [t for t in draft["triggers"] if t["id"] != trigger_id]
        position = next(
            (i for i, t in enumerate(draft["triggers"]) if t["id"] == trigger_id), len(triggers)
        )
        triggers.insert(position, trigger)
        new = {**draft, "triggers": triggers}
        await self._store.save_draft(km, new, rfc3339(self._clock.now()))
        self.drafts[km] = new
        self._changes += 1
        return trigger

    async def delete_trigger(self, km: str, trigger_id: str) -> None:
        draft = self._draft(km)
        triggers = [t for t in draft["triggers"] if t["id"] != trigger_id]
        if len(triggers) == len(draft["triggers"]):
            raise errors.NotFound(f"no trigger {trigger_id!r} in knowledge model {km!r}")
        new = {**draft, "triggers": triggers}
        await self._store.save_draft(km, new, rfc3339(self._clock.now()))
        self.drafts[km] = new
        self._changes += 1

    async def delete_model(self, km: str) -> None:
        self._draft(km)
        await self._store.delete_model(km)
        # After the commit, in one step (see the module's docstring).
        self._uninstall(km)
        self.drafts.pop(km, None)

    async def publish(self, km: str) -> ModelVersion:
        draft = self._draft(km)
        now = rfc3339(self._clock.now())
        previous = self.published.get(km)
        snapshot = {
            **draft,
            "version": (previous.version if previous else 0) + 1,
            "publishedAt": now,
        }
        try:
            tids = await self._store.publish(km, snapshot, now)
        except errors.Conflict:
            # Another process published this version first (PostgreSQL): catch up, so
            # that a retry publishes the next one.
            await self.load()
            raise
        self._tids = {**self._tids, **tids}
        version = ModelVersion.from_json(snapshot)
        self._install(version)
        return version

    # -- consumers ---------------------------------------------------------------------------

    def model(self, km: str) -> ModelVersion:
        version = self.published.get(km)
        if version is None:
            raise errors.NotFound(f"no published knowledge model {km!r}")
        return version

    def trigger(self, km: str, trigger_id: str) -> tuple[Trigger, int]:
        """A published trigger and its number in the match index."""
        trigger = self.model(km).triggers.get(trigger_id)
        if trigger is None:
            raise errors.NotFound(f"no trigger {trigger_id!r} in knowledge model {km!r}")
        return trigger, self._tids[(km, trigger_id)]

    # -- start-up ----------------------------------------------------------------------------

    async def ensure(self, draft: dict[str, Any]) -> None:
        """Make ``draft`` (a built-in model: its ``id`` and a ``FileModel``'s fields) the
        published state of its model, publishing only if it changed."""
        km = draft["id"]
        await self._ensure(km, tomlfile.convert(draft, FileModel, f"built-in model {km}"))

    async def _ensure(self, km: str, model: FileModel) -> None:
        triggers = [TriggerSpec(t.name or t.id, t.description, t.filters) for t in model.triggers]
        for n, trigger in enumerate(triggers):
            # Refuse a bad file before the model's draft is stored, not half way through.
            try:
                filters.compile_filters(trigger.filters)
            except errors.InvalidRequest as exc:
                raise errors.InvalidRequest(f"triggers[{n}].filters: {exc.message}") from None
        draft = {
            "id": km,
            "name": model.name or km,
            "description": model.description,
            "triggers": [
                {"id": t.id, "name": s.name, "description": s.description, "filters": s.filters}
                for t, s in zip(model.triggers, triggers, strict=True)
            ],
        }
        try:
            await self._make(km, model, triggers, draft)
        except errors.Conflict:
            # Another process starting at the same time published it first (the publish
            # reloaded the catalogue): done if that is this model, else publish ours next.
            await self._make(km, model, triggers, draft)

    async def _make(
        self, km: str, model: FileModel, triggers: list[TriggerSpec], draft: dict[str, Any]
    ) -> None:
        current = self.drafts.get(km)
        published = self.published.get(km)
        same = (
            current is not None
            and published is not None
            and {k: current[k] for k in ("name", "description", "triggers")}
            == {k: draft[k] for k in ("name", "description", "triggers")}
            # and published as it stands (another process may have published another)
            and dataclasses.replace(published, version=0, published_at=None)
            == ModelVersion.from_json(draft)
        )
        if same:
            return
        await self.put_model(km, ModelSpec(model.name or km, model.description))
        for t, spec in zip(model.triggers, triggers, strict=True):
            await self.put_trigger(km, t.id, spec)
        keep = {t.id for t in model.triggers}
        for trigger in list(self.drafts[km]["triggers"]):
            if trigger["id"] not in keep:
                await self.delete_trigger(km, trigger["id"])
        await self.publish(km)

    async def load_file(self, path: Path) -> None:
        """Models from a TOML file: ``[models.<id>]`` tables, each a ``FileModel`` (name,
        description and ``[[models.<id>.triggers]]`` tables: id, name, description, filters).

        Each table is validated like an API request (the same Structs; a trigger's filters
        compiled, nesting limit included) before anything of it is stored; a refusal names
        the file and the key."""
        document = tomlfile.load(path)
        models = document.get("models", {})
        if not isinstance(models, dict):
            raise errors.InvalidRequest(f"{path}: [models] must be a table")
        for km, table in models.items():
            where = f"{path}: models.{km}"
            model = tomlfile.convert(table, FileModel, where)
            try:
                await self._ensure(km, model)
            except errors.InvalidRequest as exc:
                raise errors.InvalidRequest(f"{where}: {exc.message}") from None
