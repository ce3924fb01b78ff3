"""Following the other processes on one PostgreSQL (SPEC §9): the API keys, sources and
catalogue they change, heard through the store's ``on_change`` hook (``NOTIFY
eventhub_changed``, sent by the transaction that wrote them, delivered at its COMMIT), are
reloaded here into this process's copies: the keyring (a key revoked elsewhere stops
authenticating here as soon as this reload runs, milliseconds after the commit), the
sources, and the catalogue with its match index.

Changes that arrive together are reloaded together, by one task at a time: a burst (a
catalogue file applied by a starting process, a listener's reconnect) costs one reload of
each part, not one per notification. A reload that fails (the database away) is logged and
the copies stay as they were until the next change; a lost connection is followed by the
listener's reconnect, which reloads everything (``PostgresStore._wake_all``).

The match index does not depend on this being quick: an append reloads it itself when the
catalogue moved (``log/postgres/store.py``). The keyring and the sources do: for the
milliseconds between a commit on one process and this reload on another, a request there is
answered as before the change."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventhub.hub import Hub

log = logging.getLogger(__name__)


class Follower:
    """Reloads what other processes changed into the hub's copies (``changed``)."""

    def __init__(self, hub: Hub, shared: bool) -> None:
        """``shared``: other processes serve the same database (PostgreSQL)."""
        self._hub = hub
        self._shared = shared
        self._keys: set[str] = set()
        self._sources: set[str] = set()
        self._all: set[str] = set()  # kinds to reload whole
        self._catalogue = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # Changes of the sources made by this process (``edited_source``): a reload whose
        # read they overtook reads again, so it never puts back an older record.
        self._source_edits = 0

    def changed(self, kind: str, id_: str | None) -> None:
        """The store's ``on_change``: another process changed ``id_`` of ``kind`` (None:
        anything of that kind). Reloaded soon, by the one task that drains what is pending."""
        if self._closed:
            return
        if kind == "model":
            self._catalogue = True  # reloaded whole: it is small, and its index hangs together
        elif id_ is None:
            self._all.add(kind)
        elif kind == "key":
            self._keys.add(id_)
        elif kind == "source":
            self._sources.add(id_)
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="follow-changes")

    def edited_source(self, name: str) -> None:
        """This process just changed its copy of source ``name``, after its write committed.
        With other processes, that copy is read again: another process's change of the same
        source may have committed after ours and been reloaded before ours was applied."""
        self._source_edits += 1
        if self._shared:
            self.changed("source", name)

    async def stop(self) -> None:
        self._closed = True
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _drain(self) -> None:
        try:
            while not self._closed and (
                self._keys or self._sources or self._all or self._catalogue
            ):
                keys, self._keys = self._keys, set()
                sources, self._sources = self._sources, set()
                whole, self._all = self._all, set()
                catalogue, self._catalogue = self._catalogue, False
                try:
                    if keys or "key" in whole:
                        await self._reload_keys(None if "key" in whole else keys)
                    if sources or "source" in whole:
                        await self._reload_sources(None if "source" in whole else sources)
                    if catalogue:
                        await self._hub.catalog.load()
                except Exception:
                    log.warning(
                        "reloading what another process changed failed (keys, sources or"
                        " the catalogue stay as they were until the next change)",
                        exc_info=True,
                    )
        finally:
            self._task = None

    async def _reload_keys(self, ids: set[str] | None) -> None:
        hub = self._hub
        stored = await hub.store.list_keys()
        # Keys are only ever created and revoked, never changed back: whatever this read
        # overtook is followed by a notification of its own, so a stale read is made good.
        if ids is None:
            hub.keyring.follow_all(stored)
            revoked = {k.key_id for k in stored if k.revoked_at is not None}
        else:
            by_id = {k.key_id: k for k in stored if k.key_id in ids}
            for key_id in ids:
                hub.keyring.follow(key_id, by_id.get(key_id))
            revoked = {k for k, key in by_id.items() if key.revoked_at is not None}
        for key_id in revoked:
            hub.subscriptions.revoked_elsewhere(key_id)

    async def _reload_sources(self, names: set[str] | None) -> None:
        sources = self._hub.sources
        while True:
            seen = self._source_edits
            stored = {s.name: s for s in await self._hub.store.list_sources()}
            if seen == self._source_edits:
                break
        if names is None:
            sources.clear()
            sources.update(stored)
            return
        for name in names:
            record = stored.get(name)
            if record is None:
                sources.pop(name, None)
            else:
                sources[name] = record
