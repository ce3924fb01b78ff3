"""The benchmarks' own tools: the two webhook receivers (``bench/lean_receiver.py``, the
default, and ``bench/receiver.py`` on aiohttp) answer the same API alike, and the lean producer
(``bench/producer.py``) offers its requests on schedule and reports what it cost. Real processes
on 127.0.0.1; no figure is checked against a threshold (benchmarks measure, tests do not time)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).parents[2] / "bench"
RECEIVERS = ["lean_receiver.py", "receiver.py"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(url: str, method: str = "GET", body: bytes | None = None, **headers: str) -> Any:
    """(status, parsed JSON body or None)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, None


class Receiver:
    def __init__(self, script: str, *flags: str) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / script), "--port", str(port), *flags],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                _call(self.url + "/stats")
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{script} did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        receiver.stop()


@pytest.mark.parametrize("script", RECEIVERS)
def test_receiver_counts_latencies_by_path_and_resets(
    script: str, receivers: list[Receiver]
) -> None:
    receivers.append(r := Receiver(script, "--latency"))
    sent_at = time.time()
    one = json.dumps({"event": {"data": {"sentAt": sent_at}}}).encode()
    two = json.dumps([{"data": {"sentAt": sent_at}}, {"data": {"sentAt": sent_at}}]).encode()
    assert _call(r.url + "/hook/a", "POST", one, **{"content-type": "application/json"})[0] == 200
    assert _call(r.url + "/hook", "POST", two)[0] == 200
    assert _call(r.url + "/nowhere", "POST", one)[0] == 404
    status, stats = _call(r.url + "/stats?detail=1")
    assert status == 200 and stats["requests"] == 2 and stats["events"] == 3
    assert len(stats["latencies_ms"]) == 3 and all(ms >= 0 for ms in stats["latencies_ms"])
    assert list(stats["paths"]) == ["a"] and len(stats["paths"]["a"]) == 1
    assert stats["cpu_s"] > 0
    _, light = _call(r.url + "/stats?counts=1")  # what a poll reads: no latencies
    assert set(light) == {"requests", "events", "cpu_s"} and light["events"] == 3  # no lists
    assert _call(r.url + "/reset", "POST", b"")[0] == 204
    status, stats = _call(r.url + "/stats")
    assert (stats["requests"], stats["events"], stats["latencies_ms"]) == (0, 0, [])
    assert "paths" not in stats  # only with ?detail=1


@pytest.mark.parametrize("script", RECEIVERS)
def test_receiver_records_unique_deliveries_and_first_calls(
    script: str, receivers: list[Receiver]
) -> None:
    receivers.append(record := Receiver(script, "--record"))
    batch = json.dumps([{"subscriptionId": "s1", "eventId": "e1"}] * 2).encode()
    for _ in range(2):
        assert _call(record.url + "/hook", "POST", batch)[0] == 200
    _, stats = _call(record.url + "/stats?detail=1")
    assert (stats["requests"], stats["events"], stats["unique"]) == (2, 4, 1)
    assert stats["per_event"] == {"e1": 1}
    _, light = _call(record.url + "/stats?counts=1")  # what a poll reads: counts, no lists
    assert light["unique"] == 1 and "per_event" not in light

    receivers.append(calls := Receiver(script, "--calls"))
    for ce_id in ("c1", "c2", "c1"):
        assert _call(calls.url + "/hook", "POST", b"{}", **{"ce-id": ce_id})[0] == 200
    _, stats = _call(calls.url + "/stats?detail=1")
    assert (stats["requests"], stats["events"], stats["calls"]) == (3, 3, 2)
    assert stats["arrivals"]["c1"] <= stats["arrivals"]["c2"]  # a repeat keeps the first
    _, light = _call(calls.url + "/stats?counts=1")
    assert light["calls"] == 2 and "arrivals" not in light


def test_lean_receiver_keeps_connections_alive_and_refuses_garbage(
    receivers: list[Receiver],
) -> None:
    receivers.append(r := Receiver("lean_receiver.py"))
    port = int(r.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        request = b"POST /hook HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"
        s.sendall(request * 3)  # pipelined on one connection: three answers, in order
        answers = b""
        while answers.count(b"HTTP/1.1 200 OK") < 3:
            chunk = s.recv(4096)
            assert chunk, f"closed after {answers!r}"
            answers += chunk
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"NOT HTTP\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 400")
    assert _call(r.url + "/stats")[1]["requests"] == 3


@pytest.mark.parametrize(("client", "receiver"), [("lean", "lean"), ("aiohttp", "aiohttp")])
def test_producer_offers_every_request_and_reports_its_cost(client: str, receiver: str) -> None:
    argv = [sys.executable, str(BENCH / "producer.py"), "--client", client]
    argv += ["--receiver", receiver, "--rate", "400", "--seconds", "0.5"]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=BENCH,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["client"] == client and result["receiver"] == receiver
    assert result["requests"] == 200 and result["failures"] == 0
    assert result["receiver_requests"] == 200  # every request reached the bare server
    assert result["cpu_us_per_request"] > 0 and result["receiver_cpu_us_per_request"] > 0
    assert result["ack_p50_ms"] is not None and result["ack_p99_ms"] >= result["ack_p50_ms"]
    if client == "lean":
        assert result["statuses"] == {"200": 200} and result["connections_opened"] >= 1
        assert 0 <= result["late"] <= 200 and result["late_ms"]["over"] > 0
