"""libsodium's Ed25519 check (PyNaCl; apps/common/ed25519.py) never accepts what OpenSSL's refuses, accepts
every good signature, and is what the token verifier uses for Ed25519 keys."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from apps.common.auth_tokens import AuthSettings, TokenVerifier
from apps.common.ed25519 import sodium_verifier

pytestmark = pytest.mark.unit

# The group order L of Ed25519: a signature's S plus L encodes the same scalar non-canonically.
L = 2**252 + 27742317777372353535851937790883648493


def openssl(key: Ed25519PublicKey, message: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def cases() -> list[tuple[str, Ed25519PublicKey, bytes, bytes]]:
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    message = b"header.payload" * 20
    good = private.sign(message)
    made = [("good", public, message, good), ("empty message", public, b"", private.sign(b""))]
    for index in range(64):
        flipped = bytearray(good)
        flipped[index] ^= 1 << (index % 8)
        made.append((f"bit flipped in byte {index}", public, message, bytes(flipped)))
    s = int.from_bytes(good[32:], "little")
    made += [
        ("message changed", public, message + b"x", good),
        ("another key", Ed25519PrivateKey.generate().public_key(), message, good),
        ("truncated", public, message, good[:63]),
        ("extended", public, message, good + b"\0"),
        ("all zero", public, message, bytes(64)),
        ("S + L (non-canonical)", public, message, good[:32] + (s + L).to_bytes(32, "little")),
        ("NUL-heavy message", public, b"\0" * 50, private.sign(b"\0" * 50)),
    ]
    small_order = Ed25519PublicKey.from_public_bytes(b"\x01" + bytes(31))  # the identity point
    made.append(("small-order key, identity signature", small_order, message, b"\x01" + bytes(63)))
    return made


def test_never_accepts_what_openssl_refuses_and_accepts_good_signatures() -> None:
    accepted = []
    for label, key, message, signature in cases():
        check = sodium_verifier(key)
        assert check is not None
        ours, theirs = check(message, signature), openssl(key, message, signature)
        assert not (ours and not theirs), label
        if theirs and label not in ("small-order key, identity signature",):
            assert ours, label  # every ordinary good signature passes
        if ours:
            accepted.append(label)
    assert accepted == ["good", "empty message", "NUL-heavy message"]


def test_other_keys_keep_pyjwts_check() -> None:
    assert sodium_verifier(generate_private_key(SECP256R1()).public_key()) is None
    assert sodium_verifier(Ed25519PrivateKey.generate()) is not None  # a private key checks with its public half


async def test_the_token_verifier_uses_it_for_ed25519_keys(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    jwk = {**json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key())), "kid": "k", "alg": "EdDSA"}
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    settings = AuthSettings("iss", "aud", None, tmp_path / "jwks.json", frozenset({"EdDSA"}))
    verifier = TokenVerifier(settings)
    now = int(time.time())
    claims = {"iss": "iss", "aud": "aud", "iat": now, "exp": now + 60, "sub": "s", "role": "staff"}
    assert (await verifier.verify(jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": "k"}))).subject == "s"
    key = await verifier.keys.key("k")
    assert key is not None and verifier._fast[key] is not None
