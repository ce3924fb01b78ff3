"""The exception tree of eventhub.

Every error a client can cause is an ``EventHubError``; ``api/errors.py`` turns each one into
the single JSON error shape ``{"error": {"code", "message", "details"}}`` and nothing else maps
errors to HTTP.

    EventHubError                      500 internal
    ├── InvalidRequest                 400 invalid_request
    │   ├── InvalidEvents              400 invalid_event   (details: index, attribute, reason)
    │   ├── InvalidJson                400 invalid_json
    │   └── CallbackRefused            400 callback_refused (the egress rule, SPEC §8)
    ├── Unauthorized                   401 unauthorized
    ├── Forbidden                      403 forbidden
    ├── NotFound                       404 not_found
    ├── RequestTimeout                 408 request_timeout
    ├── Conflict                       409 conflict
    ├── Gone                           410 gone
    │   └── BelowRetention             410 below_retained_range (carries the first offset)
    ├── LengthRequired                 411 length_required
    ├── PayloadTooLarge                413 payload_too_large
    ├── UnsupportedMediaType           415 unsupported_media_type
    ├── TooManyRequests                429 too_many_requests (carries Retry-After)
    ├── HeadersTooLarge                431 request_header_fields_too_large
    ├── NotReady                       503 not_ready
    ├── InsufficientStorage            507 insufficient_storage
    └── VaultError                     500 internal   (start-up only: a key that does not fit)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one event of a request."""

    reason: str
    attribute: str | None = None
    index: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason}
        if self.index is not None:
            out["index"] = self.index
        if self.attribute is not None:
            out["attribute"] = self.attribute
        return out


class EventHubError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, details: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = tuple(details)


class InvalidRequest(EventHubError):
    status = 400
    code = "invalid_request"


class InvalidEvents(InvalidRequest):
    code = "invalid_event"


class InvalidJson(InvalidRequest):
    code = "invalid_json"


class CallbackRefused(InvalidRequest):
    """A callback URL the egress rules refuse (scheme, userinfo, a refused address)."""

    code = "callback_refused"


class Unauthorized(EventHubError):
    status = 401
    code = "unauthorized"


class Forbidden(EventHubError):
    status = 403
    code = "forbidden"


class NotFound(EventHubError):
    status = 404
    code = "not_found"


class RequestTimeout(EventHubError):
    status = 408
    code = "request_timeout"


class Conflict(EventHubError):
    status = 409
    code = "conflict"


class Gone(EventHubError):
    status = 410
    code = "gone"


class BelowRetention(Gone):
    """A read of the log from below the retained range: retention deleted those events.
    ``first_offset`` is the first one the log still holds (the API also sends it in the
    ``Eventhub-First-Offset`` header), so a reader can go on knowingly from there."""

    code = "below_retained_range"

    def __init__(self, after: int, first_offset: int) -> None:
        super().__init__(
            f"the log no longer holds the events after offset {after}: retention deleted"
            f" them; it starts at offset {first_offset} (read with after={first_offset - 1})",
            [Problem(f"the first retained offset is {first_offset}", attribute="after")],
        )
        self.first_offset = first_offset


class LengthRequired(EventHubError):
    status = 411
    code = "length_required"


class PayloadTooLarge(EventHubError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(EventHubError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(EventHubError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class HeadersTooLarge(EventHubError):
    status = 431
    code = "request_header_fields_too_large"


class NotReady(EventHubError):
    status = 503
    code = "not_ready"


class InsufficientStorage(EventHubError):
    """The disk is full: nothing of the request was stored, and no offset was used."""

    status = 507
    code = "insufficient_storage"


class VaultError(EventHubError):
    """A sealed secret does not open: the key is not the one the database was sealed with, is
    missing, or a sealed value was altered or moved. Raised while starting, never by a request:
    ``eventhub serve`` prints it as one line and exits 2."""


class DatabaseUnavailable(EventHubError):
    """The database cannot be reached or opened at start (PostgreSQL: refused, unknown host
    or database, bad credentials). ``eventhub serve`` prints it as one line and exits 2; the
    message names the database masked (``log/dsn.py``), never its password."""


class SnapshotUnsupported(EventHubError):
    """``GET /admin/backup`` on PostgreSQL: its backups are the database's own (``pg_dump``)."""

    status = 501
    code = "not_implemented"
    ADVICE: ClassVar[str] = (
        "this hub runs on PostgreSQL: back it up with pg_dump (or your provider's backups),"
        " not GET /admin/backup or eventhub backup"
    )


# The patterns the schemas use, in words: "matching regex '\\S'" says little to a person.
_PATTERNS = {
    r"\S": "that is not blank",
    r"^$|\S": "that is empty or not blank",
    r"^[^/]*$": "without '/'",
}


def explain_schema(text: str, within: str = "") -> tuple[str, str | None]:
    """A msgspec validation message, "Expected `int`, got `str` - at `$.batchSize`", as the
    API words it, "batchSize: expected `int`, got `str`", with the field's path apart (None:
    about the value as a whole). ``within`` names where the value came from, as the other
    refusals of a file name it ("catalog.toml: models.m" gives "catalog.toml: models.m:
    triggers[0].id: ..."); without it, the value is a request body ("the body: ...")."""
    found = re.fullmatch(r"(.*) - at `\$\.?(.*)`", text, re.DOTALL)
    what, field = (found.group(1), found.group(2)) if found else (text, "")
    what = what[:1].lower() + what[1:]
    for pattern, words in _PATTERNS.items():
        what = what.replace(f"matching regex {pattern!r}", words)
    where = [within or ("" if field else "the body"), field]
    return ": ".join([*filter(None, where), what]), field or None
