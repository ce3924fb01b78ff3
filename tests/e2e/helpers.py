"""Shared helpers for the end-to-end tests: real clients, the error shape, extra servers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, to_binary_event, to_structured_event
from cloudevents.core.formats.json import JSONFormat

from eventhub.settings import Settings
from tests.conftest import (
    ADMIN_KEY,
    ManualClock,
    Running,
    free_port,
    hub_of,
    settings_for,
    start,
)

BATCH = "application/cloudevents-batch+json"
STRUCTURED = "application/cloudevents+json"


def bearer(key: str = ADMIN_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- the error shape ----------------------------------------------------------------------------


async def error_of(
    response: aiohttp.ClientResponse, status: int, code: str | None = None
) -> dict[str, Any]:
    """Assert ``response`` is an error of ``status`` in eventhub's one shape; return ``error``."""
    text = await response.text()
    assert response.status == status, f"expected {status}, got {response.status}: {text}"
    assert response.content_type == "application/json", response.content_type
    body = await response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    for detail in error["details"]:
        assert isinstance(detail.get("reason"), str), detail
        assert set(detail) <= {"index", "attribute", "reason"}, detail
    if code is not None:
        assert error["code"] == code, error
    return error


def attributes_named(error: Mapping[str, Any]) -> set[str]:
    return {d["attribute"] for d in error["details"] if "attribute" in d}


# -- producers ----------------------------------------------------------------------------------


async def send(
    server: Running, message: HTTPMessage, key: str | None = ADMIN_KEY, **headers: str
) -> aiohttp.ClientResponse:
    """POST an SDK-built HTTP message to ``/events``."""
    all_headers = {**message.headers, **headers}
    if key is not None:
        all_headers.update(bearer(key))
    # aiohttp would add "Content-Type: application/octet-stream" to a body without one.
    skip = () if any(h.lower() == "content-type" for h in all_headers) else ("Content-Type",)
    return await server.post(
        "/events", data=message.body, headers=all_headers, skip_auto_headers=skip
    )


async def send_binary(
    server: Running, event: BaseCloudEvent, key: str | None = ADMIN_KEY
) -> aiohttp.ClientResponse:
    return await send(server, to_binary_event(event), key)


async def send_structured(
    server: Running, event: BaseCloudEvent, key: str | None = ADMIN_KEY
) -> aiohttp.ClientResponse:
    return await send(server, to_structured_event(event), key)


def batch_body(events: Sequence[BaseCloudEvent]) -> bytes:
    """The JSON batch format, each event written by the SDK's own JSON format."""
    fmt = JSONFormat()
    return b"[" + b",".join(fmt.write(e) for e in events) + b"]"


async def send_batch(
    server: Running, events: Sequence[BaseCloudEvent], key: str | None = ADMIN_KEY
) -> aiohttp.ClientResponse:
    return await send(server, HTTPMessage({"content-type": BATCH}, batch_body(events)), key)


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def hmac_b64(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


# -- reading the log ----------------------------------------------------------------------------


async def read_log(http: aiohttp.ClientSession, url: str, page: int = 1000) -> list[dict[str, Any]]:
    """The whole log, following ``nextAfter`` page by page."""
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        async with http.get(
            f"{url}/events", params={"after": after, "limit": page}, headers=bearer()
        ) as response:
            assert response.status == 200, await response.text()
            body = await response.json()
        if not body["events"]:
            return entries
        entries.extend(body["events"])
        after = body["nextAfter"]


# -- servers with other settings ----------------------------------------------------------------


@asynccontextmanager
async def serving(settings: Settings, clock: ManualClock) -> AsyncIterator[Running]:
    """An in-process server on ``settings`` (its database) and ``clock``, stopped cleanly (the
    graceful shutdown of ``eventhub serve``) on leaving; enter it again on the same settings
    for a restart."""
    uv, task = await start(settings, clock)
    try:
        async with aiohttp.ClientSession() as http:
            yield Running(f"http://127.0.0.1:{settings.port}", hub_of(uv), http, bearer())
    finally:
        uv.should_exit = True
        await task


@asynccontextmanager
async def custom_server(tmp_path: Path, **overrides: Any) -> AsyncIterator[Running]:
    """A second in-process server with its own database and the given settings."""
    folder = tmp_path / f"custom-{free_port()}"
    async with serving(settings_for(folder, **overrides), ManualClock()) as server:
        yield server


class ServerProcess:
    """``python -m eventhub serve`` as a child process on a free port."""

    def __init__(
        self,
        data: Path,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        """``env`` adds to the child's environment (``EVENTHUB_*`` settings, over the defaults
        here); ``preexec_fn`` runs in the child before it starts (e.g. ``resource.setrlimit``)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("ab")
        env = {
            **os.environ,
            "EVENTHUB_ADMIN_KEY": ADMIN_KEY,
            "EVENTHUB_LOG_LEVEL": "warning",
            # as settings_for: callbacks reach 127.0.0.0/8 and nothing else
            "EVENTHUB_ALLOWED_CALLBACK_NETWORKS": "127.0.0.0/8",
            "EVENTHUB_CALLBACK_NETWORKS_ONLY": "true",
            **(env or {}),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "eventhub",
                "serve",
                "--port",
                str(self.port),
                "--data",
                str(data),
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
            preexec_fn=preexec_fn,
        )
        self.log_path = log_path

    async def ready(self, http: aiohttp.ClientSession) -> None:
        """Wait until ``/readyz`` answers 200."""
        try:
            async with asyncio.timeout(15):
                while True:
                    if self.process.poll() is not None:
                        raise AssertionError(f"server exited early:\n{self.output()}")
                    try:
                        async with http.get(f"{self.url}/readyz") as response:
                            if response.status == 200:
                                return
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"server not ready in time:\n{self.output()}") from None

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def exited(self) -> int:
        """Wait for the process to end; its exit code (negative: killed by that signal)."""
        try:
            code = await asyncio.to_thread(self.process.wait, 20)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server did not exit in time:\n{self.output()}") from None
        return code

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        """Kill it if it still runs, reap it, close the log: no process or file is left over."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._log.close()
