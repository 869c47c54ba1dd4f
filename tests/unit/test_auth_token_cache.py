"""The verified-token cache (``TokenVerifier._verified``) answers only what verifying again would answer: with
the token in the cache, a token past its exp, a tampered copy of it and a token whose key was withdrawn are
refused as they are without it (session 31, K: the order API's Ed25519 check is ~45 us per fresh token)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.common.auth_tokens import InvalidToken, TokenVerifier
from tests.unit.test_security_key_removal import _jwk, _settings, _write

pytestmark = pytest.mark.unit

NOW = 1_900_000_000
LEEWAY_S = 30


class _Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    """The wall clock verification reads (exp, iat, nbf) and the cache's exp check reads."""
    made = _Clock()
    monkeypatch.setattr("apps.common.auth_tokens.time.time", made)
    return made


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    made = Ed25519PrivateKey.generate()
    _write(tmp_path / "jwks.json", _jwk(made, "k1"))
    return made


class _CountingVerifier(TokenVerifier):
    """Counts signature checks: a cache hit makes none."""

    checks = 0

    def _signed_by(self, key: jwt.PyJWK, signing_input: bytes, signature: bytes) -> bool:
        self.checks += 1
        return super()._signed_by(key, signing_input, signature)


def _verifier(tmp_path: Path) -> _CountingVerifier:
    settings = _settings(tmp_path / "jwks.json")
    assert settings.leeway_s == LEEWAY_S
    return _CountingVerifier(settings)


def _claims(**overrides: Any) -> dict[str, Any]:
    base = {"iss": "iss-s", "aud": "aud-s", "iat": NOW, "exp": NOW + 60, "sub": "c1", "role": "customer"}
    return {**base, "customer_id": "00000000-0000-0000-0000-000000000001", **overrides}


def _token(key: Ed25519PrivateKey, **overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), key, algorithm="EdDSA", headers={"kid": "k1"})


async def test_a_reused_token_is_checked_once(tmp_path: Path, key: Ed25519PrivateKey, clock: _Clock) -> None:
    check, token = _verifier(tmp_path), _token(key)
    first = await check.verify(token)
    clock.now += 59
    assert await check.verify(token) == first
    assert check.checks == 1


async def test_a_cached_token_is_not_answered_past_its_exp_and_refused_past_the_leeway(
    tmp_path: Path, key: Ed25519PrivateKey, clock: _Clock
) -> None:
    """Past exp the cache never answers: the token is verified again, which accepts it within the leeway (as
    without a cache) and refuses it after."""
    check, token = _verifier(tmp_path), _token(key)
    await check.verify(token)
    clock.now = NOW + 60  # exp itself: no longer "exp > now"
    await check.verify(token)
    assert check.checks == 2
    clock.now = NOW + 60 + LEEWAY_S
    with pytest.raises(InvalidToken, match="expired"):
        await check.verify(token)
    with pytest.raises(InvalidToken, match="expired"):  # and stays refused: the refusal is not remembered as good
        await check.verify(token)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_tampered_copies_of_a_cached_token_are_refused(
    tmp_path: Path, key: Ed25519PrivateKey, clock: _Clock
) -> None:
    """The cache is keyed by the token's exact text: any other text is verified, and a changed claim or
    signature fails it."""
    check, token = _verifier(tmp_path), _token(key)
    await check.verify(token)
    head, payload, signature = token.split(".")
    other_customer = _b64(json.dumps(_claims(customer_id="00000000-0000-0000-0000-000000000002")).encode())
    later_exp = _b64(json.dumps(_claims(exp=NOW + 86_400)).encode())
    admin = _b64(json.dumps(_claims(role="admin")).encode())
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for forged in (
        f"{head}.{other_customer}.{signature}",
        f"{head}.{later_exp}.{signature}",
        f"{head}.{admin}.{signature}",
        f"{head}.{payload}.{flipped}",
    ):
        with pytest.raises(InvalidToken, match="signature"):
            await check.verify(forged)
    with pytest.raises(InvalidToken):
        await check.verify(token + "x")
    with pytest.raises(InvalidToken):
        await check.verify(f"{head}.{payload}")
    assert (await check.verify(token)).customer_id is not None  # the genuine one still answers


async def test_a_cached_token_is_refused_once_its_key_is_withdrawn(
    tmp_path: Path, key: Ed25519PrivateKey, clock: _Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Revocation here is the key's: a token outlives its customer's erasure until its exp (docs/decisions.md),
    with or without the cache. tests/unit/test_security_key_removal.py covers the URL key set and a kid reused."""
    ticks = [1000.0]
    monkeypatch.setattr("apps.common.auth_tokens.time.monotonic", lambda: ticks[0])
    check, token = _verifier(tmp_path), _token(key)
    await check.verify(token)
    _write(tmp_path / "jwks.json", _jwk(Ed25519PrivateKey.generate(), "k2"))
    ticks[0] += 1.0  # the file is looked at once a second
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await check.verify(token)
