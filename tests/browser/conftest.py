"""The console driven in a real headless Chromium (Debian's ``chromium``; Playwright's own
browser download cannot work here). One browser for the module, a fresh context (so a fresh
``sessionStorage``) per test, a real hub on 127.0.0.1 per test.

Without ``/usr/bin/chromium`` the tests skip, except under ``CI=true``, where a missing
browser is a failure: ``.ci/run`` installs it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, ConsoleMessage, Page, Request, async_playwright

from tests.conftest import ManualClock, Running, settings_for
from tests.e2e.helpers import serving
from tests.e2e.receiver import Receiver

CHROMIUM = Path(os.environ.get("EVENTHUB_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Where each page's screenshot goes (git-ignored); the best are copied to docs/console/.
SHOTS = Path(os.environ.get("EVENTHUB_SCREENSHOTS", Path(__file__).parent / "screenshots"))


def _installed() -> bool:
    return CHROMIUM.exists()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not _installed():
        missing = f"no browser at {CHROMIUM}: apt-get install -y chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser tests must run under CI: {missing}")
        pytest.skip(missing)
    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        await launched.close()


@dataclass
class Hub:
    server: Running
    clock: ManualClock

    @property
    def console(self) -> str:
        return self.server.url + "/console"


@pytest_asyncio.fixture(loop_scope="module")
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    clock = ManualClock()
    async with serving(settings_for(tmp_path), clock) as server:
        yield Hub(server, clock)


@pytest_asyncio.fixture(loop_scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


@dataclass
class Watch:
    """What a page did that no test should see: a script error, a policy violation, a
    request to another origin."""

    origin: str
    errors: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert not self.errors, self.errors
        assert not self.elsewhere, self.elsewhere


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser, hub: Hub) -> AsyncIterator[Page]:
    """A page at 1280 x 800 in a fresh context; at the end, no script error, no policy
    violation and no request that left the hub's origin."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    opened = await context.new_page()
    opened.set_default_timeout(10_000)
    watch = Watch(hub.server.url)

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "TrustedHTML" in message.text:
            watch.errors.append(message.text)

    def on_request(request: Request) -> None:
        if not request.url.startswith(watch.origin + "/"):
            watch.elsewhere.append(request.url)

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: watch.errors.append(str(error)))
    opened.on("request", on_request)
    yield opened
    await context.close()
    watch.check()
