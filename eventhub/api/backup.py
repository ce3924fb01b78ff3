"""``GET /admin/backup`` (admin): a consistent snapshot of the database, streamed
(eventhub/backup.py makes it). ``Content-Length`` lets the client tell a whole copy from a cut
one; ``Eventhub-Last-Offset`` is the highest offset in it; ``Eventhub-Key-File`` names the
key file the copy's sealed secrets need (absent when the key is ``EVENTHUB_SECRET_KEY``). The
key itself is never in the stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from eventhub.api._http import hub_of, require
from eventhub.api.operation import ADMIN, INTEGER, Answer, Content, Header, Operation
from eventhub.backup import Snapshot
from eventhub.log import sealing

CHUNK = 1024 * 1024
MEDIA_TYPE = "application/vnd.sqlite3"


async def _chunks(snapshot: Snapshot) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await asyncio.to_thread(snapshot.file.read, CHUNK)
            if not chunk:
                return
            yield chunk
    finally:
        snapshot.close()  # its space comes back now, whether the client took it all or not


async def get_backup(request: Request) -> Response:
    require(request, "admin")
    hub = hub_of(request)
    snapshot = await hub.backups.take()
    headers = {
        "Content-Length": str(snapshot.size),
        "Content-Disposition": 'attachment; filename="eventhub-backup.db"',
        "Cache-Control": "no-store",
        "Eventhub-Last-Offset": str(snapshot.last_offset),
    }
    if hub.settings.secret_key is None:
        headers["Eventhub-Key-File"] = str(sealing.key_file_of(hub.settings.data).absolute())
    return StreamingResponse(_chunks(snapshot), headers=headers, media_type=MEDIA_TYPE)


OPERATIONS = (
    Operation(
        "GET",
        "/admin/backup",
        get_backup,
        "A consistent copy of the database, taken now",
        ADMIN,
        {
            200: Answer(
                Content(MEDIA_TYPE, {"type": "string", "format": "binary"}),
                "The SQLite database: `eventhub serve --data` on it serves every event"
                " acknowledged before the copy began.",
                (
                    Header("Eventhub-Last-Offset", "The last offset in the copy.", INTEGER, True),
                    Header(
                        "Eventhub-Key-File",
                        "The key file the copy's sealed secrets need (absent with"
                        " `EVENTHUB_SECRET_KEY`).",
                    ),
                    Header(
                        "Content-Length",
                        "The copy's size: a shorter stream was cut.",
                        INTEGER,
                        True,
                    ),
                ),
            )
        },
    ),
)
