"""Key and token files read while they are being rewritten in place (S, session 30).

``AUTH_SERVICE_TOKEN_FILE`` (a service's own token, kept fresh by the identity provider's agent) was cached
by its mtime alone: an agent that truncates and writes the file in place, read between the two within one
timestamp tick, left the empty read cached until the next rotation, so every call of that service carried
``Bearer `` (401 at the callee, 503 to its callers) for up to an hour. The JWKS file (``AUTH_JWKS_FILE``),
read in the same window, raised on its JSON: a 500 for every request whose token made it look (a 500 is
only for bugs). Now a token file is looked at by (mtime_ns, size, inode) and an empty read keeps the token
held; a JWKS file that does not parse keeps the keys held until it does."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.common import auth_service, auth_tokens
from apps.common.auth_tokens import AuthSettings, TokenVerifier

pytestmark = pytest.mark.unit


def _rewrite(path: Path, text: str, mtime_ns: int) -> None:
    """An in-place write whose timestamp is the tick's (the kernel's coarse clock: several ms)."""
    with path.open("w") as handle:  # truncates, same inode
        handle.write(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


@pytest.fixture
def token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "service-token"
    monkeypatch.setenv("AUTH_SERVICE_TOKEN_FILE", str(path))
    monkeypatch.setattr(auth_service, "_file_cache", None)
    return path


def test_a_token_file_caught_empty_mid_rewrite_is_read_again_in_the_same_tick(token_file: Path) -> None:
    tick = time.time_ns()
    _rewrite(token_file, "token-one\n", tick - 10_000_000)
    assert auth_service.service_token() == "token-one"
    _rewrite(token_file, "", tick)  # the agent truncated it: read now
    assert auth_service.service_token() == "token-one"  # the token held, never an empty bearer
    _rewrite(token_file, "token-two\n", tick)  # the write lands in the same tick
    assert auth_service.service_token() == "token-two"


def test_a_token_file_half_written_in_the_same_tick_is_read_again_once_whole(token_file: Path) -> None:
    tick = time.time_ns()
    _rewrite(token_file, "token-o", tick)
    assert auth_service.service_token() == "token-o"
    _rewrite(token_file, "token-one", tick)
    assert auth_service.service_token() == "token-one"


def _jwk(key: Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    return {**json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "EdDSA"}


def _token(key: Ed25519PrivateKey, kid: str) -> str:
    now = int(time.time())
    claims = {"iss": "iss-s", "aud": "aud-s", "iat": now, "exp": now + 600, "sub": "u", "role": "staff"}
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


@pytest.mark.parametrize("caught", ["", '{"keys": [{"kty": "OKP", "crv": "Ed25'])
async def test_a_jwks_file_caught_mid_rewrite_keeps_the_keys_held(
    tmp_path: Path, caught: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth_tokens, "_FILE_CHECK_S", 0.0)  # looked at on every token, not once a second
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_jwk(old, "k-old")]}))
    settings = AuthSettings(
        issuer="iss-s",
        audience="aud-s",
        jwks_url=None,
        jwks_file=path,
        algorithms=frozenset({"EdDSA"}),
    )
    check = TokenVerifier(settings)
    assert (await check.verify(_token(old, "k-old"))).subject == "u"

    path.write_text(caught)  # read while the writer is at it
    assert (await check.verify(_token(old, "k-old"))).subject == "u"  # not a 500: the held key answers

    path.write_text(json.dumps({"keys": [_jwk(old, "k-old"), _jwk(new, "k-new")]}))
    assert (await check.verify(_token(new, "k-new"))).subject == "u"  # the whole file is read once written
