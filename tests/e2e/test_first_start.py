"""`eventhub serve` as users run it: the first start prints an admin key once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port


def serve(data: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTHUB_")}
    return subprocess.Popen(
        [sys.executable, "-m", "eventhub", "serve", "--port", str(port), "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server did not become ready")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    return out


def keys(port: int, key: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/admin/keys", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


def test_first_start_prints_an_admin_key_once(tmp_path: Path) -> None:
    data, port = tmp_path / "deep" / "eventhub.db", free_port()
    proc = serve(data, port)
    wait_ready(port)
    out = stop(proc)
    lines = [line for line in out.splitlines() if "admin API key" in line]
    assert len(lines) == 1
    key = lines[0].rsplit(" ", 1)[1]
    assert key.startswith("eh_")
    assert key.encode() not in data.read_bytes(), "only the key's hash may be stored"

    port = free_port()
    proc = serve(data, port)
    wait_ready(port)
    try:
        assert keys(port, key) == 200
    finally:
        out = stop(proc)
    assert "admin API key" not in out
