"""Ed25519 signature checks through libsodium (PyNaCl, which ships it): the bearer token's check on every
request with a new token (apps/common/auth_tokens.py).

OpenSSL 3.0's Ed25519 verification (what ``cryptography``, and so PyJWT, call) took 131-188 us of CPU per
signature here, libsodium's 64-102 us (alternated, same key and message; docs/benchmarks.md, session 24). It
checks the same RFC 8032 signature and is stricter at the edges (it refuses small-order public keys and
non-canonical encodings, which OpenSSL may accept): never a signature OpenSSL refuses (tested). For any other
key type ``sodium_verifier`` is None and PyJWT's algorithm verifies as before.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

__all__ = ["sodium_verifier"]

SIGNATURE_BYTES = 64


def sodium_verifier(key: object) -> Callable[[bytes, bytes], bool] | None:
    """``check(message, signature)`` for an Ed25519 key through libsodium; None for another key type (the
    caller verifies as it did)."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    if not isinstance(key, Ed25519PublicKey):
        return None
    verify_key = VerifyKey(key.public_bytes(Encoding.Raw, PublicFormat.Raw))

    def check(message: bytes, signature: bytes) -> bool:
        if len(signature) != SIGNATURE_BYTES:  # PyNaCl raises a ValueError for it: a bad signature here
            return False
        try:
            verify_key.verify(message, signature)
        except BadSignatureError:
            return False
        return True

    return check
