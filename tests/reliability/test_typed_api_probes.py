"""Hostile probes of this session's surfaces (typed bodies, /docs, /console, /api/me,
/api/overview, process call URLs), against the real server: no key, oversized and half-sent
bodies, paths that try to leave a fixed file list, a callback aimed at a metadata address."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY, Running
from tests.e2e.helpers import custom_server

JSON = {"Content-Type": "application/json"}


async def raw(server: Running, head: bytes, body: bytes = b"") -> tuple[int, float]:
    """Send ``head`` and ``body`` on a socket of its own and keep it open: the status line of
    the answer, and how long it took."""
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(10):
            line = await reader.readline()
        return int(line.split()[1]), time.monotonic() - started
    finally:
        writer.close()


@pytest.mark.parametrize("path", ["/api/me", "/api/overview", "/openapi.json", "/docs"])
async def test_without_a_key_only_the_description_is_open(server: Running, path: str) -> None:
    async with server.http.get(server.url + path) as response:
        await response.read()
        assert response.status == (200 if path in ("/openapi.json", "/docs") else 401)


@pytest.mark.parametrize(
    "path",
    [
        "/console/..%2F..%2Fsettings.py",
        "/console/%2e%2e/app.py",
        "/docs/..%2Fopenapi.py",
        "/docs/index.html%00.js",
        "/console/LICENSE",
    ],
)
async def test_static_files_serve_their_list_and_nothing_else(server: Running, path: str) -> None:
    async with server.http.get(server.url + path) as response:
        body = await response.read()
        assert response.status == 404
        assert b"import" not in body  # no Python source, whatever the path


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/keys"),
        ("PUT", "/api/processes/p"),
        ("PUT", "/intelligence/api/knowledge-models/m"),
        ("POST", "/intelligence/api/knowledge-models/m/triggers/t/subscriptions"),
    ],
)
async def test_a_keyless_body_is_refused_before_it_is_read(
    server: Running, method: str, path: str
) -> None:
    # A head announcing a large body, and no body: answered at once, from the headers.
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += "Content-Length: 900000\r\n\r\n"
    status, took = await raw(server, head.encode())
    assert status == 401 and took < 2


async def test_an_oversized_typed_body_is_refused_unread(server: Running) -> None:
    # Keys' bodies are small: past 64 KiB, 413 from Content-Length alone.
    head = "POST /admin/keys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Length: {70 * 1024}\r\n\r\n"
    status, took = await raw(server, head.encode())
    assert status == 413 and took < 2


async def test_a_half_sent_typed_body_ends_at_the_body_timeout(tmp_path: Path) -> None:
    # The API's bodies obey body_timeout as ingest's do (they took a fixed 30 s before).
    async with custom_server(tmp_path, body_timeout=1.0) as server:
        head = "PUT /api/processes/p HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        head += f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Length: 100\r\n\r\n"
        status, took = await raw(server, head.encode(), b'{"name": ')
        assert status == 408 and 0.9 <= took < 5


async def test_a_deeply_nested_typed_body_is_a_400(server: Running) -> None:
    body = b'{"name": "n", "role": "admin", "sources": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    async with server.http.post(
        server.url + "/admin/keys", data=body, headers={**server.admin, **JSON}
    ) as response:
        await response.read()
        assert response.status == 400


@pytest.mark.parametrize(
    "uri", ["http://169.254.169.254/latest/meta-data", "http://10.0.0.1/x", "http://[::1]:9/x"]
)
async def test_a_process_call_aimed_off_the_allowed_networks_is_refused(
    server: Running, uri: str
) -> None:
    # Test hubs allow 127.0.0.0/8 only: metadata, private and IPv6 loopback are refused at PUT.
    process = {
        "name": "P",
        "start": {"filters": [{"exact": {"type": "x"}}]},
        "steps": [{"id": "c", "call": {"uri": uri}}],
    }
    async with server.http.put(
        server.url + "/api/processes/p", json=process, headers=server.admin
    ) as response:
        answer = await response.json()
        assert response.status == 400
        assert answer["error"]["code"] == "callback_refused"


async def test_a_masked_header_cannot_fish_for_another_subscriptions_secret(
    server: Running,
) -> None:
    # ******** keeps only this object's own stored value: on a new object it is refused,
    # never filled from anything else.
    process = {
        "name": "P",
        "start": {"filters": [{"exact": {"type": "x"}}]},
        "steps": [
            {"id": "c", "call": {"uri": "http://127.0.0.1:9/x", "headers": {"A": "********"}}}
        ],
    }
    async with server.http.put(
        server.url + "/api/processes/fresh", json=process, headers=server.admin
    ) as response:
        await response.read()
        assert response.status == 400
