"""Pure parts of instances on several processes: the partition of an id (the same on every
process, spread over all partitions) and the ``eventhub_instance`` payloads (under
PostgreSQL's 8000-byte limit, read back as sent; a cancel's "stop" told apart from a wake)."""

from __future__ import annotations

import secrets
import zlib

import pytest

from eventhub.log.postgres import wakeup
from eventhub.processes import partitions


def test_a_partition_is_a_pure_function_of_the_id() -> None:
    # CRC-32, not hash(): every process (each with its own hash seed) computes the same.
    assert partitions.partition_of("abc") == zlib.crc32(b"abc") % partitions.PARTITIONS
    ids = [secrets.token_hex(8) for _ in range(2000)]
    found = [partitions.partition_of(i) for i in ids]
    assert set(found) == set(partitions.ALL)  # every partition gets some
    assert max(found.count(p) for p in partitions.ALL) < 3 * 2000 / partitions.PARTITIONS


@pytest.mark.parametrize(
    ("count", "due"), [(0, 12.5), (1, None), (3, 1764250000.123456), (2000, None)]
)
def test_instance_payloads_fit_and_read_back(count: int, due: float | None) -> None:
    ids = {secrets.token_hex(8) for _ in range(count)}
    payloads = wakeup.instance_payloads(ids, due)
    assert all(len(p.encode()) < 8000 for p in payloads)
    assert len(payloads) == max(1, -(-count * 17 // 7000))
    read = [wakeup.parse_instances(p) for p in payloads]
    assert set().union(*(r[0] for r in read)) == ids
    assert {r[1] for r in read} == {due}


def test_stop_payloads_fit_read_back_and_are_told_apart() -> None:
    ids = {secrets.token_hex(8) for _ in range(2000)}
    payloads = wakeup.stop_payloads(ids)
    assert len(payloads) > 1 and all(len(p.encode()) < 8000 for p in payloads)
    read = [wakeup.parse_stopped(p) for p in payloads]
    assert set().union(*(r or set() for r in read)) == ids
    # A wake-up is not a stop, whatever its due time.
    assert wakeup.parse_stopped(wakeup.instance_payloads({"x"}, None)[0]) is None
    assert wakeup.parse_stopped(wakeup.instance_payloads({"x"}, 12.5)[0]) is None
