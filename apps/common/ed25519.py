"""Ed25519 signature checks through libsodium, when the machine has it: the bearer token's check on every
request with a new token (apps/common/auth_tokens.py).

OpenSSL 3.0's Ed25519 verification (what ``cryptography``, and so PyJWT, call) took 134-188 us of CPU per
signature here, libsodium's 64-96 us (alternated, same key and message; docs/benchmarks.md, session 24). It
checks the same RFC 8032 signature and is stricter at the edges (it refuses small-order public keys and
non-canonical encodings, which OpenSSL may accept): never a signature OpenSSL refuses (tested). Without
libsodium (``libsodium.so``, Debian's ``libsodium23``) or for any other key type, ``sodium_verifier`` is
None and PyJWT's algorithm verifies as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["sodium_verifier"]

SIGNATURE_BYTES = 64


@cache
def _verify_detached() -> Any:
    """libsodium's ``crypto_sign_ed25519_verify_detached``, or None if the library cannot be loaded."""
    name = ctypes.util.find_library("sodium")
    if name is None:
        return None
    try:
        library = ctypes.CDLL(name)
        if library.sodium_init() < 0:
            return None
        verify = library.crypto_sign_ed25519_verify_detached
    except (OSError, AttributeError):
        return None
    verify.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p]
    verify.restype = ctypes.c_int
    return verify


def sodium_verifier(key: object) -> Callable[[bytes, bytes], bool] | None:
    """``check(message, signature)`` for an Ed25519 key through libsodium; None for another key type or
    without libsodium (the caller verifies as it did)."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    verify = _verify_detached()
    if not isinstance(key, Ed25519PublicKey) or verify is None:
        return None
    public = key.public_bytes(Encoding.Raw, PublicFormat.Raw)

    def check(message: bytes, signature: bytes) -> bool:
        # c_char_p passes the bytes' own buffer: NUL bytes inside a signature or message are fine.
        return len(signature) == SIGNATURE_BYTES and verify(signature, message, len(message), public) == 0

    return check
