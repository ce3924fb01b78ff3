from __future__ import annotations

import random

import pytest

from eventhub.delivery import policy
from eventhub.delivery.policy import RetryPolicy, Verdict


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_success(status: int) -> None:
    assert policy.classify(status) is Verdict.SUCCESS


@pytest.mark.parametrize(
    "status", [400, 401, 402, 403, 404, 405, 406, 410, 413, 414, 415, 422, 431, 451]
)
def test_the_seed_rejection_codes_are_rejections(status: int) -> None:
    assert policy.classify(status) is Verdict.REJECTION


@pytest.mark.parametrize("status", [None, 408, 429, 500, 502, 503, 504, 409])
def test_no_answer_timeouts_throttling_and_5xx_are_transient(status: int | None) -> None:
    assert policy.classify(status) is Verdict.TRANSIENT


@pytest.mark.parametrize("status", [300, 301, 302, 303, 307, 308])
def test_a_redirect_is_a_rejection_since_it_is_never_followed(status: int) -> None:
    assert policy.classify(status) is Verdict.REJECTION


@pytest.mark.parametrize("status", [None, 200, 503])
def test_a_callback_the_egress_rules_refused_is_a_rejection(status: int | None) -> None:
    assert policy.classify(status, refused=True) is Verdict.REJECTION


def test_retry_delay_grows_exponentially_with_jitter_and_a_cap() -> None:
    p = RetryPolicy(initial_delay=1.0, max_delay=30.0)
    rand = random.Random(7)
    for retry in range(1, 12):
        step = min(30.0, 2.0 ** (retry - 1))
        delay = policy.retry_delay(p, retry, None, rand)
        assert step / 2 <= delay <= step


def test_retry_after_is_honoured_within_its_cap() -> None:
    p = RetryPolicy(initial_delay=1.0, retry_after_cap=60.0)
    assert policy.retry_delay(p, 1, 20.0) == 20.0
    assert policy.retry_delay(p, 1, 10_000.0) == 60.0
    assert policy.retry_delay(p, 1, 0.0) <= 1.0


def test_probe_delay_grows_to_its_cap() -> None:
    p = RetryPolicy(recovery_initial=30.0, recovery_max=1800.0)
    delays = [policy.probe_delay(p, n) for n in range(1, 10)]
    assert delays[:3] == [30.0, 60.0, 120.0]
    assert delays[-1] == 1800.0
    assert delays == sorted(delays)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5.0), (None, None), ("", None), ("soon", None), ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = 1445412480.0  # 2015-10-21T07:28:00Z
    assert policy.parse_retry_after(value, now) == expected
