"""The hub's logs (SPEC §7): one line per request and one per subscription or instance
transition, as text or JSON lines (``log_format``), set up once at start (``configure``).

Three loggers, so an operator can route or silence each with ordinary ``logging`` config:

- ``eventhub.access``: a line per HTTP request: method, path, status, duration, key id.
  uvicorn's own access log stays off (``server.config``): it formats every request whether or
  not anyone reads it. This one is written by ``access`` below, after the answer is sent, and
  costs nothing but a level check when ``log_level`` is above ``info``.
- ``eventhub.transitions``: a line per subscription transition (``Hub._notify``) and per
  process-instance transition (the lifecycle events a store commit emitted), with the reason.
- every other ``eventhub.*`` logger, as before.

Never a secret: the path is logged without its query string (the CloudEvents ``access_token``
travels there), the caller is named by its key id, never its key, and the transition lines
carry ids, states and reasons, never a callback URL, header or secret.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

import orjson
from starlette.types import Scope

from eventhub.events import NewEvent

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

ACCESS = logging.getLogger("eventhub.access")
TRANSITIONS = logging.getLogger("eventhub.transitions")

# Where a handler notes who asked, for the access line: the key id, or the source whose
# signature admitted a keyless ingest request.
KEY_ID = "eventhub.key_id"
SOURCE = "eventhub.source"

_INSTANCE_PREFIX = "eventhub.instance."


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message``,
    then the record's own ``fields`` (the access and transition lines set them)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _rfc3339(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def configure(log_format: str, level: str, stream: IO[str] | None = None) -> None:
    """Set up the root logger once, at start: every ``eventhub.*`` line (and uvicorn's, which
    propagate) goes to ``stream`` (stderr) in ``log_format``; access lines take the cheap
    path of ``_AccessWriter`` to the same stream."""
    global _writer
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    _writer = _AccessWriter(out, log_format == "json")
    atexit.register(_writer.flush)


class _AccessWriter:
    """The access lines, written without the ``logging`` machinery: through a ``Logger``, a
    line costs ~20 µs (a record, a formatter, a time formatted, a write and a flush each),
    a noticeable share of a ~130 µs single-event ingest request. Here a line is one f-string
    or ``orjson.dumps`` (the timestamp's seconds formatted once a second), and the lines of
    one event-loop iteration go out in one write, scheduled with ``call_soon``: under load,
    dozens of requests share a syscall. The line has the shape ``TEXT_FORMAT`` and
    ``JsonFormatter`` give every other line. Whether lines are written at all is still the
    ``eventhub.access`` logger's level (``app.py`` asks it)."""

    def __init__(self, stream: IO[str], json: bool) -> None:
        self._stream = stream
        self._json = json
        self._pending: list[str] = []
        self._second = -1
        self._stamp = ""

    def _time(self, now: float) -> tuple[str, int]:
        second = int(now)
        if second != self._second:
            self._second = second
            if self._json:
                self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            else:  # as logging.Formatter's asctime: local time
                self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return self._stamp, int((now - second) * 1000)

    def line(self, message: str, fields: Callable[[], dict[str, Any]]) -> None:
        """Queue one access line; ``fields`` (for JSON only) are made only when needed."""
        stamp, millis = self._time(time.time())
        if self._json:
            entry = {
                "time": f"{stamp}.{millis:03d}Z",
                "level": "info",
                "logger": ACCESS.name,
                "message": message,
                **fields(),
            }
            text = orjson.dumps(entry).decode()
        else:
            text = f"{stamp},{millis:03d} INFO {ACCESS.name}: {message}"
        if not self._pending:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (a test calling directly): write it now
                self._pending.append(text)
                self.flush()
                return
        self._pending.append(text)

    def flush(self) -> None:
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed or gone: the hub keeps serving, as logging's handlers do


# Set by ``configure`` (``eventhub serve``); without it (the app embedded or under test)
# access lines go through the ``eventhub.access`` logger like any other.
_writer: _AccessWriter | None = None


def access(scope: Scope, status: int | None, seconds: float) -> None:
    """The access line of one request, once its answer is sent (``status`` None: the client
    went away, or the app failed, before an answer started)."""
    # Raw path (as sent, percent-encoded, no query string): one token a line, whatever the
    # path decodes to, and never the access_token of the query.
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    path = raw.decode("ascii", "backslashreplace")
    if not path.isprintable():
        path = path.encode("unicode_escape").decode("ascii")
    method = scope["method"]
    key_id = scope.get(KEY_ID)
    source = scope.get(SOURCE)
    ms = round(seconds * 1000, 3)
    who = f"key={key_id}" if key_id else f"source={source}" if source else "key=-"
    message = f"{method} {path} {status if status is not None else '-'} {ms:.3f}ms {who}"

    def fields() -> dict[str, Any]:
        return {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": ms,
            "key_id": key_id,
            "source": source,
        }

    if _writer is not None:
        _writer.line(message, fields)
    else:
        ACCESS.info("%s", message, extra={"fields": fields()})


def subscription_transition(
    subscription_id: str, owner: str, name: str, status: str | None, offset: int, reason: str
) -> None:
    """A subscription moved (``name``: created, paused, failed, ... as its notification type)."""
    TRANSITIONS.info(
        "subscription %s %s (status %s, offset %d): %s",
        subscription_id,
        name,
        status or "-",
        offset,
        reason,
        extra={
            "fields": {
                "kind": "subscription",
                "id": subscription_id,
                "owner": owner,
                "transition": name,
                "status": status,
                "offset": offset,
                "reason": reason,
            }
        },
    )


def instance_transitions(emitted: Iterable[NewEvent]) -> None:
    """The lines of the instance lifecycle events a commit made durable (``log/sqlite/instances.py``
    makes them inside the transaction; they are logged only once it committed)."""
    if not TRANSITIONS.isEnabledFor(logging.INFO):
        return
    for event in emitted:
        if not event.type.startswith(_INSTANCE_PREFIX) or event.data is None:
            continue
        data = orjson.loads(event.data)
        if not isinstance(data, dict):
            continue
        move = event.type[len(_INSTANCE_PREFIX) :]
        reason = data.get("reason")
        TRANSITIONS.info(
            "instance %s of %s %s (state %s, step %s)%s",
            data.get("instanceId"),
            data.get("definitionId"),
            move,
            data.get("state"),
            data.get("step") or "-",
            f": {reason}" if reason else "",
            extra={
                "fields": {
                    "kind": "instance",
                    "id": data.get("instanceId"),
                    "definition": data.get("definitionId"),
                    "transition": move,
                    "state": data.get("state"),
                    "step": data.get("step"),
                    "reason": reason,
                }
            },
        )
