"""The contract test: schemathesis drives a running hub from its own ``/openapi.json`` (every
operation, with an admin key and with a consumer key) and no answer is a 5xx or breaks what
the document says of it: its status, media type, headers and body schema. And the document
itself: valid OpenAPI 3.1, every route of the app in it, its page served from this origin
only, and the ingest and log answers (written with orjson, not msgspec: api/events.py)
exactly the Structs the document is built from.

The hub is ``eventhub serve`` in a child process, callbacks confined to 127.0.0.0/8 (as
``settings_for``): the subscriptions schemathesis makes with generated URLs reach nothing off
this machine. Before the run it gets one of each resource (a source, a model with a
published trigger, a subscription, a process definition, instances, a trace, events), and
part of the generated cases name them, so that the answers that carry data (a 200 with a
body, not a 404) are checked too.

Deterministic: schemathesis's coverage cases are fixed, and Hypothesis is derandomized with
no example database (nothing written in the repository). Bounded: ``EXAMPLES`` generated cases
per operation and mode, no shrinking (a failure is reported as found, with its curl line).
"""

from __future__ import annotations

import http.client
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.client import HTTPMessage
from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from eventhub import app as app_module
from eventhub.api.events import Entry, Page
from eventhub.api.ingest_operations import Receipt
from eventhub.api.openapi import Docs
from tests.conftest import ADMIN_KEY, Running, free_port, settings_for
from tests.e2e.helpers import ServerProcess
from tests.e2e.threaded import call

# Generated cases per operation, for each of the positive and negative modes (on top of
# schemathesis's coverage cases: boundaries, missing and wrong-typed fields, ~900 in all).
EXAMPLES = 20
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
KM = "/intelligence/api/knowledge-models"


@dataclass
class Hub:
    """The hub under test, its keys by role, and the values of path parameters that name
    resources it holds."""

    url: str
    port: int
    keys: dict[str, str]
    known: dict[str, str] = field(default_factory=dict)

    def json(self, method: str, path: str, body: Any = None, key: str = ADMIN_KEY) -> Any:
        headers = [("Authorization", f"Bearer {key}"), ("Content-Type", "application/json")]
        data = b"" if body is None else orjson.dumps(body)
        status, answer = call(self.port, method, path, headers, data)
        assert status < 300, (method, path, status, answer)
        return orjson.loads(answer) if answer else None

    def event(self, event: dict[str, Any]) -> None:
        headers = [
            ("Authorization", f"Bearer {ADMIN_KEY}"),
            ("Content-Type", "application/cloudevents+json"),
        ]
        status, answer = call(self.port, "POST", "/events", headers, orjson.dumps(event))
        assert status == 200, answer


def _ready(server: ServerProcess) -> None:
    deadline = time.monotonic() + 15
    while True:
        assert server.process.poll() is None, f"the hub exited:\n{server.output()}"
        assert time.monotonic() < deadline, f"the hub is not ready:\n{server.output()}"
        try:
            if call(server.port, "GET", "/readyz", [], b"", timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)


def _seed(hub: Hub) -> None:
    """One of each resource, so that generated cases can name some that exist."""
    hub.json("PUT", "/admin/sources/shop", {})
    hub.json("PUT", f"{KM}/orders", {"name": "Orders"})
    trigger = {"name": "Created", "filters": [{"exact": {"type": "order.created"}}]}
    hub.json("PUT", f"{KM}/orders/triggers/created", trigger)
    hub.json("POST", f"{KM}/orders/publish")
    # Nothing listens there: its deliveries fail and back off, as a real dead receiver's.
    callback = {"uri": f"http://127.0.0.1:{free_port()}/", "headers": {}}
    subscription = hub.json(
        "POST",
        f"{KM}/orders/triggers/created/subscriptions",
        {"name": "s", "callbackInfo": callback},
    )
    process = {
        "name": "Approval",
        "start": {"filters": [{"exact": {"type": "order.created"}}]},
        "steps": [{"id": "approval", "wait": {"type": "order.approved"}}],
    }
    hub.json("PUT", "/api/processes/approval", process)
    # Each starts an instance of the process and joins trace t-1.
    for i in range(3):
        event = {"specversion": "1.0", "id": f"e-{i}", "source": "shop", "type": "order.created"}
        hub.event({**event, "traceid": "t-1", "data": {"n": i}})
    instances = hub.json("GET", "/api/instances")["instances"]
    assert instances, "the process started no instance"
    hub.known = {
        "source": "shop",
        "name": "shop",
        "km": "orders",
        "trigger": "created",
        "id": subscription["id"],
        "definitionId": "approval",
        "instanceId": instances[0]["id"],
        "traceId": "t-1",
    }


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    folder = Path(tmp_path_factory.mktemp("contract"))
    server = ServerProcess(folder / "eventhub.db", folder / "server.log")
    try:
        _ready(server)
        made = Hub(server.url, server.port, {"admin": ADMIN_KEY})
        consumer = made.json("POST", "/admin/keys", {"role": "consumer", "name": "contract"})
        made.keys["consumer"] = consumer["key"]
        _seed(made)
        yield made
        assert server.process.poll() is None, f"the hub died:\n{server.output()}"
    finally:
        server.close()


@pytest.fixture(scope="module")
def schema(hub: Hub) -> Any:
    # Every case is sent with the role's key: schemathesis's own guesses at the security
    # parameters (a random Bearer token, access_token or signature) would only meet 401s.
    config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
    loaded = schemathesis.openapi.from_url(f"{hub.url}/openapi.json", config=config)
    loaded.validate()  # against the OpenAPI 3.1 meta-schema: raises when it does not hold
    return loaded


@dataclass
class Findings:
    """Failures, one per operation and kind: a failure repeats in case after case."""

    checks: list[Any] = field(default_factory=lambda: list(CHECKS))
    found: dict[tuple[str, str], str] = field(default_factory=dict)
    cases: int = 0

    def run(self, case: schemathesis.Case[Any], key: str) -> None:
        _no_long_poll(case)
        headers = {"Authorization": f"Bearer {key}"}
        self.cases += 1
        try:
            case.call_and_validate(headers=headers, checks=self.checks, timeout=10)
        except BaseExceptionGroup as group:
            for failure in group.exceptions:
                self._note(case, failure, headers)
        except Exception as exc:
            self._note(case, exc, headers)

    def _note(
        self, case: schemathesis.Case[Any], exc: BaseException, headers: dict[str, str]
    ) -> None:
        title = getattr(exc, "title", type(exc).__name__)
        where = (case.operation.label, str(title))
        if where not in self.found:
            self.found[where] = f"{exc}\n    {case.as_curl_command(headers=headers)}"

    def report(self) -> str:
        return "\n\n".join(
            f"{label}: {title}\n{text}" for (label, title), text in self.found.items()
        )


def _no_long_poll(case: schemathesis.Case[Any]) -> None:
    """``GET /events?wait=S`` holds an empty page for S seconds (up to 30): the contract is the
    same with 0, and the long poll has its own tests (tests/e2e/test_logs.py)."""
    if case.operation.path == "/events" and isinstance(case.query, dict):
        wait = case.query.get("wait")
        if isinstance(wait, int) and not isinstance(wait, bool) and wait > 0:
            case.query["wait"] = 0
        elif isinstance(wait, str) and wait.isascii() and wait.isdigit() and int(wait) > 0:
            case.query["wait"] = "0"


def _known(operation: Any, known: dict[str, str]) -> dict[str, str]:
    names = re.findall(r"{([^}]+)}", operation.path)
    return {name: known[name] for name in names if name in known}


def _exercise(schema: Any, hub: Hub, role: str) -> Findings:
    """Every operation: its coverage cases, then generated ones (positive and negative), a
    share of them naming resources the hub holds. Deletions go last, so the reads, updates
    and actions meet the seeded resources still there."""
    findings = Findings()
    key = hub.keys[role]
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: op.method == "delete")
    for operation in operations:
        for case in schema.iter_coverage_cases(
            operation,
            generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
            generation_config=schema.config.generation_for(operation=operation),
        ):
            findings.run(case, key)
        known = _known(operation, hub.known)
        modes = [GenerationMode.POSITIVE]
        if _negatable(schema, operation):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            strategy = operation.as_strategy(generation_mode=mode)
            if known:
                strategy = st.one_of(
                    strategy, operation.as_strategy(generation_mode=mode, path_parameters=known)
                )
            _fuzz(strategy, lambda case: findings.run(case, key), mode.is_negative)
    return findings


def _negatable(schema: Any, operation: Any) -> bool:
    """Whether a generated case may break the operation's schema: it takes a query parameter
    or a body with a schema. A path segment or a header of any text cannot be made invalid
    (an empty one is not sent), and Hypothesis spends seconds finding that out; the coverage
    cases already send what invalid there is."""
    raw = schema.raw_schema["paths"][operation.path][operation.method.lower()]
    if any(p["in"] == "query" for p in raw.get("parameters", ())):
        return True
    content = raw.get("requestBody", {}).get("content", {})
    return any(media.get("schema") for media in content.values())


def _fuzz(
    strategy: st.SearchStrategy[schemathesis.Case[Any]],
    run: Callable[[schemathesis.Case[Any]], None],
    negative: bool,
) -> None:
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def fuzz(case: schemathesis.Case[Any]) -> None:
        run(case)

    try:
        fuzz()
    except Unsatisfiable:
        # Nothing of it can be made invalid (a free-text query parameter alone).
        if not negative:
            raise


@pytest.mark.timeout(120)
@pytest.mark.parametrize("role", ["admin", "consumer"])
def test_every_operation_keeps_its_contract(schema: Any, hub: Hub, role: str) -> None:
    # The key still opens the hub (an admin run revokes keys, but only by generated ids): a
    # run whose every case met 401 would check the error shape and nothing else.
    hub.json("GET", "/events?limit=1", key=hub.keys[role])
    findings = _exercise(schema, hub, role)
    assert not findings.found, (
        f"{len(findings.found)} failures in {findings.cases} cases:\n\n{findings.report()}"
    )
    assert findings.cases > 1000
    # Schemathesis revoked keys and deleted sources as the admin: the key it used is the
    # hub's own (EVENTHUB_ADMIN_KEY), which no API call removes.
    assert hub.json("GET", "/admin/keys") is not None


INGEST = {
    "/events": "application/cloudevents+json",
    "/api/ingestion/event/batch": "application/json",
    "/api/ingestion/uipath/{source}": "application/json",
}


def test_ingest_takes_every_json_body_its_document_allows(schema: Any, hub: Hub) -> None:
    """The ingest bodies' schemas are no looser than ingest at their boundaries: what
    schemathesis's coverage cases make of them is stored, not refused. It was refused 400:
    ``subject: ""`` and ``datacontenttype: ""`` (documented as any string, refused as empty,
    as the CloudEvents spec says), a Camunda event's non-JSON ``datacontenttype``, and a
    UiPath ``Timestamp: ""`` (documented as any string, refused as not RFC 3339). Binary mode
    aside: its ce-* headers are required only with its media type, which the document cannot
    say. Generated cases (not only boundaries) still find the document looser than ingest
    where JSON Schema says less than ingest checks: extension attribute names and values,
    ``data_base64`` that is not base64, lone surrogates (see the report of this change)."""
    findings = Findings(checks=[not_a_server_error, positive_data_acceptance])
    for path, media_type in INGEST.items():
        operation = schema[path]["POST"]
        for case in schema.iter_coverage_cases(
            operation,
            generation_modes=[GenerationMode.POSITIVE],
            generation_config=schema.config.generation_for(operation=operation),
        ):
            if case.media_type == media_type:
                findings.run(case, ADMIN_KEY)
    assert not findings.found, findings.report()
    assert findings.cases > 30


# -- the document and its page ------------------------------------------------------------------


def _get(hub: Hub, path: str) -> tuple[int, HTTPMessage, bytes]:
    with urllib.request.urlopen(f"{hub.url}{path}", timeout=10) as response:
        return response.status, response.headers, response.read()


def test_the_document_is_openapi_3_1_with_valid_schemas(hub: Hub) -> None:
    status, headers, body = _get(hub, "/openapi.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    document = orjson.loads(body)
    assert document["openapi"] == "3.1.0"
    # The document as a whole (the ``schema`` fixture validated it against OpenAPI 3.1's
    # meta-schema); that leaves each JSON Schema in it, which the meta-schema does not check.
    for name, component in document["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(component), name
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), "two operations share an operationId"


def test_every_route_of_the_app_is_in_the_document_and_back(hub: Hub, tmp_path: Path) -> None:
    """Matched by Starlette's own route patterns: a documented path with its parameters
    filled in must reach a route of that method, and every route must serve one."""
    document = orjson.loads(_get(hub, "/openapi.json")[2])
    documented = {
        (re.sub(r"{[^}]+}", "p", path), method.upper())
        for path, operations in document["paths"].items()
        for method in operations
    }
    app = app_module.build(settings_for(tmp_path))
    served = []
    for route in app.routes:
        assert isinstance(route, Route), route
        served += [(route, method) for method in route.methods or () if method != "HEAD"]

    def serves(route: Route, method: str, path: str, wanted: str) -> bool:
        return method == wanted and route.path_regex.fullmatch(path) is not None

    for route, method in served:
        assert any(serves(route, method, p, m) for p, m in documented), (
            f"{method} {route.path} is served but not documented"
        )
    for path, wanted in documented:
        assert any(serves(r, m, path, wanted) for r, m in served), (
            f"{wanted} {path} is documented but not served"
        )


def test_the_docs_page_loads_nothing_from_another_origin(hub: Hub) -> None:
    for name in ("", "/swagger-ui-bundle.js", "/swagger-ui.css", "/init.js"):
        status, headers, body = _get(hub, f"/docs{name}")
        assert status == 200, name
        assert headers["Content-Security-Policy"] == Docs.POLICY, name
        assert "default-src 'self'" in Docs.POLICY and "http" not in Docs.POLICY
        if name in ("", "/init.js"):
            assert b"http" not in body.lower(), f"/docs{name} names another origin"
        if name == "":
            references = re.findall(rb'(?:src|href)="([^"]*)"', body)
            assert references and all(r.startswith(b"/docs/") for r in references), references
        if name == "/swagger-ui.css":
            urls = re.findall(rb"url\(\"?([^)\"]*)", body)
            assert all(u.startswith(b"data:") for u in urls), "the styles load from elsewhere"


# -- the answers written with orjson are the Structs the document shows --------------------------


def _exactly(body: bytes, type_: type[Any]) -> Any:
    """``body`` decoded strictly as ``type_``, which holds all of it: encoded back, it is the
    same JSON (no field the Struct leaves out, none it adds)."""
    decoded = msgspec.json.decode(body, type=type_, strict=True)
    assert orjson.loads(msgspec.json.encode(decoded)) == orjson.loads(body)
    return decoded


async def _post(server: Running, path: str, body: Any, media_type: str) -> bytes:
    headers = {**server.admin, "Content-Type": media_type}
    async with server.http.post(server.url + path, data=orjson.dumps(body), headers=headers) as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def _read(server: Running, path: str) -> bytes:
    async with server.http.get(server.url + path, headers=server.admin) as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def test_ingest_receipts_and_log_pages_decode_into_their_structs(server: Running) -> None:
    event = {"specversion": "1.0", "id": "r-1", "source": "receipts", "type": "t", "data": {"a": 1}}
    structured = "application/cloudevents+json"
    receipt = _exactly(await _post(server, "/events", event, structured), Receipt)
    assert receipt.accepted == 1 and receipt.events[0].duplicate is False
    # Again: a duplicate; and one that names a process instance gets a correlation.
    again = _exactly(await _post(server, "/events", event, structured), Receipt)
    assert again.events[0].duplicate is True
    named = {**event, "id": "r-2", "cxpinstanceid": "nobody"}
    correlated = _exactly(await _post(server, "/events", named, structured), Receipt)
    assert correlated.events[0].correlation == "unrouted"
    batch = [{**event, "id": f"b-{i}", "data": None} for i in range(3)]
    for e in batch:
        del e["data"]
        e["data_base64"] = "AAE="
    batched = await _post(server, "/events", batch, "application/cloudevents-batch+json")
    assert _exactly(batched, Receipt).accepted == 3
    uipath = {"Type": "job.completed", "EventId": "u-1", "Timestamp": "2024-01-01T00:00:00Z"}
    answer = await _post(server, "/api/ingestion/uipath/orchestrator", uipath, "application/json")
    assert _exactly(answer, Receipt).accepted == 1

    page = _exactly(await _read(server, "/events?after=0"), Page)
    assert [e.event["id"] for e in page.events] == ["r-1", "r-2", "b-0", "b-1", "b-2", "u-1"]
    assert page.next_after == page.head == page.events[-1].offset
    assert _exactly(await _read(server, f"/events?after={page.head}"), Page).events == []
    entry = _exactly(await _read(server, "/events/receipts/b-1"), Entry)
    assert entry.event["data_base64"] == "AAE="


async def test_what_ingest_takes_reads_back_in_the_documented_shape(server: Running) -> None:
    """Ingest takes any String as ``dataschema`` (a URI by convention only), so the document
    cannot say ``format: uri`` of it: an event sent with ``"dataschema": "0"`` was read back
    in a page that broke the documented ``Page``."""
    event = {"specversion": "1.0", "id": "d-1", "source": "s", "type": "t", "dataschema": "0"}
    await _post(server, "/events", event, "application/cloudevents+json")
    async with server.http.get(f"{server.url}/openapi.json") as r:
        document = await r.json()
    page = orjson.loads(await _read(server, "/events?after=0"))
    validator = jsonschema_rs.validator_for(
        {"$ref": "#/components/schemas/Page", "components": document["components"]},
        validate_formats=True,
    )
    assert page["events"][0]["event"]["dataschema"] == "0"
    validator.validate(page)


def test_a_405_names_every_method_its_path_takes(hub: Hub) -> None:
    """RFC 9110 §15.5.6: a 405's ``Allow`` lists the methods the resource takes.
    Schemathesis's allow_header_conformance check finds ``OPTIONS /admin/keys`` answered
    ``Allow: POST`` (GET too is served), ``DELETE /events`` ``Allow: POST`` (GET, OPTIONS
    too), ``OPTIONS /api/instances/{id}/cancel`` ``Allow: HEAD, GET`` (only POST)."""
    document = orjson.loads(_get(hub, "/openapi.json")[2])
    wrong = []
    for path, operations in document["paths"].items():
        wanted = {method.upper() for method in operations}
        if "GET" in wanted:
            wanted.add("HEAD")
        conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)
        try:
            conn.request("TRACE", re.sub(r"{[^}]+}", "p", path))
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        assert response.status == 405, path
        allowed = {m.strip() for m in (response.getheader("Allow") or "").split(",")}
        # At least those: one raw-path route may serve two documented paths (GET
        # /api/instances/{id} and POST .../{id}/cancel), and then names both methods.
        if not wanted <= allowed:
            wrong.append(f"{path}: Allow {sorted(allowed)}, takes {sorted(wanted)}")
    assert not wrong, "\n".join(wrong)


async def test_the_ingest_document_takes_null_for_an_optional_attribute(server: Running) -> None:
    """The JSON event format writes an absent optional attribute as null, and ingest takes it
    so (schemathesis's negative_data_rejection check sent ``"group": null`` to the Camunda
    endpoint, ``"Timestamp": null`` to the UiPath one: both stored): the document says so."""
    async with server.http.get(f"{server.url}/openapi.json") as r:
        document = await r.json()
    nulls = {"subject": None, "time": None, "datacontenttype": None, "dataschema": None}
    event = {"specversion": "1.0", "id": "n-1", "source": "s", "type": "t", **nulls}
    camunda = [{**event, "id": "n-2", "traceid": "t", "group": None}]
    uipath = {"Type": "job.completed", "EventId": "n-3", "Timestamp": None}
    sent = [
        ("/events", "application/cloudevents+json", event),
        ("/api/ingestion/event/batch", "application/json", camunda),
        ("/api/ingestion/uipath/{source}", "application/json", uipath),
    ]
    for path, media_type, body in sent:
        schema = document["paths"][path]["post"]["requestBody"]["content"][media_type]["schema"]
        jsonschema_rs.validator_for({**schema, "components": document["components"]}).validate(body)
        url = path.replace("{source}", "orchestrator")
        headers = {**server.admin, "Content-Type": media_type}
        async with server.http.post(server.url + url, json=body, headers=headers) as r:
            assert r.status in (200, 204), await r.text()


async def test_the_event_schema_refuses_what_ingest_refuses(server: Running) -> None:
    """Schemathesis's positive_data_acceptance check sent events the document allowed and
    ingest refused: extension attributes with other names than lower-case letters and
    digits, or values other than a String, Boolean or 32-bit Integer; ``data`` with
    ``data_base64``. The document now refuses each, as ingest does; and takes what it takes."""
    async with server.http.get(f"{server.url}/openapi.json") as r:
        document = await r.json()
    content = document["paths"]["/events"]["post"]["requestBody"]["content"]
    schema = content["application/cloudevents+json"]["schema"]
    validator = jsonschema_rs.validator_for({**schema, "components": document["components"]})
    base = {"specversion": "1.0", "source": "s", "type": "t"}
    refused: list[dict[str, Any]] = [
        {"Upper": "x"},
        {"under_score": "x"},
        {"ext": 1.5},
        {"ext": 2**40},
        {"ext": ["x"]},
        {"data": 1, "data_base64": None},
    ]
    taken: list[dict[str, Any]] = [
        {"ext": "x", "n": -(2**31), "flag": True, "gone": None, "data": {"a": [1]}}
    ]
    headers = {**server.admin, "Content-Type": "application/cloudevents+json"}
    extras: list[dict[str, Any]] = [*refused, *taken]
    for i, extra in enumerate(extras):
        event = {**base, "id": f"x-{i}", **extra}
        async with server.http.post(f"{server.url}/events", json=event, headers=headers) as r:
            status = r.status
        assert validator.is_valid(event) == (status == 200) == (extra in taken), (extra, status)
