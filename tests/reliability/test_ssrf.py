"""SSRF (issue 8, item 3; SPEC §8) against the real server: a callback the egress rules refuse
is refused at create and update (400 naming the rule), a name that resolves to a refused
address is refused at connect time (a rejection, not a flaky network), and a redirect is never
followed.

Network rule: everything here stays on 127.0.0.1. Refused addresses elsewhere appear only in
URLs the hub must refuse before it connects; the hubs that could connect anywhere never get a
subscription they could deliver, and the connect-time hub allows 127.0.0.2 alone.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ManualClock, Running
from tests.e2e.delivery_helpers import (
    KM,
    SUBS,
    auto_clock,
    publish_trigger,
    request,
    send,
    sub_state,
    subscribe,
    wait_status,
)
from tests.e2e.helpers import custom_server
from tests.e2e.receiver import Receiver, status

CREATE = f"{KM}/orders/triggers/created/subscriptions"


class Listener:
    """A bare TCP server on 127.0.0.1 that counts the connections it accepts and answers every
    request 200: the proof that nothing was connected is a count of zero."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> Listener:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    server = await Listener().start()
    yield server
    await server.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture
async def default_rules_hub(tmp_path: Path) -> AsyncIterator[Running]:
    """A hub with the shipped defaults (public addresses only) and one loopback address opened,
    127.0.0.2, so that an update has a valid callback to start from; nothing is ever sent."""
    async with custom_server(
        tmp_path, allowed_callback_networks=("127.0.0.2/32",), callback_networks_only=False
    ) as running:
        await publish_trigger(running)
        yield running


def refused_forms(port: int) -> list[tuple[str, str]]:
    """(callback, the rule its 400 must name); the loopback ones point at ``port``."""
    return [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://10.0.0.5/", "private network"),
        ("http://172.16.0.1/", "private network"),
        ("http://192.168.0.1/", "private network"),
        ("http://[fd00::1]/", "private network"),
        ("http://[fc00::1]/", "private network"),
        ("http://100.64.0.1/", "CGNAT"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://2852039166/", "link-local"),  # 169.254.169.254 in decimal
        ("http://0xa9fea9fe/", "link-local"),
        ("http://0251.0376.0251.0376/", "link-local"),
        ("http://169.254.169.254./", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),
        ("http://[2002:a9fe:a9fe::1]/", "link-local"),
        ("http://[fe80::1%25eth0]/", "zone id"),
        (f"http://127.0.0.1:{port}/", "loopback"),
        (f"http://2130706433:{port}/", "loopback"),
        (f"http://0x7f000001:{port}/", "loopback"),
        (f"http://0177.0.1:{port}/", "loopback"),
        (f"http://127.1:{port}/", "loopback"),
        (f"http://127.0.0.1.:{port}/", "loopback"),
        (f"http://[::ffff:127.0.0.1]:{port}/", "loopback"),
        (f"http://[::ffff:7f00:1]:{port}/", "loopback"),
        (f"http://[::1]:{port}/", "loopback"),
        (f"http://%31%32%37.0.0.1:{port}/", "percent-encoded host"),
        (f"http://user:pw@127.0.0.1:{port}/", "userinfo"),
        (f"http://example.com@127.0.0.1:{port}/", "userinfo"),
        (f"ftp://127.0.0.1:{port}/", "http or https"),
    ]


def assert_refused(code: int, body: Any, uri: str, rule: str) -> None:
    assert code == 400, (uri, body)
    error = body["error"]
    assert error["code"] == "callback_refused", (uri, error)
    assert rule in error["message"] and error["message"].startswith("callbackInfo.uri: "), error
    assert error["details"] == [
        {"attribute": "callbackInfo.uri", "reason": error["details"][0]["reason"]}
    ]


async def test_every_refused_form_is_refused_at_create_and_update_and_never_connected(
    default_rules_hub: Running, listener: Listener
) -> None:
    hub = default_rules_hub
    forms = refused_forms(listener.port)
    for uri, rule in forms:
        body = {"name": "ssrf", "callbackInfo": {"uri": uri}}
        code, answer = await request(hub, "POST", CREATE, json=body)
        assert_refused(code, answer, uri, rule)
    code, listed = await request(hub, "GET", SUBS)
    assert code == 200 and listed["total"] == 0, listed

    fine = await subscribe(hub, "http://127.0.0.2:9/")  # allowed; no event ever matches
    for uri, rule in forms:
        body = {"callbackInfo": {"uri": uri}}
        code, answer = await request(hub, "PUT", f"{SUBS}/{fine['id']}", json=body)
        assert_refused(code, answer, uri, rule)
    assert (await sub_state(hub, fine["id"]))["callbackInfo"]["uri"] == "http://127.0.0.2:9/"
    assert listener.connections == 0


async def test_the_test_suite_itself_reaches_loopback_only(server: Running) -> None:
    # settings_for: 127.0.0.0/8 and nothing else, so no generated URL can leave the machine.
    await publish_trigger(server)
    for uri in ("http://8.8.8.8/", "http://[2606:4700::1111]/", "http://10.0.0.5/"):
        code, answer = await request(
            server, "POST", CREATE, json={"name": "x", "callbackInfo": {"uri": uri}}
        )
        assert_refused(code, answer, uri, "not in allowed_callback_networks")


async def test_a_name_resolving_to_a_refused_address_is_a_rejection_at_connect_time(
    tmp_path: Path, listener: Listener
) -> None:
    # localhost resolves to 127.0.0.1 (and perhaps ::1); this hub allows 127.0.0.2 alone, so
    # the name passes create (it could be loopback the hub may reach) and every address it
    # resolves to is refused before a socket is opened.
    async with custom_server(
        tmp_path, allowed_callback_networks=("127.0.0.2/32",), callback_networks_only=True
    ) as hub:
        await publish_trigger(hub)
        sub = await subscribe(hub, f"http://localhost:{listener.port}/hook", maxRetries=2)
        await send(hub, 1)
        clock = hub.hub.clock
        assert isinstance(clock, ManualClock)
        async with auto_clock(clock):
            state = await wait_status(hub, sub["id"], "Rejected")
    assert re.fullmatch(
        r"callback address (127\.0\.0\.1|::1) refused: not in allowed_callback_networks"
        r" \(callback_networks_only is on\)",
        state["lastError"],
    ), state["lastError"]
    assert state["attempts"] == 3  # the configured retries, then Rejected: never Failed
    assert listener.connections == 0


async def test_a_redirect_to_the_metadata_address_is_not_followed(
    server: Running, receiver: Receiver, clock: ManualClock
) -> None:
    receiver.default = status(302, Location="http://169.254.169.254/latest/meta-data/")
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url, maxRetries=1)
    await send(server, 1)
    async with auto_clock(clock):
        state = await wait_status(server, sub["id"], "Rejected")
    assert state["lastError"] == (
        "HTTP 302: redirect to http://169.254.169.254/latest/meta-data/ refused"
        " (redirects are never followed)"
    )
    assert len(receiver.seen) == 2  # the attempt and its one retry, each to the receiver only


async def test_a_redirect_to_an_allowed_address_is_not_followed_either(
    server: Running, receiver: Receiver, listener: Listener, clock: ManualClock
) -> None:
    # The target is allowed, so only "never follow" keeps the hub away from it.
    receiver.default = status(307, Location=f"http://127.0.0.1:{listener.port}/elsewhere")
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url, maxRetries=0)
    await send(server, 1)
    async with auto_clock(clock):
        state = await wait_status(server, sub["id"], "Rejected")
    assert "redirect to http://127.0.0.1:" in state["lastError"]
    assert len(receiver.seen) == 1 and listener.connections == 0
