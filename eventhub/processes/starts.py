"""Which start of each process definition is in force in the match index (SPEC §6.2, §9).

A definition whose start is ``{"filters": [...]}`` has its filters in the match index under
a private trigger (``process/<id>``, ``PRIVATE_MODEL``); one started by a published trigger
has nothing there of its own. Two paths change those entries: the engine's own saves,
deletes and reloads (``starting.Starting``: ``_install``, ``_uninstall``), and, on
PostgreSQL, the append that finds the catalogue version moved (``refresh_starts``: another
process saved or deleted a definition). They can interleave (a reload that read the
database before a save elsewhere finishes after an append already put that save in force),
so each definition's entry only ever moves forward: to a newer version, or from a version
to its deletion. Versions of one definition only grow (a definition deleted and made again
goes on from its last number), so (version, deleted) orders every change of one definition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eventhub.catalog.filters import TriggerIndex

PRIVATE_MODEL = "process/"  # the match-index name of a definition's own start filters

_LIVE, _DELETED = 0, 1


class Starts:
    def __init__(self, index: TriggerIndex) -> None:
        self._index = index
        self._in_force: dict[str, tuple[int, int]] = {}  # id -> (version, _LIVE/_DELETED)
        self._private: dict[str, int] = {}  # id -> its private trigger, while in the index

    def put(
        self, definition_id: str, version: int, tid: int, filters: Sequence[Any] | None
    ) -> None:
        """Put ``version``'s start in force (``tid``: its start trigger; ``filters``: None
        when that is a published trigger), unless something newer already is."""
        key = (version, _LIVE)
        if self._in_force.get(definition_id, key) > key:
            return
        self._in_force[definition_id] = key
        if filters is not None:
            self._index.add(tid, list(filters))
            self._private[definition_id] = tid
        else:
            self._unindex(definition_id)

    def take_out(self, definition_id: str, version: int) -> None:
        """``version``'s start no longer starts anything (it is being replaced, or its
        definition was just deleted), unless something newer is in force."""
        if self._in_force.get(definition_id, (version, _LIVE)) > (version, _LIVE):
            return
        self._unindex(definition_id)

    def deleted(self, definition_id: str, version: int) -> None:
        """The definition was deleted at ``version``: no older start comes back."""
        key = (version, _DELETED)
        if self._in_force.get(definition_id, key) > key:
            return
        self._in_force[definition_id] = key
        self._unindex(definition_id)

    def behind(self, current: Mapping[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        """Of ``current`` (the database's definitions: id -> (version, start trigger)), those
        whose start in force here is older."""
        return {
            definition_id: head
            for definition_id, head in current.items()
            if self._in_force.get(definition_id, (-1, _LIVE)) < (head[0], _LIVE)
        }

    def gone(self, current: Mapping[str, tuple[int, int]]) -> dict[str, int]:
        """The definitions in force here that ``current`` no longer has: id -> version."""
        return {
            definition_id: version
            for definition_id, (version, state) in self._in_force.items()
            if state == _LIVE and definition_id not in current
        }

    def _unindex(self, definition_id: str) -> None:
        tid = self._private.pop(definition_id, None)
        if tid is not None:
            self._index.remove(tid)
