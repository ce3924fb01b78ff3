"""Sealing secrets at rest (SPEC §8): source HMAC secrets, ``whsec_`` signing secrets and
callback header values are stored sealed, never in plain text.

A sealed value is ``v1:`` + base64url(nonce ‖ ciphertext ‖ tag): AES-256-GCM with a random
96-bit nonce per value. The associated data is the value's *place* (table, column, row), so
a sealed value copied into another row does not open there. The ``v1:`` prefix names the
format, so it can change later, and tells a sealed value from a plaintext one written before
sealing existed (``log/sealing.py`` seals those at start).

The key is 32 random bytes, written in base64url (43 characters, padding optional; the
standard alphabet is taken too, so ``openssl rand -base64 32`` makes one): from
``EVENTHUB_SECRET_KEY``, or else from a key file beside the database that the first start
creates (``log/sealing.py`` decides which, and whether the key fits the database).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from eventhub import errors, files

PREFIX = "v1:"
KEY_BYTES = 32
_NONCE_BYTES = 12  # 96 bits: GCM's native nonce size; random, so ~2**32 seals per key are safe
_TAG_BYTES = 16
KEY_HELP = (
    "32 random bytes in base64url or base64 (43 or 44 characters); make one with: python -c"
    ' "import secrets; print(secrets.token_urlsafe(32))"'
)


class Vault:
    """Seals and opens secrets with one key. Cheap enough for every admin write (a few
    microseconds), and never on the delivery path: the store opens secrets once, at load."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a vault key is {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "Vault(<key hidden>)"

    def seal(self, plaintext: str, place: str) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), place.encode("utf-8"))
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def unseal(self, text: str, place: str) -> str:
        """The plaintext of a value sealed for ``place``; ``errors.VaultError`` when it is not
        sealed, was sealed with another key or for another place, or was altered."""
        if not is_sealed(text):
            raise errors.VaultError(f"{place}: the value is not sealed")
        try:
            raw = base64.urlsafe_b64decode(text[len(PREFIX) :])
            if len(raw) < _NONCE_BYTES + _TAG_BYTES:
                raise ValueError("too short")
            plain = self._aead.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], place.encode("utf-8")
            )
            return plain.decode("utf-8")
        except (InvalidTag, ValueError, binascii.Error):
            # One message for every cause: which one it was would help only an attacker.
            raise errors.VaultError(
                f"{place}: the sealed value does not open (another key, another row, or altered)"
            ) from None


def is_sealed(text: str) -> bool:
    """Whether ``text`` is in a sealed format rather than plaintext from before sealing."""
    return text.startswith(PREFIX)


# -- keys --------------------------------------------------------------------------------------


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


def parse_key(text: str, name: str) -> bytes:
    """The 32 bytes of a base64url (or base64) key, or ``errors.InvalidRequest`` naming
    ``name`` (the setting or file it came from). The message never quotes the value: it is
    a secret."""
    stripped = text.strip()
    try:
        key = base64.b64decode(stripped + "=" * (-len(stripped) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise errors.InvalidRequest(f"{name} is not a valid key: it must be {KEY_HELP}")
    return key


def read_key_file(path: Path) -> bytes | None:
    """The key in ``path`` (made private if it was not), or None when there is no such file."""
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.InvalidRequest(f"key file {path} cannot be read: {exc}") from None
    files.make_private(path)
    return parse_key(text, f"key file {path}")


def create_key_file(path: Path) -> bytes:
    """A new random key, written to a new file only this user can read. ``O_EXCL``: two hubs
    starting at once on one database must not each write a key; the loser reads the winner's."""
    key = new_key()
    try:
        files.write_private(path, (encode_key(key) + "\n").encode("ascii"))
    except FileExistsError:
        found = read_key_file(path)
        assert found is not None
        return found
    return key
