"""Who may do what: API keys with roles, and per-source HMAC signatures of the raw body.

A key is ``eh_<key id>_<secret>``; only its SHA-256 is stored. Lookups go by key id and end in
a constant-time comparison of hashes, so neither a wrong secret nor a wrong signature is
answered any faster than a nearly right one.

An ingest request's caller is decided from its headers alone (``admit``): its key, or, without
one, the registered source it names and the signature it carries, which ``verify_body`` checks
before the body is parsed; ``authorize_publish`` then checks every event it holds (SPEC §8).
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
from enum import StrEnum

from eventhub import errors
from eventhub.log.records import KeyRecord, SourceRecord


class Role(StrEnum):
    """What a key may do: admin everything; a producer sends events; a consumer reads and
    subscribes."""

    ADMIN = "admin"
    PRODUCER = "producer"
    CONSUMER = "consumer"


ROLES = tuple(Role)
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

    def follow(self, key_id: str, stored: KeyRecord | None) -> None:
        """Make ``key_id`` what the store holds (another process created or revoked it):
        live if stored and not revoked, else gone, so a revoked key stops authenticating."""
        if stored is None or stored.revoked_at is not None:
            self.remove(key_id)
        else:
            self.add(stored)

    def follow_all(self, stored: Iterable[KeyRecord]) -> None:
        """``follow`` every key: those stored, and those held here but no longer stored."""
        by_id = {key.key_id: key for key in stored}
        for key_id in self._keys.keys() - by_id.keys():
            self.remove(key_id)
        for key_id, key in by_id.items():
            self.follow(key_id, key)

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


# SPEC §8: the hub's own notifications (``notifications.SOURCE``); no producer may forge them.
HUB_SOURCE = "eventhub"
HUB_TYPE_PREFIX = "eventhub."


def reserved_for_hub(source: str, type_: str) -> bool:
    return source == HUB_SOURCE or type_.startswith(HUB_TYPE_PREFIX)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sends an ingest request, decided from its headers alone, before its body is read.

    ``principal``: the caller's API key. Without one, ``source`` is the registered source the
    request names, and ``signature`` must be that source's HMAC of the body."""

    principal: Principal | None
    source: SourceRecord | None
    signature: str | None


def admit(
    keyring: Keyring,
    registered: dict[str, SourceRecord],
    authorization: str | None,
    named: str | None,
    signature: str | None,
) -> Caller:
    """The caller of an ingest request, or 401 at once: a wrong key, or no key and no signature
    for a registered source the request names. Nothing here reads the body, so a request that
    is not one of these costs no more than its headers (SPEC §8)."""
    who = identify(keyring, authorization)
    if who is not None:
        return Caller(who, None, signature)
    record = registered.get(named) if named is not None else None
    if signature is not None and named is not None and record is None:
        # Signed, so meant for a source: say which part is wrong. Still 401, as for any
        # unauthenticated request, and nothing about the sources that are registered.
        raise errors.Unauthorized(
            f"the request is signed for source {named!r}, but no source of that name is"
            " registered (PUT /admin/sources/{name}); or send an API key"
        )
    if signature is None or record is None:
        raise errors.Unauthorized(
            "send an API key (Authorization: Bearer), or name a registered source"
            " (X-Eventhub-Source, ce-source, or the UiPath path) and sign the body with its secret"
        )
    return Caller(None, record, signature)


def verify_body(caller: Caller, body: bytes) -> None:
    """Without a key, the body must carry its source's signature; checked before it is parsed."""
    record, signature = caller.source, caller.signature
    if caller.principal is not None or record is None or signature is None:
        return
    if not signature_matches(record.secret, body, signature):
        raise errors.Unauthorized(f"the signature does not match source {record.name!r}")


def authorize_publish(
    caller: Caller,
    events: Iterable[tuple[str, str]],
    registered: dict[str, SourceRecord],
    body: bytes,
) -> None:
    """Raise unless the request may publish every one of ``events`` (source, type).

    The source ``eventhub`` and types ``eventhub.*`` are the hub's own. A request without a key
    publishes only to the source it named (its signature was checked by ``verify_body``). With
    a key, a registered source's signature is checked whenever one is sent, and required when
    the source says so; a valid signature also covers a source the key may not publish to.
    """
    names: set[str] = set()
    for source, type_ in events:
        if reserved_for_hub(source, type_):
            raise errors.Forbidden(
                f"source {HUB_SOURCE!r} and types '{HUB_TYPE_PREFIX}*' are written only by the"
                " hub itself"
            )
        names.add(source)
    principal = caller.principal
    if principal is None:
        named = caller.source.name if caller.source is not None else None
        for source in sorted(names):
            if source != named:
                raise errors.Forbidden(
                    f"a request without an API key publishes only to the source it names"
                    f" ({named!r}), not {source!r}"
                )
        return
    if not names and principal.role not in ("admin", "producer"):
        # An empty batch names no source, but a key that may never publish still may not.
        raise errors.Forbidden(f"a {principal.role} key may not publish")
    signature = caller.signature
    for source in sorted(names):
        record = registered.get(source)
        signed = False
        if record is not None and signature is not None:
            if not signature_matches(record.secret, body, signature):
                raise errors.Unauthorized(f"the signature does not match source {source!r}")
            signed = True
        if record is not None and record.require_signature and not signed:
            raise errors.Unauthorized(f"source {source!r} requires a signature of the body")
        if not principal.may_publish(source) and not signed:
            raise errors.Forbidden(f"this key may not publish to source {source!r}")
