"""The operator console end to end (issue 11): a real Chromium signs in to a real hub on
127.0.0.1 and works the pages as an operator would, while real receivers answer the hub's
deliveries. Each page's screenshot is saved (``conftest.SHOTS``)."""

from __future__ import annotations

import asyncio
import json

import pytest
from playwright.async_api import Page, Route, expect

from tests.browser.conftest import SHOTS, Hub
from tests.conftest import ADMIN_KEY, Running
from tests.e2e import receiver as scripted
from tests.e2e.delivery_helpers import publish_trigger, request, send, sub_state, subscribe
from tests.e2e.process_helpers import define, emit, until_instances
from tests.e2e.receiver import Receiver

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def sign_in(page: Page, hub: Hub, key: str = ADMIN_KEY) -> None:
    await page.goto(hub.console)
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


async def go(page: Page, hub: Hub, where: str, heading: str) -> None:
    await page.goto(f"{hub.console}#/{where}")
    await expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()


async def test_a_subscription_goes_failed_then_is_replayed_paused_and_resumed(
    page: Page, hub: Hub, receiver: Receiver
) -> None:
    server = hub.server
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url, name="orders-to-erp", maxRetries=0)
    await sign_in(page, hub)
    await page.get_by_role("link", name="Subscriptions").click()
    row = page.get_by_role("row").filter(has_text="orders-to-erp")
    await expect(row).to_contain_text("Active")
    await row.get_by_role("link", name="orders-to-erp").click()
    state = page.locator("#sub-state")
    await expect(state).to_have_text("Active")

    # The receiver fails: the page, refreshing itself, shows Failed and the attempt.
    receiver.default = scripted.status(500)
    await send(server, 1)
    await expect(state).to_have_text("Failed")
    cursor = (await sub_state(server, sub["id"]))["offset"]
    attempts = page.get_by_role("region", name="Delivery attempts, newest first")
    await expect(attempts.get_by_role("row").nth(1)).to_contain_text("500")
    await shot(page, "subscription-failed")

    # Replay from the first undelivered offset (the dialog's default): confirmed, and the
    # state shown is the API's answer.
    receiver.default = scripted.OK
    await page.get_by_role("button", name="Replay from an offset…").click()
    dialog = page.get_by_role("dialog", name="Replay from an offset")
    await expect(dialog.get_by_label("From offset")).to_have_value(str(cursor + 1))
    await dialog.get_by_role("button", name="Replay").click()
    await expect(dialog).to_have_count(0)
    await expect(state).to_have_text("Active")
    await expect(page.get_by_role("status")).to_contain_text("now Active")
    await receiver.wait_for(2)  # the failed attempt, then the replayed one

    # Pause, by keyboard: Escape cancels the dialog; Tab to its button and Enter confirms.
    pause = page.get_by_role("button", name="Pause", exact=True)
    await pause.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("dialog", name="Pause?")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("dialog")).to_have_count(0)
    assert (await sub_state(server, sub["id"]))["status"] == "Active"
    await pause.focus()
    await page.keyboard.press("Enter")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await expect(state).to_have_text("Paused")
    assert (await sub_state(server, sub["id"]))["status"] == "Paused"
    await shot(page, "subscription")

    await page.get_by_role("button", name="Resume", exact=True).click()
    await page.get_by_role("dialog").get_by_role("button", name="Resume").click()
    await expect(state).to_have_text("Active")
    assert (await sub_state(server, sub["id"]))["status"] == "Active"


async def test_a_rotated_secret_is_shown_once_and_delete_removes_the_subscription(
    page: Page, hub: Hub, receiver: Receiver
) -> None:
    server = hub.server
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url, name="billing")
    await sign_in(page, hub)
    await go(page, hub, f"subscriptions/{sub['id']}", "Subscription billing")
    await page.get_by_role("button", name="Rotate secret…").click()
    await page.get_by_role("dialog").get_by_role("button", name="Rotate").click()
    shown = page.get_by_role("dialog", name="The new signing secret").get_by_label("Value")
    secret = await shown.input_value()
    assert secret.startswith("whsec_") and secret != sub["secret"]
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("dialog")).to_have_count(0)
    await page.reload()
    await expect(page.locator("#sub-state")).to_have_text("Active")
    assert secret not in await page.content()

    await page.get_by_role("button", name="Delete…").click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    await expect(page.get_by_role("status")).to_contain_text("Deleted billing")
    status, _ = await request(server, "GET", f"/intelligence/api/subscriptions/{sub['id']}")
    assert status == 404


async def test_the_tail_shows_a_new_event_filters_and_shows_its_json(page: Page, hub: Hub) -> None:
    server = hub.server
    await send(server, 2)
    await sign_in(page, hub)
    await page.get_by_role("link", name="Log", exact=True).click()
    rows = page.locator("#tail-rows tr")
    await expect(rows).to_have_count(2)
    await expect(page.get_by_role("status")).to_contain_text("Following the log after offset 2")
    # The page waits in a long poll; a new event is answered to it at once.
    await emit(server, "order.shipped", "s-1", {"orderId": "o-7", "carrier": "DHL"})
    shipped = rows.filter(has_text="order.shipped")
    await expect(shipped).to_be_visible()
    await expect(rows).to_have_count(3)
    await page.get_by_label("Type starts with").fill("order.ship")
    await expect(page.locator("#tail-rows tr:visible")).to_have_count(1)
    await page.get_by_label("Type starts with").fill("")
    await page.get_by_label("Source starts with").fill("/shop")
    await expect(page.locator("#tail-rows tr:visible")).to_have_count(2)
    await page.get_by_label("Source starts with").fill("")
    await shipped.get_by_role("button").click()
    viewer = page.get_by_role("region", name="Event at offset 3")
    await expect(viewer.locator("pre")).to_contain_text('"orderId": "o-7"')
    await shot(page, "log-event")


async def test_an_instance_shows_its_state_variables_and_history(page: Page, hub: Hub) -> None:
    server = hub.server
    await define(
        server,
        "approval",
        {
            "name": "Order approval",
            "start": {"filters": [{"exact": {"type": "order.placed"}}]},
            "steps": [{"id": "approve", "wait": {"type": "order.approved"}}],
        },
    )
    await emit(server, "order.placed", "p-1", {"orderId": "o-1", "total": 42})
    (found,) = await until_instances(server, 1)
    await traced(server)
    await sign_in(page, hub)
    await page.get_by_role("link", name="Processes").click()
    await expect(page.get_by_role("region", name="Process definitions")).to_contain_text(
        "Order approval"
    )
    await expect(page.get_by_role("link", name="trace-7")).to_be_visible()
    await shot(page, "processes")
    await page.get_by_role("link", name=found["id"]).click()
    await expect(page.get_by_role("heading", name=f"Instance {found['id']}")).to_be_visible()
    await expect(page.locator("#instance-state")).to_have_text("Waiting")
    await expect(page.get_by_role("region", name="Variables")).to_contain_text("orderId")
    history = page.get_by_role("region", name="History, oldest first")
    await expect(history).to_contain_text("started")
    await expect(history).to_contain_text("waiting")
    await shot(page, "instance")
    await page.get_by_role("button", name="Cancel the instance…").click()
    dialog = page.get_by_role("dialog", name="Cancel the instance")
    await dialog.get_by_role("button", name="Cancel the instance", exact=True).click()
    await expect(page.locator("#instance-state")).to_have_text("Cancelled")
    await expect(history).to_contain_text("cancelled")
    await page.get_by_role("link", name="← Processes").click()
    await page.get_by_role("link", name="trace-7").click()
    await expect(page.get_by_role("region", name="Variables of the trace")).to_contain_text("step")


async def traced(server: Running) -> None:
    """Two events of trace ``trace-7``, through the Camunda ingest path."""
    events = [
        {
            "specversion": "1.0",
            "id": f"t-{i}",
            "source": "order-service",
            "type": "payment",
            "time": f"2026-11-27T10:00:0{i}Z",
            "traceid": "trace-7",
            "data": {"step": i, "amount": 10 * i},
        }
        for i in (1, 2)
    ]
    async with server.http.post(
        server.url + "/api/ingestion/event/batch",
        data=json.dumps(events),
        headers={**server.admin, "Content-Type": "application/json"},
    ) as r:
        assert r.status == 204, await r.text()


async def test_a_consumer_key_sees_only_its_own_subscriptions(
    page: Page, hub: Hub, receiver: Receiver
) -> None:
    server = hub.server
    await publish_trigger(server)
    mine, theirs = await server.new_key("consumer"), await server.new_key("consumer")
    await subscribe(server, receiver.url, key=mine, name="mine")
    other = await subscribe(server, receiver.url, key=theirs, name="theirs")
    await sign_in(page, hub, mine)
    await expect(page.get_by_text(f"({'consumer'})")).to_be_visible()
    await page.get_by_role("link", name="Subscriptions").click()
    await expect(page.get_by_role("link", name="mine")).to_be_visible()
    await expect(page.get_by_role("caption")).to_have_text("1 subscription")
    await expect(page.get_by_role("link", name="theirs")).to_have_count(0)
    await expect(page.get_by_label("Owner")).to_have_count(0)  # an admin's filter
    await go(page, hub, f"subscriptions/{other['id']}", "Subscription")
    await expect(page.get_by_role("alert")).to_contain_text("404")
    await expect(page.get_by_role("button", name="Delete…")).to_have_count(0)


async def test_a_refused_key_goes_back_to_sign_in_and_sign_out_forgets_it(
    page: Page, hub: Hub
) -> None:
    await page.goto(hub.console)
    await page.get_by_label("API key").fill("eh_000000000000_not-a-key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("refused")
    assert await page.evaluate("sessionStorage.length") == 0

    key = await hub.server.new_key("consumer")
    await sign_in(page, hub, key)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("alert")).to_contain_text("Signed out")
    assert await page.evaluate("sessionStorage.length") == 0
    await page.reload()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    # Revoked while signed in: the next call's 401 brings the sign-in form back.
    await sign_in(page, hub, key)
    status, _ = await request(hub.server, "DELETE", f"/admin/keys/{key.split('_')[1]}")
    assert status == 204
    await page.get_by_role("link", name="Catalogue").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("refused the key (401)")
    assert await page.evaluate("sessionStorage.length") == 0


async def test_a_failed_fetch_shows_a_clear_message(page: Page, hub: Hub) -> None:
    await sign_in(page, hub)

    async def fail(route: Route) -> None:
        await route.abort("connectionrefused")

    await page.route("**/api/overview**", fail)
    await page.reload()
    await expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("Could not reach the hub")
    await expect(page.get_by_text("Log head")).to_have_count(0)
    await page.unroute("**/api/overview**")
    await page.get_by_role("button", name="Try again").click()
    await expect(page.get_by_text("Log head")).to_be_visible()
    await expect(page.get_by_role("alert")).to_have_count(0)


async def test_every_page_reads_at_desktop_and_phone_width(
    page: Page, hub: Hub, receiver: Receiver
) -> None:
    server, clock = hub.server, hub.clock
    await publish_trigger(server)
    await subscribe(server, receiver.url, name="warehouse")
    receiver.default = scripted.status(503)
    late = await subscribe(server, receiver.url, name="crm-sync", maxRetries=0)
    receiver.default = scripted.OK
    receiver.decide = lambda seen: (
        scripted.status(503) if late["id"] in str(seen.body) else scripted.OK
    )
    # A few minutes of traffic, one bucket of the rate chart at a time (the hub's clock).
    sent = 0
    for n in (3, 8, 5, 12):
        await send(server, n, start=sent)
        sent += n
        await receiver.wait_for(sent)
        buckets = len((await request(server, "GET", "/api/overview"))[1]["rates"])
        clock.advance(15)
        async with asyncio.timeout(10):
            while len((await request(server, "GET", "/api/overview"))[1]["rates"]) == buckets:
                await asyncio.sleep(0.01)
    await send(server, 2, start=sent)
    await sign_in(page, hub)
    pages = [
        ("overview", "Overview"),
        ("subscriptions", "Subscriptions"),
        ("log", "Log"),
        ("catalogue", "Catalogue"),
        ("processes", "Processes"),
    ]
    for width, height in ((1280, 800), (390, 844)):
        await page.set_viewport_size({"width": width, "height": height})
        for where, heading in pages:
            await go(page, hub, where, heading)
            if where == "overview":
                await expect(page.get_by_role("img", name="events ingested")).to_be_visible()
            if where == "catalogue":
                types = page.get_by_role("region", name="Event classes seen, with counts")
                await expect(types).to_contain_text("order.created")
                await expect(page.get_by_role("region", name="Triggers of orders")).to_contain_text(
                    "created"
                )
            if where == "log":
                await expect(page.locator("#tail-rows tr").first).to_be_visible()
            if where == "processes":
                await expect(page.get_by_role("region", name="Process instances")).to_be_visible()
            if where == "subscriptions":
                await expect(
                    page.get_by_role("img", name="recent deliveries").first
                ).to_be_visible()
            wide = await page.evaluate("document.documentElement.scrollWidth")
            assert wide <= width, f"{where} is {wide} px wide at {width} px"
            await shot(page, where if width == 1280 else f"{where}-phone")
