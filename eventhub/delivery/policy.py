"""Delivery policy as pure functions: how an answer is classified, how long to wait before
the next try, how long to wait between recovery probes."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

# The rejection codes of the Celonis Event Subscription API: the receiver refuses the
# request itself, so retrying it unchanged cannot succeed.
REJECTION_CODES = frozenset({400, 401, 402, 403, 404, 405, 406, 410, 413, 414, 415, 422, 431, 451})


class Verdict(enum.StrEnum):
    SUCCESS = "success"
    TRANSIENT = "transient"
    REJECTION = "rejection"


def classify(status: int | None, refused: bool = False) -> Verdict:
    """``None`` stands for no answer at all: connection error, reset or timeout. ``refused``:
    the egress rules refused the callback's addresses, so nothing was sent."""
    if refused:
        # Not the network being flaky: the same address is refused on every retry, and
        # probing it for hours (Failed) would only turn attempts into a port scanner.
        return Verdict.REJECTION
    if status is not None and 200 <= status < 300:
        return Verdict.SUCCESS
    if status in REJECTION_CODES or (status is not None and 300 <= status < 400):
        # A redirect is never followed (SPEC §8), so sending the same request again cannot
        # succeed until the subscription's callback changes: a rejection, like 404.
        return Verdict.REJECTION
    return Verdict.TRANSIENT  # no answer, 408, 429, 5xx, and anything unexpected


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 5
    initial_delay: float = 1.0
    max_delay: float = 300.0
    retry_after_cap: float = 3600.0  # a Retry-After is honoured up to this many seconds
    recovery_initial: float = 30.0
    recovery_max: float = 1800.0
    suspend_after: float = 8 * 3600.0


def retry_delay(
    policy: RetryPolicy, retry: int, retry_after: float | None, rand: random.Random | None = None
) -> float:
    """Seconds before retry number ``retry`` (1-based): exponential, with jitter in [½, 1] of
    the step so that many subscriptions failing at once do not retry in lockstep. A
    ``Retry-After`` from the receiver wins when it asks for longer, up to ``retry_after_cap``."""
    step = min(policy.max_delay, policy.initial_delay * 2.0 ** (retry - 1))
    delay = step * (0.5 + 0.5 * (rand or random).random())
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, policy.retry_after_cap))
    return delay


def probe_delay(policy: RetryPolicy, probe: int) -> float:
    """Seconds before auto-recovery probe number ``probe`` (1-based) of a Failed callback."""
    return min(policy.recovery_max, policy.recovery_initial * 2.0 ** (probe - 1))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as delta-seconds or an HTTP date; ``None`` when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)
