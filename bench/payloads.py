"""Event payloads for the ingest benchmark, shaped like UiPath Orchestrator webhooks.

The shapes follow the payload examples of UiPath's "Types of Events" page (seed 002: job.created,
job.completed, job.faulted, queueItem.added, queueItem.transactionCompleted, task.created,
task.assignmentChanged, task.completed). Every payload gets fresh keys, names and numbers from a
seeded generator, so the pool is varied but the same from run to run.

The pool is written once as a tab-separated file that both load generators read (``wrk``'s Lua
script and ``loadgen.py``): ``type<TAB>source<TAB>time<TAB>compact JSON body`` a line.
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

Payload = dict[str, Any]


def _word(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_letters, k=n))


def _key(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _robot(rng: random.Random) -> Payload:
    return {
        "Id": rng.randint(1, 9999),
        "Name": f"bench-{_word(rng, 10)}",
        "MachineId": rng.randint(1, 999),
        "MachineName": f"bench-{_word(rng, 10)}",
        "Description": _word(rng, 5),
        "Version": "23.10",
        "UserName": _word(rng, 5),
        "Type": "Unattended",
        "HostingType": "Standard",
    }


def _release(rng: random.Random, process: str) -> Payload:
    return {"Id": rng.randint(1, 999), "Key": _key(rng), "ProcessKey": process}


def _job_created(rng: random.Random, at: datetime) -> Payload:
    process = rng.choice(["InvoiceIntake", "RunUntilStoppedManually", "Doc_AllEvents"])
    release_key = _key(rng)
    return {
        "StartInfo": {
            "ReleaseKey": release_key,
            "Strategy": "Specific",
            "RobotIds": [rng.randint(1, 99) for _ in range(rng.randint(1, 4))],
            "JobsCount": 0,
            "Source": "Manual",
        },
        "Jobs": [
            {
                "Id": rng.randint(100_000, 999_999),
                "Key": _key(rng),
                "State": "Pending",
                "Source": "Manual",
                "SourceType": "Manual",
                "BatchExecutionKey": _key(rng),
                "ReleaseName": f"{process}_all",
                "Type": "Unattended",
                "Robot": _robot(rng),
                "Release": {
                    **_release(rng, process),
                    "Key": release_key,
                    "ProcessVersion": "1.0.4",
                    "Name": f"{process}_all",
                    "Description": "",
                    "IsLatestVersion": rng.random() < 0.5,
                    "InputArguments": None,
                },
                "InputArguments": None,
                "OutputArguments": None,
            }
        ],
        "UserId": rng.randint(1, 99),
    }


def _job_finished(rng: random.Random, at: datetime, state: str) -> Payload:
    info = "Job completed"
    if state == "Faulted":
        info = "This workflow always fails\r\n\r\nSystem.InvalidOperationException: " + " ".join(
            _word(rng, rng.randint(4, 12)) for _ in range(rng.randint(20, 40))
        )
    return {
        "Job": {
            "Id": rng.randint(100_000, 999_999),
            "Key": _key(rng),
            "State": state,
            "StartTime": _stamp(at - timedelta(seconds=rng.randint(1, 600))),
            "EndTime": _stamp(at),
            "Info": info,
            "OutputArguments": {
                "product": rng.randint(0, 10_000),
                "sum": rng.randint(0, 1_000),
                "customer": _word(rng, 12),
                "invoices": [_word(rng, 8) for _ in range(rng.randint(8, 24))],
            },
            "Robot": {"Id": rng.randint(1, 9999), "Name": "DocBot", "MachineName": "PC-DOC"},
            "Release": _release(rng, rng.choice(["Args_AddNumbers", "InvoiceIntake"])),
        },
        "OrganizationUnitId": rng.randint(1, 20),
    }


def _queue(rng: random.Random) -> Payload:
    return {
        "Id": rng.randint(1, 99_999),
        "Name": rng.choice(["invoices", "claims", "orders"]),
        "Description": f"{rng.randint(1, 99)} Featured",
        "MaxNumberOfRetries": rng.randint(0, 3),
        "AcceptAutomaticallyRetry": False,
        "EnforceUniqueReference": False,
    }


def _queue_item(rng: random.Random, at: datetime, status: str) -> Payload:
    return {
        "Id": rng.randint(10_000, 99_999),
        "Key": _key(rng),
        "QueueDefinitionId": rng.randint(1, 99_999),
        "Status": status,
        "ReviewStatus": "None",
        "Priority": rng.choice(["Low", "Normal", "High"]),
        "CreationTime": _stamp(at - timedelta(seconds=rng.randint(1, 60))),
        "StartProcessing": _stamp(at),
        "SecondsInPreviousAttempts": 0,
        "RetryNumber": 0,
        "SpecificContent": {
            "field1": f"{_word(rng, 5)} {_word(rng, 7)}",
            "field2": rng.randint(0, 999_999),
            "field3": rng.random() < 0.5,
            "field4": f"{_word(rng, 8).lower()}@work.example",
            "notes": " ".join(_word(rng, rng.randint(3, 9)) for _ in range(rng.randint(15, 40))),
        },
    }


def _queue_item_added(rng: random.Random, at: datetime) -> Payload:
    return {
        "Queue": _queue(rng),
        "QueueItems": [_queue_item(rng, at, "New")],
        "UserId": rng.randint(1, 9999),
    }


def _queue_item_completed(rng: random.Random, at: datetime) -> Payload:
    item = _queue_item(rng, at, "Successful")
    item["EndProcessing"] = _stamp(at)
    item["Robot"] = _robot(rng)
    item["Output"] = {"PetName": _word(rng, 7), "NrOfLegs": rng.randint(0, 8)}
    return {"QueueItem": item, "Queue": _queue(rng), "UserId": rng.randint(1, 9999)}


def _task(rng: random.Random, at: datetime, status: str) -> Payload:
    return {
        "Title": rng.choice(["Invoice Processing", "Performance Task", "Approve vendor"]),
        "Type": "FormTask",
        "Priority": rng.choice(["Low", "Medium", "High", "Critical"]),
        "Status": status,
        "CreationTime": _stamp(at - timedelta(minutes=rng.randint(1, 600))),
        "Id": rng.randint(1, 99999),
        "OrganizationUnitId": rng.randint(1, 999),
        "AssignedToUserId": rng.randint(1, 99999),
    }


def _task_event(status: str, **extra: str) -> Callable[[random.Random, datetime], Payload]:
    """task.* events: one action in ``Tasks``, as UiPath's Actions events carry it."""

    def build(rng: random.Random, at: datetime) -> Payload:
        task = _task(rng, at, status) | extra
        return {
            "Tasks": [task],
            "OrganizationUnitId": task["OrganizationUnitId"],
            "UserId": rng.randint(1, 99999),
        }

    return build


# (type, weight, body builder): mostly the busy job and queue-item events, some actions.
_KINDS: list[tuple[str, int, Callable[[random.Random, datetime], Payload]]] = [
    ("job.created", 3, _job_created),
    ("job.completed", 3, lambda rng, at: _job_finished(rng, at, "Successful")),
    ("job.faulted", 1, lambda rng, at: _job_finished(rng, at, "Faulted")),
    ("queueItem.added", 3, _queue_item_added),
    ("queueItem.transactionCompleted", 2, _queue_item_completed),
    ("task.created", 1, _task_event("Unassigned")),
    ("task.assignmentChanged", 1, _task_event("Pending")),
    ("task.completed", 1, _task_event("Completed", Action="submit")),
]


def build_pool(size: int = 256, seed: int = 20261124) -> list[tuple[str, str, str, bytes]]:
    """``size`` payloads as (type, source, time, body), varied but reproducible."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    weights = [w for _, w, _ in _KINDS]
    pool = []
    for i in range(size):
        type_, _, build = rng.choices(_KINDS, weights)[0]
        at = start + timedelta(milliseconds=137 * i)
        tenant = rng.randint(1, 4)
        body: Payload = {
            "Type": type_,
            "EventId": uuid.UUID(int=rng.getrandbits(128)).hex,
            "Timestamp": _stamp(at),
            **build(rng, at),
            "TenantId": tenant,
        }
        pool.append(
            (type_, f"/uipath/orchestrator/tenant-{tenant}", _stamp(at), orjson.dumps(body))
        )
    return pool


def write_pool(path: Path, pool: list[tuple[str, str, str, bytes]]) -> None:
    with path.open("wb") as fh:
        for type_, source, time, body in pool:
            fh.write(f"{type_}\t{source}\t{time}\t".encode() + body + b"\n")


def read_pool(path: Path) -> list[tuple[str, str, str, bytes]]:
    pool = []
    for line in path.read_bytes().splitlines():
        type_, source, time, body = line.split(b"\t", 3)
        pool.append((type_.decode(), source.decode(), time.decode(), body))
    return pool


if __name__ == "__main__":
    sizes = sorted(len(body) for *_, body in build_pool())
    print(f"{len(sizes)} payloads: min {sizes[0]} B, median {sizes[len(sizes) // 2]} B,")
    print(f"mean {sum(sizes) / len(sizes):.0f} B, max {sizes[-1]} B")
