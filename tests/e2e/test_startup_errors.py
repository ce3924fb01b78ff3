"""``eventhub serve`` refusing to start: every bad setting, settings file, catalogue file and
data path is one line on stderr naming the setting or the path, exit status 2, no traceback
(SPEC §7). Each case is a real ``python -m eventhub serve`` that exits before it listens."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY, free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Refused:
    """What one refused start printed."""

    status: int
    stdout: str
    stderr: str


def serve(data: Path, env: dict[str, str], *flags: str) -> Refused:
    """Run ``eventhub serve`` with only these ``EVENTHUB_*`` variables; it must exit by itself."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTHUB_")}
    base = {
        "EVENTHUB_ADMIN_KEY": ADMIN_KEY,
        # Quiet the INFO lines of a start that gets as far as the database.
        "EVENTHUB_LOG_LEVEL": "warning",
        "EVENTHUB_ALLOWED_CALLBACK_NETWORKS": "127.0.0.0/8",
        "EVENTHUB_CALLBACK_NETWORKS_ONLY": "true",
    }
    args = ["--port", str(free_port()), "--data", str(data), *flags]
    done = subprocess.run(
        [sys.executable, "-m", "eventhub", "serve", *args],
        env={**clean, **base, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=15,
    )
    return Refused(done.returncode, done.stdout, done.stderr)


def assert_one_line(refused: Refused, names: str) -> None:
    assert "Traceback" not in refused.stderr, refused.stderr
    assert refused.status == 2, refused
    lines = refused.stderr.splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith("eventhub: "), lines
    assert names in lines[0], lines
    assert "admin API key" not in refused.stdout, "refused before anything was created"


@dataclass(frozen=True)
class Case:
    env: dict[str, str]
    names: str
    flags: tuple[str, ...] = field(default=())


SETTINGS = {
    # --port is always given (a free one), and beats EVENTHUB_PORT: tests/unit has that one.
    "port-too-high": Case({}, "'port'", ("--port", "99999")),
    "port-zero": Case({}, "'port'", ("--port", "0")),
    "size-zero": Case({"EVENTHUB_MAX_BODY_BYTES": "0"}, "'max_body_bytes'"),
    "size-not-a-number": Case({"EVENTHUB_MAX_CONNECTIONS": "many"}, "'max_connections'"),
    "timeout-negative": Case({"EVENTHUB_BODY_TIMEOUT": "-1"}, "'body_timeout'"),
    "timeout-infinite": Case({"EVENTHUB_DELIVERY_TIMEOUT": "inf"}, "'delivery_timeout'"),
    "retries-negative": Case({"EVENTHUB_DELIVERY_MAX_RETRIES": "-1"}, "'delivery_max_retries'"),
    "delays-reversed": Case({"EVENTHUB_RECOVERY_MAX_DELAY": "1"}, "'recovery_max_delay'"),
    "log-level": Case({"EVENTHUB_LOG_LEVEL": "loud"}, "'log_level'"),
    "synchronous": Case({"EVENTHUB_SYNCHRONOUS": "off"}, "'synchronous'"),
    "boolean": Case({"EVENTHUB_CALLBACK_NETWORKS_ONLY": "maybe"}, "'callback_networks_only'"),
    "network": Case(
        {"EVENTHUB_ALLOWED_CALLBACK_NETWORKS": "127.0.0.0/33"}, "'allowed_callback_networks'"
    ),
    "secret-key": Case({"EVENTHUB_SECRET_KEY": "not-a-key"}, "'secret_key'"),
    "host-empty": Case({"EVENTHUB_HOST": ""}, "'host'"),
}


@pytest.mark.parametrize("case", SETTINGS.values(), ids=SETTINGS.keys())
def test_a_bad_setting_is_one_line_naming_it(tmp_path: Path, case: Case) -> None:
    assert_one_line(serve(tmp_path / "eventhub.db", case.env, *case.flags), case.names)
    assert not (tmp_path / "eventhub.db").exists()


def test_a_short_admin_key_is_refused_with_the_minimum_and_not_shown(tmp_path: Path) -> None:
    key = "eh_short_key"
    refused = serve(tmp_path / "eventhub.db", {"EVENTHUB_ADMIN_KEY": key})
    assert_one_line(refused, "'admin_key'")
    assert "16" in refused.stderr and key not in refused.stderr


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


CONFIG_FILES: dict[str, tuple[str | bytes, str]] = {
    "unknown-key": ("prot = 9000\n", "'prot'"),
    "unknown-key-in-table": ("[eventhub]\nport = 9000\nsynchronus = 'full'\n", "'synchronus'"),
    "malformed": ("port = \n", "config file"),
    "not-utf-8": (b"port = '\xff'\n", "config file"),
    "wrong-type": ("host = 5\n", "'host'"),
    "bad-value": ("max_body_bytes = 0\n", "'max_body_bytes'"),
}


@pytest.mark.parametrize(("text", "names"), CONFIG_FILES.values(), ids=CONFIG_FILES.keys())
def test_a_bad_settings_file_is_one_line_naming_the_file_or_key(
    tmp_path: Path, text: str | bytes, names: str
) -> None:
    config = write(tmp_path / "eventhub.toml", text)
    refused = serve(tmp_path / "eventhub.db", {"EVENTHUB_CONFIG": str(config)})
    assert_one_line(refused, names)


def test_a_missing_settings_file_is_one_line_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "nowhere.toml"
    refused = serve(tmp_path / "eventhub.db", {}, "--config", str(config))
    assert_one_line(refused, str(config))


CATALOG_FILES: dict[str, str | None] = {
    "missing": None,
    "malformed": "[models.orders\n",
    "not-a-table": "models = 5\n",
    "triggers-not-tables": "[models.orders]\ntriggers = 5\n",
    "trigger-without-id": "[[models.orders.triggers]]\nname = 'created'\n",
    # Refused by the catalogue and the engine as the hub starts (a lifespan traceback before).
    "bad-filter": "[[models.orders.triggers]]\nid = 'created'\nfilters = [{bogus = {}}]\n",
    "bad-process": "[processes.fulfil]\nsteps = 5\n",
}


@pytest.mark.parametrize("text", CATALOG_FILES.values(), ids=CATALOG_FILES.keys())
def test_a_refused_catalogue_file_is_one_line_naming_it(tmp_path: Path, text: str | None) -> None:
    catalog = tmp_path / "catalog.toml"
    if text is not None:
        write(catalog, text)
    refused = serve(tmp_path / "eventhub.db", {"EVENTHUB_CATALOG_FILE": str(catalog)})
    assert_one_line(refused, str(catalog))


def file_where_a_directory_belongs(tmp_path: Path) -> Path:
    write(tmp_path / "plain", "")
    return tmp_path / "plain" / "eventhub.db"


def directory_where_the_file_belongs(tmp_path: Path) -> Path:
    (tmp_path / "eventhub.db").mkdir()
    return tmp_path / "eventhub.db"


def not_a_database(tmp_path: Path) -> Path:
    return write(tmp_path / "eventhub.db", "this is not SQLite, but long enough to look at" * 4)


def directory_that_cannot_be_created(tmp_path: Path) -> Path:
    # /proc takes no new directories, whoever asks (root included).
    return Path("/proc") / f"eventhub-test-{tmp_path.name}" / "eventhub.db"


def directory_without_permission(tmp_path: Path) -> Path:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    return locked / "data" / "eventhub.db"


PATHS: dict[str, Callable[[Path], Path]] = {
    "file-for-directory": file_where_a_directory_belongs,
    "directory-for-file": directory_where_the_file_belongs,
    "not-a-database": not_a_database,
    "cannot-create": directory_that_cannot_be_created,
    "no-permission": directory_without_permission,
}


@pytest.mark.parametrize("make", PATHS.values(), ids=PATHS.keys())
def test_an_unusable_data_path_is_one_line_naming_it(
    tmp_path: Path, make: Callable[[Path], Path]
) -> None:
    if make is directory_without_permission and os.geteuid() == 0:
        pytest.skip("root writes through a 0500 directory")
    data = make(tmp_path)
    refused = serve(data, {})
    assert_one_line(refused, "'data'")
    assert str(data) in refused.stderr


def test_a_port_in_use_is_one_line_naming_host_and_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = serve(tmp_path / "eventhub.db", {}, "--port", str(port))
    assert_one_line(refused, f"'port': cannot listen on 127.0.0.1:{port}")
    assert not (tmp_path / "eventhub.db").exists(), "refused before the database was made"


def test_an_address_not_of_this_machine_is_one_line_naming_host(tmp_path: Path) -> None:
    # 192.0.2.0/24 is TEST-NET-1: never a local address. Binding it sends nothing.
    refused = serve(tmp_path / "eventhub.db", {"EVENTHUB_HOST": "192.0.2.1"})
    assert_one_line(refused, "'host'")
    assert "192.0.2.1" in refused.stderr
