"""Standard Webhooks signatures (refs/standard-webhooks): ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``.

A subscription signs with its current secret and, during a rotation overlap, also with the
previous one, so receivers that still hold the old secret keep verifying.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
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


# RFC 2104: SHA-256 hashes 64-byte blocks; the key, padded to one, XORed with these bytes.
_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class Key:
    """One HMAC-SHA256 key with its inner and outer pads hashed once (RFC 2104).

    A signature then copies two hash states instead of keying an HMAC afresh: on OpenSSL 3
    ``hmac.digest`` spends more on setting up the key than on hashing a 1 KB body (4.5 us
    against 1.6 us a signature here), and a fan-out signs once per subscription."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def entry(self, prefix: bytes, body: bytes) -> str:
        """``v1,<base64 HMAC of prefix + body>``: the body is hashed where it lies, not copied
        behind the prefix first."""
        inner = self._inner.copy()
        inner.update(prefix)
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return "v1," + binascii.b2a_base64(outer.digest(), newline=False).decode()


def _signed_prefix(msg_id: str, timestamp: int) -> bytes:
    return b"%s.%d." % (msg_id.encode("utf-8"), timestamp)


def sign(msg_id: str, timestamp: int, body: bytes, keys: Sequence[bytes | Key]) -> str:
    """The ``webhook-signature`` header value: one ``v1,`` entry per key, space-separated."""
    prefix = _signed_prefix(msg_id, timestamp)
    return " ".join((key if isinstance(key, Key) else Key(key)).entry(prefix, body) for key in keys)


def headers(
    msg_id: str, timestamp: int, body: bytes, keys: Sequence[bytes | Key]
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(msg_id, timestamp, body, keys),
    }


class Signer:
    """The keys of one subscription: the current secret, and the previous one until
    ``previous_expires`` (seconds since the epoch) during a rotation overlap. Each key's
    HMAC pads are hashed here, once (``Key``), not on every delivery."""

    def __init__(
        self, current: str, previous: str | None = None, previous_expires: float | None = None
    ) -> None:
        self._current = Key(parse_secret(current))
        self._previous = Key(parse_secret(previous)) if previous else None
        self._previous_expires = previous_expires

    def keys(self, now: float) -> list[Key]:
        keys = [self._current]
        if self._previous is not None and (
            self._previous_expires is None or now < self._previous_expires
        ):
            keys.append(self._previous)
        return keys

    def headers(self, msg_id: str, now: float, body: bytes) -> dict[str, str]:
        """``headers`` with this subscription's keys, without the generic path's layers: it
        runs once per delivery, and its calls and generator cost more than the HMAC of a 1 KB
        body (5.0% of a 100-subscription delivery profile, 2.7% of it the HMAC)."""
        timestamp = int(now)
        prefix = _signed_prefix(msg_id, timestamp)
        signature = self._current.entry(prefix, body)
        previous = self._previous
        if previous is not None and (
            self._previous_expires is None or now < self._previous_expires
        ):
            signature += " " + previous.entry(prefix, body)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
