"""The typed schemas of processes, instances and traces: what ``/openapi.json`` states of
them (bounds, enums, the one-kind rule), and a refused field named in the 400."""

from __future__ import annotations

from typing import Any

import pytest

from eventhub import errors
from eventhub.processes import definitions
from eventhub.processes.instances import Happened, State
from tests.conftest import Running
from tests.e2e.delivery_helpers import request
from tests.e2e.process_helpers import order_process

Document = dict[str, Any]


@pytest.fixture
async def document(server: Running) -> Document:
    found: Document = await server.get_json("/openapi.json")
    return found


def _schema(document: Document, name: str) -> Document:
    found: Document = document["components"]["schemas"][name]
    return found


def _ref(content: Document) -> str:
    ref: str = content["content"]["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[1]


def _parameters(document: Document, path: str, method: str) -> dict[str, Document]:
    operation = document["paths"][path][method]
    return {p["name"]: p["schema"] for p in operation.get("parameters", []) if p["in"] == "query"}


async def test_the_definition_body_states_its_bounds_and_one_kind_per_step(
    document: Document,
) -> None:
    put = document["paths"]["/api/processes/{definitionId}"]["put"]
    assert _ref(put["requestBody"]) == "ProcessBody"
    assert _ref(put["responses"]["200"]) == "Process"
    assert _ref(put["responses"]["201"]) == "CreatedProcess"
    assert "secret" in _schema(document, "CreatedProcess")["required"]
    assert "secret" not in _schema(document, "Process")["properties"]

    body = _schema(document, "ProcessBody")
    assert body["additionalProperties"] is False
    assert body["required"] == ["name", "start", "steps"]
    props = body["properties"]
    assert props["name"]["pattern"] == r"\S"
    assert props["bufferSeconds"]["minimum"] == 0
    assert props["bufferSeconds"]["maximum"] == definitions.MAX_BUFFER_SECONDS
    steps = props["steps"]
    assert (steps["minItems"], steps["maxItems"]) == (1, definitions.MAX_STEPS)
    kinds = [one["required"] for one in steps["items"]["oneOf"]]
    assert kinds == [["call"], ["wait"]]
    starts = [one["required"] for one in props["start"]["oneOf"]]
    assert starts == [["knowledgeModel", "trigger"], ["filters"]]

    step = _schema(document, "ProcessStep")
    assert step["properties"]["id"] == {"type": "string", "minLength": 1, "maxLength": 200}
    wait = _schema(document, "ProcessWait")["properties"]
    assert wait["timeoutSeconds"]["exclusiveMinimum"] == 0
    assert wait["timeoutSeconds"]["maximum"] == definitions.MAX_TIMEOUT_SECONDS
    assert _schema(document, "ProcessStart")["properties"]["filters"]["minItems"] == 1


async def test_instances_and_traces_state_their_enums_and_paging(document: Document) -> None:
    assert sorted(_schema(document, "State")["enum"]) == sorted(s.value for s in State)
    assert sorted(_schema(document, "Happened")["enum"]) == sorted(h.value for h in Happened)
    summary = _schema(document, "InstanceSummary")["properties"]
    assert summary["state"]["$ref"].endswith("/State")
    assert "history" in _schema(document, "InstanceDetail")["required"]
    page = _schema(document, "InstancePage")["properties"]
    assert {"type": "null"} in page["nextAfter"]["anyOf"]

    query = _parameters(document, "/api/instances", "get")
    assert query["state"]["enum"] == [s.value for s in State]
    assert (query["limit"]["minimum"], query["limit"]["maximum"]) == (1, 1000)
    assert query["after"]["minimum"] == 0
    assert set(query) == {"definition", "state", "after", "limit"}
    delete = _parameters(document, "/api/processes/{definitionId}", "delete")
    assert delete["cancelInstances"]["enum"] == ["true", "false"]
    assert set(_parameters(document, "/api/unrouted", "get")) == {"after", "limit"}

    for path, answer in (
        ("/api/processes", "ProcessList"),
        ("/api/processes/{definitionId}", "Process"),
        ("/api/instances", "InstancePage"),
        ("/api/instances/{instanceId}", "InstanceDetail"),
        ("/api/unrouted", "UnroutedPage"),
        ("/api/traces", "TracePage"),
        ("/api/traces/{traceId}", "Trace"),
    ):
        assert _ref(document["paths"][path]["get"]["responses"]["200"]) == answer, path
    cancel = document["paths"]["/api/instances/{instanceId}/cancel"]["post"]
    assert _ref(cancel["responses"]["200"]) == "InstanceDetail"
    traces = _parameters(document, "/api/traces", "get")
    assert (traces["limit"]["minimum"], traces["limit"]["maximum"]) == (1, 1000)
    assert _schema(document, "Trace")["properties"]["variables"]["type"] == "object"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"bufferSeconds": "1"}, "bufferSeconds"),
        ({"name": " "}, "name"),
        ({"steps": [{"id": "a" * 201, "wait": {"type": "t"}}]}, "steps[0].id"),
        ({"steps": [{"id": "a", "wait": {"type": "t", "for": 1}}]}, "steps[0].wait"),
        (
            {"steps": [{"id": "a", "call": {"uri": "http://127.0.0.1/", "headers": []}}]},
            "steps[0].call.headers",
        ),
        ({"start": {"knowledgeModel": 5, "trigger": "t"}}, "start.knowledgeModel"),
        ({"start": {"filters": "type = 'a'"}}, "start.filters"),
        ({"version": "3"}, "version"),
    ],
)
async def test_a_field_of_the_wrong_shape_is_refused_by_name(
    server: Running, change: dict[str, Any], field: str
) -> None:
    code, body = await request(
        server, "PUT", "/api/processes/p", json={**order_process("http://127.0.0.1:9/"), **change}
    )
    assert code == 400, body
    assert body["error"]["code"] == "invalid_request"
    assert body["error"]["message"].startswith(f"{field}: "), body
    assert body["error"]["details"][0]["attribute"] == field
    code, _ = await request(server, "GET", "/api/processes/p")
    assert code == 404


async def test_a_body_that_is_not_a_json_object_is_refused(server: Running) -> None:
    for raw, code_name in ((b"[]", "invalid_request"), (b"{", "invalid_json")):
        headers = {**server.admin, "Content-Type": "application/json"}
        async with server.http.put(
            server.url + "/api/processes/p", data=raw, headers=headers
        ) as response:
            answer = await response.json()
        assert response.status == 400 and answer["error"]["code"] == code_name, answer


@pytest.mark.parametrize(
    ("path", "method", "name"),
    [
        ("/api/instances?state=done", "GET", "state"),
        ("/api/instances?limit=1001", "GET", "limit"),
        ("/api/unrouted?after=-1", "GET", "after"),
        ("/api/processes/p?cancelInstances=yes", "DELETE", "cancelInstances"),
        ("/api/traces?limit=%D9%A3", "GET", "limit"),
    ],
)
async def test_a_bad_query_parameter_is_refused_by_name(
    server: Running, path: str, method: str, name: str
) -> None:
    code, body = await request(server, method, path)
    assert code == 400, body
    assert name in body["error"]["message"], body


def test_the_body_struct_refuses_what_it_cannot_hold() -> None:
    # Pure: the TOML path converts the same Struct (tests/e2e/test_process_catalog.py).
    with pytest.raises(errors.InvalidRequest, match="start takes filters"):
        definitions.check_start(definitions.ProcessStart("km", "t", [{"exact": {"type": "a"}}]))
