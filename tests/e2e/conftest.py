"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.call_receiver import CallReceiver
from tests.e2e.receiver import Receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A scripted webhook receiver on 127.0.0.1 (answers 200 until told otherwise)."""
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture
async def calls() -> AsyncIterator[CallReceiver]:
    """A receiver for process call steps: a gate to hold calls in flight, answers with bodies."""
    r = CallReceiver()
    await r.start()
    yield r
    r.gate.set()  # let held calls go, so the receiver can stop
    await r.stop()
