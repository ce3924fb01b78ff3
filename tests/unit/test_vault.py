"""The vault: sealed values open only with their key, in their place, unaltered; keys are
parsed strictly and never echoed; key files are private."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from eventhub import errors, vault
from eventhub.vault import Vault

KEY = bytes(range(32))


def test_round_trip_and_a_fresh_nonce_per_seal() -> None:
    sealer = Vault(KEY)
    first = sealer.seal("whsec_c2VjcmV0", "subscriptions.secrets/a")
    second = sealer.seal("whsec_c2VjcmV0", "subscriptions.secrets/a")
    assert first.startswith("v1:") and vault.is_sealed(first)
    assert first != second  # a random nonce each time: equal secrets do not look equal
    assert "c2VjcmV0" not in first
    assert sealer.unseal(first, "subscriptions.secrets/a") == "whsec_c2VjcmV0"
    assert sealer.unseal(second, "subscriptions.secrets/a") == "whsec_c2VjcmV0"
    assert Vault(KEY).unseal(first, "subscriptions.secrets/a") == "whsec_c2VjcmV0"


def test_unicode_and_empty_values_round_trip() -> None:
    sealer = Vault(KEY)
    for text in ("", "é€😀", "x" * 10_000):
        assert sealer.unseal(sealer.seal(text, "p"), "p") == text


def _flip(sealed: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(sealed[3:]))
    raw[index] ^= 0x01
    return "v1:" + base64.urlsafe_b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "index", [0, 11, 12, -17, -1], ids=["nonce", "nonce-end", "body", "body-end", "tag"]
)
def test_a_tampered_value_is_refused(index: int) -> None:
    sealer = Vault(KEY)
    sealed = sealer.seal("Bearer header-secret", "p")
    with pytest.raises(errors.VaultError):
        sealer.unseal(_flip(sealed, index), "p")


@pytest.mark.parametrize(
    "text", ["v1:", "v1:AAAA", "v1:not base64!", "plain text", "v2:" + "A" * 60]
)
def test_a_value_that_is_not_sealed_or_truncated_is_refused(text: str) -> None:
    with pytest.raises(errors.VaultError):
        Vault(KEY).unseal(text, "p")


def test_a_value_moved_to_another_row_is_refused() -> None:
    sealer = Vault(KEY)
    sealed = sealer.seal("source-secret-0123456789", "sources.secret/shop")
    with pytest.raises(errors.VaultError) as caught:
        sealer.unseal(sealed, "sources.secret/attacker")
    assert "source-secret" not in str(caught.value)
    with pytest.raises(errors.VaultError):
        sealer.unseal(sealed, "subscriptions.secrets/shop")


def test_another_key_does_not_open() -> None:
    sealed = Vault(KEY).seal("secret", "p")
    with pytest.raises(errors.VaultError):
        Vault(bytes(32)).unseal(sealed, "p")


def test_the_key_is_not_in_the_repr() -> None:
    assert KEY.hex() not in repr(Vault(KEY)) and "hidden" in repr(Vault(KEY))


def test_key_text_round_trips_with_or_without_padding() -> None:
    text = vault.encode_key(KEY)
    assert len(text) == 43 and "=" not in text
    assert vault.parse_key(text, "k") == KEY
    assert vault.parse_key(text + "=", "k") == KEY
    assert vault.parse_key(f"  {text}\n", "k") == KEY
    # The standard alphabet too, so `openssl rand -base64 32` makes a key.
    other = bytes(range(200, 232))
    assert vault.parse_key(base64.b64encode(other).decode(), "k") == other


@pytest.mark.parametrize(
    "text",
    [
        "",
        "short",
        vault.encode_key(bytes(31)),
        vault.encode_key(bytes(33)),
        vault.encode_key(KEY)[:-1] + "!",
    ],
)
def test_a_malformed_key_is_refused_naming_its_origin_never_its_value(text: str) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        vault.parse_key(text, "setting 'secret_key' (EVENTHUB_SECRET_KEY)")
    message = str(caught.value)
    assert "EVENTHUB_SECRET_KEY" in message and "32 random bytes" in message
    if text:
        assert text not in message


def test_a_key_file_is_created_private_once_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "eventhub.db.key"
    old = os.umask(0o022)
    try:
        key = vault.create_key_file(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert vault.read_key_file(path) == key
    # A second creation (two hubs starting at once) reads the first's key, never replaces it.
    assert vault.create_key_file(path) == key


def test_an_existing_key_file_is_narrowed_and_a_bad_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "eventhub.db.key"
    path.write_text(vault.encode_key(KEY))
    path.chmod(0o644)
    assert vault.read_key_file(path) == KEY
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("garbage")
    with pytest.raises(errors.InvalidRequest, match="key file"):
        vault.read_key_file(path)
    assert vault.read_key_file(tmp_path / "missing.key") is None
