"""Our signatures: the known-answer vectors, and the real verifiers (standardwebhooks, svix)."""

from __future__ import annotations

import base64
import hmac
import json
import time
from pathlib import Path

import pytest
import standardwebhooks.webhooks
import svix.webhooks

from eventhub import errors
from eventhub.delivery import signing

# Copied from refs/standard-webhooks (with its LICENSE) so the suite runs from a bare clone.
VECTORS = json.loads(
    (Path(__file__).parents[1] / "data/standard-webhooks/test-vectors.json").read_text()
)


@pytest.mark.parametrize("vector", VECTORS["sign"], ids=lambda v: v["msg_id"])
def test_known_answer_vectors(vector: dict[str, object]) -> None:
    key = signing.parse_secret(str(vector["secret"]))
    got = signing.sign(
        str(vector["msg_id"]), int(str(vector["timestamp"])), str(vector["payload"]).encode(), [key]
    )
    assert got == vector["expected_signature"]


@pytest.mark.parametrize("bad", [v["value"] for v in VECTORS["must_not_verify_signatures"]])
def test_wrong_signatures_are_not_ours(bad: str) -> None:
    vector = VECTORS["sign"][0]
    key = signing.parse_secret(vector["secret"])
    assert (
        signing.sign(vector["msg_id"], vector["timestamp"], vector["payload"].encode(), [key])
        != bad
    )


def _verify_both(secret: str, body: bytes, headers: dict[str, str]) -> None:
    standardwebhooks.webhooks.Webhook(secret).verify(body, headers)
    svix.webhooks.Webhook(secret).verify(body, headers)


def test_standardwebhooks_and_svix_verify_our_headers() -> None:
    secret = signing.new_secret()
    body = b'[{"offset": 1}]'
    headers = signing.Signer(secret).headers("msg_1", time.time(), body)
    _verify_both(secret, body, headers)


def test_during_a_rotation_both_secrets_verify_and_after_it_only_the_new() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    now = time.time()
    signer = signing.Signer(new, old, previous_expires=now + 60)
    body = b"{}"
    headers = signer.headers("msg_2", now, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    _verify_both(new, body, headers)
    _verify_both(old, body, headers)
    later = signer.headers("msg_3", now + 61, body)
    assert len(later["webhook-signature"].split(" ")) == 1
    _verify_both(new, body, later)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.webhooks.Webhook(old).verify(body, later)


@pytest.mark.parametrize("tamper", ["body", "secret", "timestamp"])
def test_verifiers_reject_tampering(tamper: str) -> None:
    secret = signing.new_secret()
    now = time.time()
    body = b'{"a": 1}'
    headers = signing.Signer(secret).headers("msg_4", now, body)
    if tamper == "body":
        body = b'{"a": 2}'
    elif tamper == "secret":
        secret = signing.new_secret()
    else:
        headers = signing.Signer(secret).headers("msg_4", now - 3600, body)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.webhooks.Webhook(secret).verify(body, headers)
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(secret).verify(body, headers)


@pytest.mark.parametrize("bad", ["whsec_!!!", "whsec_", ""])
def test_bad_secrets_are_refused(bad: str) -> None:
    with pytest.raises(errors.InvalidRequest):
        signing.parse_secret(bad)


@pytest.mark.parametrize("length", [1, 24, 32, 63, 64, 65, 200])
def test_precomputed_key_signs_as_hmac_does(length: int) -> None:
    # Key hashes its pads once; any key length (longer than a block: hashed first, RFC 2104)
    # must give what hmac itself gives for the same id, timestamp and body.
    key = bytes(range(256))[:length]
    body = b'{"offset": 7}' * 50
    expected = base64.b64encode(hmac.digest(key, b"msg_9.1700000000." + body, "sha256")).decode()
    assert signing.sign("msg_9", 1700000000, body, [signing.Key(key)]) == f"v1,{expected}"
    assert signing.sign("msg_9", 1700000000, body, [key]) == f"v1,{expected}"


@pytest.mark.parametrize("expires", [None, 61.0, 59.0])
def test_a_signers_headers_are_the_generic_headers_of_its_live_keys(expires: float | None) -> None:
    # Signer.headers is the per-delivery shortcut of ``headers``: the same bytes, with the
    # previous secret exactly while it has not expired (never, without an expiry).
    old, new = signing.new_secret(), signing.new_secret()
    now = 1_800_000_000.5
    signer = signing.Signer(new, old, None if expires is None else now - 60 + expires)
    keys = [signing.parse_secret(new)]
    if expires is None or expires > 60:
        keys.append(signing.parse_secret(old))
    body = b'{"a":1}' * 100
    assert signer.headers("msg_x_7", now, body) == signing.headers("msg_x_7", int(now), body, keys)
    alone = signing.Signer(new)
    assert alone.headers("msg_x_7", now, body) == signing.headers(
        "msg_x_7", int(now), body, keys[:1]
    )
