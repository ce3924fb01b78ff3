"""Shared fixtures: a real eventhub on a free port of 127.0.0.1, in this test's event loop."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn
from starlette.applications import Starlette

from eventhub import app as app_module
from eventhub import server as eventhub_server
from eventhub.hub import Hub
from eventhub.settings import Settings
from tests.postgres import pg_dsn, pg_server  # noqa: F401  (fixtures of the whole suite)

ADMIN_KEY = "test-admin-key-0123456789"
# The backends a test parameterised over them runs on:
# ``pytestmark = pytest.mark.parametrize("backend", BACKENDS)`` in its module.
BACKENDS = ("sqlite", "postgres")
# A PostgreSQL hub needs EVENTHUB_SECRET_KEY (settings.py): the tests' one (32 bytes).
TEST_SECRET_KEY = "ZXZlbnRodWItdGVzdC1zZWNyZXQta2V5LTAxMjM0NTY="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ManualClock:
    """A clock the test moves by hand: ``sleep`` returns when ``advance`` passes its deadline."""

    def __init__(self, start: float | None = None) -> None:
        # Starts at the real time, so receivers' signature checks (5 minutes' tolerance) pass.
        self.t = time.time() if start is None else start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.t + seconds, future))
        await future

    def sleepers(self) -> int:
        return sum(1 for _, f in self._sleepers if not f.done())

    def advance(self, seconds: float) -> None:
        self.t += seconds
        due = [(d, f) for d, f in self._sleepers if d <= self.t]
        self._sleepers = [(d, f) for d, f in self._sleepers if d > self.t and not f.done()]
        for _, future in due:
            if not future.done():
                future.set_result(None)


@dataclass
class Running:
    url: str
    hub: Hub
    http: aiohttp.ClientSession
    admin: dict[str, str]

    async def post(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        async with self.http.post(self.url + path, **kwargs) as response:
            await response.read()
            return response

    async def get_json(self, path: str, key: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {key or ADMIN_KEY}"}
        async with self.http.get(self.url + path, headers=headers) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def log(self) -> list[dict[str, Any]]:
        body = await self.get_json("/events?after=0&limit=1000")
        entries: list[dict[str, Any]] = body["events"]
        return entries

    async def new_key(self, role: str, sources: list[str] | None = None) -> str:
        response = await self.post(
            "/admin/keys", json={"role": role, "sources": sources, "name": role}, headers=self.admin
        )
        assert response.status == 201
        key: str = (await response.json())["key"]
        return key


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    # Callbacks may reach 127.0.0.0/8 and nothing else (SPEC §8): no URL a test, fuzzer or
    # schemathesis run generates can make a test hub connect off this machine.
    base = Settings(
        host="127.0.0.1",
        port=free_port(),
        data=tmp_path / "eventhub.db",
        admin_key=ADMIN_KEY,
        allowed_callback_networks=("127.0.0.0/8",),
        callback_networks_only=True,
    )
    return replace(base, **overrides)


async def start(settings: Settings, clock: Any = None) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    app = app_module.build(settings, clock)
    # The same configuration, and so the same connection limits, as `eventhub serve`.
    server = eventhub_server.Server(eventhub_server.config(app, settings, log_level="warning"))
    task = asyncio.create_task(server.serve(), name="test-server")
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    return server, task


def hub_of(uv: uvicorn.Server) -> Hub:
    """The hub of a server ``start`` started (its app is eventhub's Starlette app)."""
    app = uv.config.app
    assert isinstance(app, Starlette)
    hub: Hub = app.state.hub
    return hub


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


# Renewed every third of it; long enough that a loaded CI machine renews in time.
PG_LEASE_SECONDS = 4


@pytest.fixture
def backend() -> str:
    """The store the test's hubs run on: SQLite, unless the module parameterises it
    (``BACKENDS``)."""
    return "sqlite"


@pytest.fixture
def backend_settings(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The settings that put a hub on ``backend``: none for SQLite (its file in the test's
    folder); for PostgreSQL a fresh database of the session's server, the secret key, and
    short leases: a hub restarted after ``kill -9`` waits out its dead self's leases (a new
    process is a new node) before it delivers again."""
    if backend == "sqlite":
        return {}
    assert backend == "postgres", backend
    dsn: str = request.getfixturevalue("pg_dsn")
    return {"database": dsn, "secret_key": TEST_SECRET_KEY, "lease_seconds": PG_LEASE_SECONDS}


@pytest.fixture
def backend_env(backend_settings: dict[str, Any]) -> dict[str, str]:
    """``backend_settings`` as a child ``eventhub serve``'s environment."""
    return {f"EVENTHUB_{name.upper()}": str(value) for name, value in backend_settings.items()}


@pytest.fixture
async def server(
    tmp_path: Path, clock: ManualClock, backend_settings: dict[str, Any]
) -> AsyncIterator[Running]:
    settings = settings_for(tmp_path, **backend_settings)
    uv, task = await start(settings, clock)
    hub = hub_of(uv)
    async with aiohttp.ClientSession() as http:
        yield Running(
            f"http://127.0.0.1:{settings.port}", hub, http, {"Authorization": f"Bearer {ADMIN_KEY}"}
        )
    uv.should_exit = True
    await task
