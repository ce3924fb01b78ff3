"""Standard Webhooks signatures (refs/standard-webhooks): ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``.

A subscription signs with its current secret and, during a rotation overlap, also with the
previous one, so receivers that still hold the old secret keep verifying.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Sequence

from eventhub import errors

PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh ``whsec_`` secret: 32 random bytes, base64 (the spec asks for 24 to 64)."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def parse_secret(secret: str) -> bytes:
    raw = secret[len(PREFIX) :] if secret.startswith(PREFIX) else secret
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidRequest("a signing secret is 'whsec_' and base64") from None
    if not key:
        raise errors.InvalidRequest("a signing secret may not be empty")
    return key


def sign(msg_id: str, timestamp: int, body: bytes, keys: Sequence[bytes]) -> str:
    """The ``webhook-signature`` header value: one ``v1,`` entry per key, space-separated."""
    signed = b"%s.%d.%s" % (msg_id.encode("utf-8"), timestamp, body)
    # hmac.digest: OpenSSL's one-shot HMAC, without an hmac object per key (~20% less).
    return " ".join(
        "v1," + binascii.b2a_base64(hmac.digest(key, signed, "sha256"), newline=False).decode()
        for key in keys
    )


def headers(msg_id: str, timestamp: int, body: bytes, keys: Sequence[bytes]) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(msg_id, timestamp, body, keys),
    }


class Signer:
    """The keys of one subscription: the current secret, and the previous one until
    ``previous_expires`` (seconds since the epoch) during a rotation overlap."""

    def __init__(
        self, current: str, previous: str | None = None, previous_expires: float | None = None
    ) -> None:
        self._current = parse_secret(current)
        self._previous = parse_secret(previous) if previous else None
        self._previous_expires = previous_expires

    def keys(self, now: float) -> list[bytes]:
        keys = [self._current]
        if self._previous is not None and (
            self._previous_expires is None or now < self._previous_expires
        ):
            keys.append(self._previous)
        return keys

    def headers(self, msg_id: str, now: float, body: bytes) -> dict[str, str]:
        return headers(msg_id, int(now), body, self.keys(now))
