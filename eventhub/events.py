"""The event as eventhub keeps it: context attributes plus data bytes of a known kind.

Data is stored as bytes so that what a producer sent comes back byte for byte: JSON data stays
the JSON text it arrived as (binary mode) or as orjson wrote it (structured mode); text and
binary data are the exact body bytes.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson


class DataKind(enum.IntEnum):
    NONE = 0
    JSON = 1  # data holds JSON text
    TEXT = 2  # data holds UTF-8 text of a non-JSON media type
    BINARY = 3  # data holds opaque bytes


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A validated event on its way into the log.

    ``attributes`` holds every context attribute (required, optional and extensions) with the
    value types of the CloudEvents type system as JSON knows them: str, int, bool.
    """

    attributes: dict[str, Any]
    data: bytes | None
    kind: DataKind
    digest: bytes

    @property
    def source(self) -> str:
        return str(self.attributes["source"])

    @property
    def id(self) -> str:
        return str(self.attributes["id"])

    @property
    def type(self) -> str:
        return str(self.attributes["type"])


def digest_of(attributes: dict[str, Any], data: bytes | None, kind: DataKind) -> bytes:
    """Content identity: the same event re-sent gives the same digest, whatever the mode."""
    h = hashlib.blake2b(digest_size=16)
    h.update(orjson.dumps(attributes, option=orjson.OPT_SORT_KEYS))
    h.update(bytes((kind,)))
    if data is not None:
        h.update(data)
    return h.digest()


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event read back from the log."""

    offset: int
    revision: int
    attributes: dict[str, Any]
    data: bytes | None
    kind: DataKind
    received_at: str

    @property
    def source(self) -> str:
        return str(self.attributes["source"])

    @property
    def id(self) -> str:
        return str(self.attributes["id"])

    def to_cloudevent(self) -> dict[str, Any]:
        """The event in the CloudEvents JSON format (structured mode)."""
        out = dict(self.attributes)
        if self.data is None:
            return out
        if self.kind is DataKind.JSON:
            out["data"] = orjson.Fragment(self.data)
        elif self.kind is DataKind.TEXT:
            out["data"] = self.data.decode("utf-8")
        else:
            out["data_base64"] = base64.b64encode(self.data).decode("ascii")
        return out

    def to_entry(self) -> dict[str, Any]:
        """The event as one entry of the log API."""
        return {
            "offset": self.offset,
            "revision": self.revision,
            "receivedAt": self.received_at,
            "event": self.to_cloudevent(),
        }


@dataclass(frozen=True, slots=True)
class Appended:
    """What the log did with one submitted event."""

    offset: int
    revision: int
    duplicate: bool
    # For an event that names a process instance (cxpinstanceid): woke, buffered, unrouted.
    correlation: str | None = None
