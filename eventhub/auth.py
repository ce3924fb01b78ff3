"""Who may do what: API keys with roles, and per-source HMAC signatures of the raw body.

A key is ``eh_<key id>_<secret>``; only its SHA-256 is stored. Lookups go by key id and end in
a constant-time comparison of hashes, so neither a wrong secret nor a wrong signature is
answered any faster than a nearly right one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from eventhub import errors
from eventhub.log.store import KeyRecord, SourceRecord

ROLES = ("admin", "producer", "consumer")
ENV_ADMIN_ID = "env-admin"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    role: str
    sources: tuple[str, ...] | None  # None: any source

    def may_publish(self, source: str) -> bool:
        if self.role == "admin":
            return True
        return self.role == "producer" and (self.sources is None or source in self.sources)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def new_key() -> tuple[str, str]:
    """A fresh (key id, key)."""
    key_id = secrets.token_hex(6)
    return key_id, f"eh_{key_id}_{secrets.token_urlsafe(32)}"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class Keyring:
    """The live keys, held in memory; the store is written first, then the keyring."""

    def __init__(self, keys: Iterable[KeyRecord], env_admin_key: str | None = None) -> None:
        self._keys: dict[str, tuple[KeyRecord, Principal]] = {}
        for key in keys:
            if key.revoked_at is None:
                self.add(key)
        self._env_admin = hash_key(env_admin_key) if env_admin_key else None
        self._env_principal = Principal(ENV_ADMIN_ID, "admin", None)

    def add(self, key: KeyRecord) -> None:
        # The Principal is built once per key, not per request: every ingest authenticates.
        self._keys[key.key_id] = (key, Principal(key.key_id, key.role, key.sources))

    def remove(self, key_id: str) -> None:
        self._keys.pop(key_id, None)

    def has_admin(self) -> bool:
        return self._env_admin is not None or any(k.role == "admin" for k, _ in self._keys.values())

    def authenticate(self, presented: str) -> Principal | None:
        digest = hash_key(presented)
        if self._env_admin is not None and hmac.compare_digest(digest, self._env_admin):
            return self._env_principal
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != "eh":
            return None
        found = self._keys.get(parts[1])
        if found is None or not hmac.compare_digest(digest, found[0].hash):
            return None
        return found[1]


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthorized("Authorization must be 'Bearer <api key>'")
    return token.strip()


def identify(keyring: Keyring, authorization: str | None) -> Principal | None:
    """The caller's key, or None when no Authorization header was sent; a bad key is 401."""
    token = bearer(authorization)
    if token is None:
        return None
    found = keyring.authenticate(token)
    if found is None:
        raise errors.Unauthorized("the API key is not valid")
    return found


def signature_matches(secret: str, body: bytes, presented: str) -> bool:
    """HMAC-SHA256 of the raw body, given as hex or base64, optionally ``sha256=``-prefixed."""
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    value = presented.strip()
    if value.lower().startswith("sha256="):
        value = value[7:]
    candidates: list[bytes] = []
    with contextlib.suppress(ValueError):
        candidates.append(bytes.fromhex(value))
    with contextlib.suppress(binascii.Error, ValueError):
        candidates.append(base64.b64decode(value, validate=True))
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate, expected)
    return matched


def authorize_publish(
    principal: Principal | None,
    sources: Iterable[str],
    registered: dict[str, SourceRecord],
    body: bytes,
    signature: str | None,
) -> None:
    """Raise unless the request may publish to every source it names.

    A registered source's signature is checked whenever one is sent, and required when the
    source says so. A request without an API key must be signed for every source it names.
    """
    names = sorted(set(sources))
    if principal is None and not names:
        raise errors.Unauthorized("send an API key (Authorization: Bearer) or a signature")
    if principal is not None and not names and principal.role not in ("admin", "producer"):
        # An empty batch names no source, but a key that may never publish still may not.
        raise errors.Forbidden(f"a {principal.role} key may not publish")
    for source in names:
        record = registered.get(source)
        signed = False
        if record is not None and signature is not None:
            if not signature_matches(record.secret, body, signature):
                raise errors.Unauthorized(f"the signature does not match source {source!r}")
            signed = True
        if record is not None and record.require_signature and not signed:
            raise errors.Unauthorized(f"source {source!r} requires a signature of the body")
        if principal is None:
            if not signed:
                raise errors.Unauthorized("send an API key (Authorization: Bearer) or a signature")
        elif not principal.may_publish(source) and not signed:
            raise errors.Forbidden(f"this key may not publish to source {source!r}")
