"""Raw HTTP/1.1 on 127.0.0.1 for the ingest reliability tests: requests whose head and body
the test sends separately (or not at all), and header bytes no HTTP client library sends."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


@dataclass
class Answer:
    status: int
    head: bytes
    body: bytes


def head(
    method: str, path: str, headers: dict[str, str | bytes], length: int | None = None
) -> bytes:
    """A request head; ``length`` adds Content-Length. Values may be bytes, sent as they are."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    for name, value in headers.items():
        raw = value if isinstance(value, bytes) else value.encode("latin-1")
        lines.append(name.encode("latin-1") + b": " + raw)
    if length is not None:
        lines.append(f"Content-Length: {length}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """One response (Content-Length framed, as eventhub answers)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed before an answer")
    status = int(status_line.split()[1])
    lines = [status_line]
    length = 0
    while True:
        line = await reader.readline()
        lines.append(line)
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return Answer(status, b"".join(lines), body)


async def request(port: int, raw_head: bytes, body: bytes = b"") -> Answer:
    """Send a whole request on a new connection and read its answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw_head + body)
        await writer.drain()
        return await read_answer(reader)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
