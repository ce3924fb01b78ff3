"""The parties of the delivery benchmarks and how to drive them: the hub (a fresh local
``eventhub serve`` process, or an already running eventhub given by ``--url``), the webhook
receiver (``receiver.py``), and the calls every scenario makes against them.

Every run stamps its own id into its events (the ``benchrun`` extension attribute, and the
event ids) and filters its trigger on it, so a run against a shared, long-lived eventhub only
ever sees its own events, and a second run never collides with the first's ``(source, id)``s.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

BENCH = Path(__file__).resolve().parent
ADMIN_KEY = "bench-admin-key-" + "y" * 24
KM = "/intelligence/api/knowledge-models"
SUBS = "/intelligence/api/subscriptions"
# The bench's receivers listen on 127.0.0.1, which a hub refuses by default (SPEC §8): a hub
# the bench starts may deliver there, and nowhere else.
LOOPBACK_CALLBACKS = {
    "EVENTHUB_ALLOWED_CALLBACK_NETWORKS": "127.0.0.0/8",
    "EVENTHUB_CALLBACK_NETWORKS_ONLY": "true",
}
TRIGGER = "jobs"
# A hub on PostgreSQL needs EVENTHUB_SECRET_KEY (no key file beside a shared database). A fixed
# key is fine here: every bench database is a throwaway one.
BENCH_SECRET_KEY = "YmVuY2gta2V5LWZvci10aHJvd2F3YXktZGF0YWJhc2U"


def database_env(dsn: str | None) -> dict[str, str]:
    """The environment that puts a hub on the PostgreSQL database ``dsn`` (none: SQLite)."""
    if dsn is None:
        return {}
    return {"EVENTHUB_DATABASE": dsn, "EVENTHUB_SECRET_KEY": BENCH_SECRET_KEY}


Pool = list[tuple[str, str, str, bytes]]  # (type, source, time, JSON body): payloads.py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


PACKAGES = (
    *("eventhub", "uvicorn", "starlette", "uvloop", "httptools"),
    *("aiohttp", "aiosqlite", "orjson", "matplotlib"),
)


def machine() -> dict[str, Any]:
    """What a report needs to be read later: the machine, the versions, the revision."""

    def run(argv: list[str], lines: int = 10) -> str | None:
        if shutil.which(argv[0]) is None:
            return None
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return "\n".join((done.stdout or done.stderr).splitlines()[:lines]) or None

    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    cpu = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "lscpu": run(["lscpu"]),
        "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
        "wrk": run(["wrk", "--version"], 1),
        "eventhub_rev": run(["git", "-C", str(BENCH.parent), "rev-parse", "HEAD"], 1),
        "loadavg": os.getloadavg(),
    }


# -- processes ---------------------------------------------------------------------------------


class Process:
    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._fh = log.open("wb")
        self.proc = subprocess.Popen(
            args, stdout=self._fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


async def wait_http(url: str, timeout: float = 30.0) -> float:
    """Seconds until ``url`` answers 200."""
    started = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        while time.perf_counter() - started < timeout:
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.01)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@dataclass(frozen=True)
class Network:
    """Where the receivers listen, and the host the hub reaches them at: 127.0.0.1 for a local
    hub; for ``--url``, an address of this machine that the hub can reach."""

    bind: str = "127.0.0.1"
    advertise: str = "127.0.0.1"


# The receiver every scenario starts: ``lean`` (lean_receiver.py, uvloop + httptools) or
# ``aiohttp`` (receiver.py, ~5x the CPU a request: the receiver of the figures before issue 13).
# A script's ``--receiver`` sets it before its first scenario.
RECEIVERS = {"lean": "lean_receiver.py", "aiohttp": "receiver.py"}
RECEIVER = "lean"


@contextlib.contextmanager
def receiver(
    tmp: Path, net: Network, latency: bool = False, record: bool = False, calls: bool = False
) -> Iterator[tuple[str, str]]:
    """A receiver process (``RECEIVER``'s kind); yields (its URL from here, its URL as the hub
    reaches it)."""
    port = free_port()
    script = str(BENCH / RECEIVERS[RECEIVER])
    args = [sys.executable, script, "--port", str(port), "--host", net.bind]
    args += ["--latency"] if latency else []
    args += ["--record"] if record else []
    args += ["--calls"] if calls else []
    proc = Process(args, tmp / f"receiver-{port}.log")
    try:
        local = f"http://127.0.0.1:{port}"
        asyncio.run(wait_http(f"{local}/stats"))
        yield local, f"http://{net.advertise}:{port}"
    finally:
        proc.stop()


@contextlib.contextmanager
def py_spy(pid: int | None, out: Path | None) -> Iterator[None]:
    """Sample process ``pid`` with py-spy while the block runs, into ``out`` (collapsed
    stacks: ``bench/stacks.py`` summarizes them). Does nothing without both, or without
    py-spy (it is in the bench extra)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if pid is None or out is None or not Path(exe).exists():
        if out is not None:
            print(f"  not profiling into {out}: no py-spy, or no process here", file=sys.stderr)
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [exe, "record", "--pid", str(pid), "--format", "raw", "--output", str(out)]
    argv += ["--nonblocking", "--duration", "600", "--rate", "500"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # py-spy attaches before the measured work starts
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the hub under test ------------------------------------------------------------------------


@dataclass
class Hub:
    url: str
    key: str
    run: str  # this run's id: in every event (benchrun) and the trigger's filter
    proc: Process | None = None  # None: an eventhub this benchmark did not start
    created: list[str] = field(default_factory=list)  # subscriptions, to delete on --url
    dsn: str | None = None  # a local hub's PostgreSQL database (None: SQLite, on its --data)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def km(self) -> str:
        return f"bench-{self.run}"

    @property
    def local(self) -> bool:
        return self.proc is not None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "an external eventhub has no process here"
        return self.proc.proc.pid


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]


def start_local(
    tmp: Path, data: Path, run: str, dsn: str | None = None, env: dict[str, str] | None = None
) -> Hub:
    """A hub on ``data`` (SQLite), or with ``dsn`` on that PostgreSQL database; ``env``: more
    settings (``EVENTHUB_LEASE_SECONDS``, ...)."""
    port = free_port()
    proc = Process(
        [sys.executable, "-m", "eventhub", "serve", "--port", str(port), "--data", str(data)],
        tmp / f"hub-{port}.log",
        {
            "EVENTHUB_ADMIN_KEY": ADMIN_KEY,
            "EVENTHUB_LOG_LEVEL": "warning",
            **LOOPBACK_CALLBACKS,
            **database_env(dsn),
            **(env or {}),
        },
    )
    return Hub(f"http://127.0.0.1:{port}", ADMIN_KEY, run, proc, dsn=dsn)


@contextlib.contextmanager
def served(tmp: Path, data: Path, external: Hub | None, dsn: str | None = None) -> Iterator[Hub]:
    """A fresh local hub on ``data`` (or on the PostgreSQL database ``dsn``), stopped
    afterwards; or, with ``external``, that running eventhub with a run of its own, whose
    subscriptions and model are deleted afterwards."""
    if external is not None:
        hub = Hub(external.url, external.key, new_run_id())
        try:
            yield hub
        finally:
            asyncio.run(clean_up(hub))
        return
    hub = start_local(tmp, data, new_run_id(), dsn)
    try:
        if dsn is not None:
            import pg  # beside this file; asyncpg is needed only for PostgreSQL runs

            asyncio.run(wait_http(hub.url + "/readyz", timeout=60))
            pg.check_migrated(dsn)
        yield hub
    finally:
        assert hub.proc is not None
        hub.proc.stop()


async def clean_up(hub: Hub) -> None:
    """What a run made on an eventhub it does not own: its subscriptions and its model. (Its
    events stay: the log is append-only.)"""
    async with aiohttp.ClientSession() as http:
        for sid in hub.created:
            async with http.delete(f"{hub.url}{SUBS}/{sid}", headers=hub.auth) as r:
                if r.status not in (204, 404):
                    print(f"could not delete subscription {sid}: {r.status}", file=sys.stderr)
        async with http.delete(f"{hub.url}{KM}/{hub.km}", headers=hub.auth) as r:
            if r.status not in (204, 404):
                print(f"could not delete model {hub.km}: {await r.text()}", file=sys.stderr)


# -- calls against a hub -----------------------------------------------------------------------


async def setup_trigger(http: aiohttp.ClientSession, hub: Hub) -> None:
    trigger = {
        "name": "Orchestrator",
        "filters": [{"prefix": {"source": "/uipath/"}}, {"exact": {"benchrun": hub.run}}],
    }
    for method, path, body in [
        ("PUT", f"{KM}/{hub.km}", {"name": hub.km}),
        ("PUT", f"{KM}/{hub.km}/triggers/{TRIGGER}", trigger),
        ("POST", f"{KM}/{hub.km}/publish", None),
    ]:
        async with http.request(method, hub.url + path, json=body, headers=hub.auth) as r:
            if r.status != 200:
                raise RuntimeError(f"{method} {path}: {r.status} {await r.text()}")


async def subscribe(
    http: aiohttp.ClientSession,
    hub: Hub,
    callback: str,
    n: int,
    concurrency: int = 16,
    batch_size: int | None = None,
    fmt: str = "envelope",
) -> float:
    """Create ``n`` subscriptions; seconds it took. ``batch_size`` None: the hub's default."""
    path = f"{hub.url}{KM}/{hub.km}/triggers/{TRIGGER}/subscriptions"
    queue = list(range(n))
    started = time.perf_counter()

    async def worker() -> None:
        while queue:
            i = queue.pop()
            body: dict[str, Any] = {
                "name": f"s{i}",
                "callbackInfo": {"uri": callback},
                "format": fmt,
            }
            if batch_size is not None:
                body["batchSize"] = batch_size
            async with http.post(path, json=body, headers=hub.auth) as r:
                if r.status != 201:
                    raise RuntimeError(f"create subscription: {r.status} {await r.text()}")
                hub.created.append((await r.json())["id"])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


def timed(body: bytes, sent_at: float | None) -> bytes:
    """A payload with the producer's send time (epoch seconds) as ``sentAt``, which the
    receiver subtracts from its own clock: the end-to-end latency."""
    return body if sent_at is None else b'{"sentAt":%r,%s' % (sent_at, body[1:])


def event_batch(
    pool: Pool, run: str, start: int, n: int, tag: str = "e", sent_at: float | None = None
) -> bytes:
    """Events ``start`` … ``start + n - 1`` of this run as a JSON batch (ids ``<run>-<tag><i>``)."""
    events = [
        b'{"specversion":"1.0","id":"%s-%s%d","source":%s,"type":%s,"benchrun":"%s","data":%s}'
        % (
            run.encode(),
            tag.encode(),
            i,
            orjson.dumps(pool[i % len(pool)][1]),
            orjson.dumps(pool[i % len(pool)][0]),
            run.encode(),
            timed(pool[i % len(pool)][3], sent_at),
        )
        for i in range(start, start + n)
    ]
    return b"[" + b",".join(events) + b"]"


def binary_headers(hub: Hub, type_: str, source: str, event_id: str) -> dict[str, str]:
    return {
        **hub.auth,
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-source": source,
        "ce-type": type_,
        "ce-id": f"{hub.run}-{event_id}",
        "ce-benchrun": hub.run,
    }


async def post_batch(http: aiohttp.ClientSession, hub: Hub, body: bytes) -> None:
    headers = {**hub.auth, "content-type": "application/cloudevents-batch+json"}
    async with http.post(hub.url + "/events", data=body, headers=headers) as r:
        if r.status != 200:
            raise RuntimeError(f"POST /events: {r.status} {await r.text()}")


async def post_events(
    http: aiohttp.ClientSession, hub: Hub, pool: Pool, n: int, per_request: int = 100
) -> None:
    """Events 0 … n - 1 of this run, ``per_request`` a request, one request after another."""
    for start in range(0, n, per_request):
        size = min(per_request, n - start)
        await post_batch(http, hub, event_batch(pool, hub.run, start, size))


def write_report(result: dict[str, Any], name: str, out: Path | None) -> Path:
    """The JSON of a benchmark's run (default ``bench/results/<name>-<time>.json``); prints
    its Markdown."""
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    out = out or results / f"{name}-{datetime.now(UTC):%Y-%m-%d-%H%M%S}.json"
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(result["markdown"])
    print(f"\nwritten to {out}", file=sys.stderr)
    return out


async def receiver_stats(
    http: aiohttp.ClientSession, url: str, counts_only: bool = False
) -> dict[str, Any]:
    """The receiver's ``/stats``; ``counts_only``: requests, events and CPU alone."""
    async with http.get(url + ("/stats?counts=1" if counts_only else "/stats")) as r:
        result: dict[str, Any] = await r.json()
        return result


async def until_received(
    http: aiohttp.ClientSession,
    url: str,
    n: int,
    timeout: float,
    poll: float = 0.01,
    count: str = "requests",
) -> float:
    """Seconds until the receiver at ``url`` has ``n`` requests (or, ``count="events"``,
    events: a batched delivery is one request of many events)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        # Counts only: a latency receiver's full stats are every latency so far, megabytes of
        # JSON a poll at 5,000 events/s, on the cores the hub is being measured on.
        if (await receiver_stats(http, url, counts_only=True))[count] >= n:
            return time.perf_counter() - started
        await asyncio.sleep(poll)
    raise RuntimeError(f"the receiver did not get {n} {count} within {timeout} s")


async def delivered_total(http: aiohttp.ClientSession, hub: Hub) -> int:
    async with http.get(hub.url + SUBS, headers=hub.auth) as r:
        body = await r.json()
    return sum(s["counts"]["delivered"] for s in body["content"] if s["knowledgeModelId"] == hub.km)
