"""Process definitions loaded at start from the catalogue file (``[processes.<id>]``)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from eventhub import auth, errors, tomlfile
from eventhub.hub import Hub
from eventhub.processes import definition_file
from eventhub.settings import Settings
from tests.conftest import ADMIN_KEY, ManualClock, Running, free_port, hub_of, settings_for, start
from tests.e2e.delivery_helpers import request
from tests.e2e.process_helpers import emit, until_state
from tests.e2e.receiver import Receiver

CATALOG = """
[models.orders]
name = "Orders"
[[models.orders.triggers]]
id = "created"
name = "Created"
filters = [{ exact = { type = "order.created" } }]

[processes.approval]
name = "Order approval"
bufferSeconds = 60
start = { knowledgeModel = "orders", trigger = "created" }
[[processes.approval.steps]]
id = "notify"
call = { uri = "URI", headers = { Authorization = "Bearer their-token" } }
[[processes.approval.steps]]
id = "approval"
wait = { type = "order.approved", timeoutSeconds = TIMEOUT }

[processes.own-filters]
name = "Own filters"
start.filters = [{ exact = { type = "order.cancelled" } }]
[[processes.own-filters.steps]]
id = "refund"
wait = { type = "refund.done" }
"""


def catalog(tmp_path: Path, uri: str, timeout: str = "3600") -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(CATALOG.replace("URI", uri).replace("TIMEOUT", timeout))
    return path


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Running]:
    uv, task = await start(replace(settings, port=free_port()), ManualClock())
    try:
        async with aiohttp.ClientSession() as http:
            yield Running(
                f"http://127.0.0.1:{uv.config.port}",
                hub_of(uv),
                http,
                {"Authorization": f"Bearer {ADMIN_KEY}"},
            )
    finally:
        uv.should_exit = True
        await task


async def test_processes_load_from_the_catalogue_file_once_per_change(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = settings_for(tmp_path, catalog_file=catalog(tmp_path, receiver.url))
    async with serving(settings) as server:
        status, approval = await request(server, "GET", "/api/processes/approval")
        assert status == 200, approval
        assert approval["version"] == 1
        assert approval["start"] == {"knowledgeModel": "orders", "trigger": "created"}
        assert approval["bufferSeconds"] == 60
        assert approval["steps"][1] == {
            "id": "approval",
            "wait": {"type": "order.approved", "timeoutSeconds": 3600},
        }
        assert server.hub.processes.get("approval").owner == auth.ENV_ADMIN_ID
        status, own = await request(server, "GET", "/api/processes/own-filters")
        assert status == 200 and own["start"] == {
            "filters": [{"exact": {"type": "order.cancelled"}}]
        }
        # The start names a trigger of the same file, and the call carries the file's header.
        await emit(server, "order.created", "o-1", {"orderId": "o-1"})
        (seen,) = await receiver.wait_for(1)
        assert seen.headers["Authorization"] == "Bearer their-token"
        instance_id = seen.headers["ce-cxpinstanceid"]
        await until_state(server, instance_id, "Waiting")

    # The same file again: nothing changed, so no new version.
    async with serving(settings) as server:
        status, again = await request(server, "GET", "/api/processes/approval")
        assert again["version"] == 1 and again["updatedAt"] == approval["updatedAt"]
        await until_state(server, instance_id, "Waiting")

    # A changed file makes a new version of what changed, and only of that.
    settings = replace(settings, catalog_file=catalog(tmp_path, receiver.url, timeout="7200"))
    async with serving(settings) as server:
        status, changed = await request(server, "GET", "/api/processes/approval")
        assert changed["version"] == 2
        assert changed["steps"][1]["wait"]["timeoutSeconds"] == 7200
        status, own = await request(server, "GET", "/api/processes/own-filters")
        assert own["version"] == 1
        # The waiting instance stays on the version it started on; it still completes.
        woke = await emit(server, "order.approved", "a-1", {}, instance=instance_id)
        assert woke["correlation"] == "woke"
        done = await until_state(server, instance_id, "Completed")
        assert done["version"] == 1


@pytest.mark.parametrize(
    ("uri", "timeout", "says"),
    [
        ("ftp://127.0.0.1/x", "3600", "processes.approval: steps[0].call.uri"),
        ("http://127.0.0.1:9/x", "-1", "processes.approval: steps[1].wait.timeoutSeconds"),
        ("http://127.0.0.1:9/x", "1970-01-01", "processes.approval: steps[1].wait.timeoutSeconds"),
    ],
)
async def test_a_bad_process_in_the_catalogue_file_stops_the_start_naming_it(
    tmp_path: Path, uri: str, timeout: str, says: str
) -> None:
    path = catalog(tmp_path, uri, timeout)
    hub = Hub(settings_for(tmp_path, catalog_file=path), ManualClock())
    with pytest.raises(errors.InvalidRequest) as refused:
        await hub.start()
    assert refused.value.message.startswith(f"{path}: {says}")
    assert hub.tasks.names() == []


async def test_a_process_whose_start_names_no_trigger_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(
        '[processes.p]\nname = "P"\nstart = { knowledgeModel = "nope", trigger = "t" }\n'
        '[[processes.p.steps]]\nid = "w"\nwait = { type = "x" }\n'
    )
    hub = Hub(settings_for(tmp_path, catalog_file=path), ManualClock())
    with pytest.raises(errors.InvalidRequest, match=r"processes\.p: start: .*'nope'"):
        await hub.start()


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ("name = 5\n", "processes.p: name: expected `str`, got `int`"),
        ('name = "P"\ncolour = "blue"\n', "processes.p: object contains unknown field `colour`"),
        ('name = "P"\nbufferSeconds = -1\n', "processes.p: bufferSeconds: expected `float` >= 0"),
        ('name = "P"\nbufferSeconds = 1979-05-27\n', "processes.p: bufferSeconds: dates"),
    ],
)
async def test_a_process_table_of_the_wrong_shape_is_refused_naming_file_and_key(
    tmp_path: Path, table: str, says: str
) -> None:
    # The same Struct as PUT /api/processes/{id} body, converted from the TOML table.
    path = tmp_path / "catalog.toml"
    path.write_text(
        f"[processes.p]\n{table}start = {{ filters = [{{ exact = {{ type = 'a' }} }}] }}\n"
        '[[processes.p.steps]]\nid = "w"\nwait = { type = "x" }\n'
    )
    with pytest.raises(errors.InvalidRequest) as refused:
        definition_file.bodies(tomlfile.load(path), path)
    assert refused.value.message.startswith(f"{path}: {says}"), refused.value.message
    hub = Hub(settings_for(tmp_path, catalog_file=path), ManualClock())
    with pytest.raises(errors.InvalidRequest, match=re.escape(says)):
        await hub.start()
    assert hub.tasks.names() == []
