"""A key withdrawn from the key set takes its tokens with it (session 29, S): a verified token was remembered
until its exp, and with ``AUTH_JWKS_URL`` the key set was fetched again only for a kid it did not hold, so a
key the identity provider withdrew (a compromised one) kept verifying until every process restarted."""

from __future__ import annotations

import json
import os
import time
import types
import urllib.error
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from apps.common import auth_tokens
from apps.common.auth import public
from apps.common.auth_tokens import AuthSettings, InvalidToken, TokenVerifier, auth_middleware

pytestmark = pytest.mark.unit

# The JWKS file is looked at most once a second (apps.common.auth_tokens._FILE_CHECK_S); the URL's key set is
# fetched again once it is REFRESH_S old. Both read the clock below, which only a test moves: with real sleeps
# and a 0.3-s interval, a process that lost the CPU for 0.3 s between two verifications (a busy machine) fetched
# once more than the test counted.
FILE_INTERVAL_S = 1.0
REFRESH_S = 60.0


class Clock:
    """The key set's monotonic clock; exp and iat are still judged by the wall clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    made = Clock()
    # The module's own `time` name, not the time module: the event loop and the test client keep real time.
    monkeypatch.setattr(auth_tokens, "time", types.SimpleNamespace(monotonic=made.monotonic, time=time.time))
    return made


def _jwk(key: Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    return {**json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "EdDSA"}


def _token(key: Ed25519PrivateKey, kid: str, sub: str = "u") -> str:
    now = int(time.time())
    claims = {"iss": "iss-s", "aud": "aud-s", "iat": now, "exp": now + 600, "sub": sub, "role": "staff"}
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


def _settings(jwks_file: Path, jwks_url: str | None = None, refresh_s: float = REFRESH_S) -> AuthSettings:
    return AuthSettings(
        issuer="iss-s",
        audience="aud-s",
        jwks_url=jwks_url,
        jwks_file=jwks_file,
        algorithms=frozenset({"EdDSA"}),
        refresh_s=refresh_s,
    )


def _write(path: Path, *jwks: dict[str, Any]) -> None:
    path.write_text(json.dumps({"keys": list(jwks)}))


async def test_a_remembered_token_is_refused_once_its_key_leaves_the_jwks_file(tmp_path: Path, clock: Clock) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    path = tmp_path / "jwks.json"
    _write(path, _jwk(old, "k-old"), _jwk(new, "k-new"))
    check = TokenVerifier(_settings(path))
    token = _token(old, "k-old")
    assert (await check.verify(token)).subject == "u"
    assert (await check.verify(token)).subject == "u"  # remembered
    _write(path, _jwk(new, "k-new"))
    clock.advance(FILE_INTERVAL_S)
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await check.verify(token)
    # The keys still held keep their tokens.
    assert (await check.verify(_token(new, "k-new", sub="v"))).subject == "v"


async def test_a_remembered_token_is_refused_when_its_kid_names_another_key(tmp_path: Path, clock: Clock) -> None:
    """A kid reused for a new key (a rotation that keeps the id) is not the key that signed the token."""
    old = Ed25519PrivateKey.generate()
    path = tmp_path / "jwks.json"
    _write(path, _jwk(old, "k"))
    check = TokenVerifier(_settings(path))
    token = _token(old, "k")
    await check.verify(token)
    _write(path, _jwk(Ed25519PrivateKey.generate(), "k"))
    clock.advance(FILE_INTERVAL_S)
    with pytest.raises(InvalidToken, match="bad signature"):
        await check.verify(token)


async def test_a_key_withdrawn_from_the_jwks_url_is_refused_after_the_refresh_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    """With AUTH_JWKS_URL the set is fetched again once it is refresh_s old, known kids or not: the
    remembered token and a fresh one under the withdrawn kid are both refused."""
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    served: dict[str, Any] = {"keys": [_jwk(old, "k-old"), _jwk(new, "k-new")]}
    fetches: list[str] = []

    def fetch(url: str) -> Any:
        fetches.append(url)
        return json.loads(json.dumps(served))

    monkeypatch.setattr("apps.common.auth_tokens._fetch", fetch)
    check = TokenVerifier(_settings(tmp_path / "absent.json", jwks_url="https://idp.invalid/jwks"))
    remembered = _token(old, "k-old")
    await check.verify(remembered)
    clock.advance(REFRESH_S - 1)
    await check.verify(remembered)
    assert len(fetches) == 1  # one fetch per interval, not per token
    served["keys"] = [_jwk(new, "k-new")]
    clock.advance(1)
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await check.verify(remembered)
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await check.verify(_token(old, "k-old", sub="fresh"))
    assert (await check.verify(_token(new, "k-new", sub="v"))).subject == "v"
    assert len(fetches) == 2


async def test_a_failed_jwks_refresh_keeps_the_keys_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    """An identity provider out of reach is no reason to refuse every token: the last keys stay, and the
    fetch is tried again an interval later (not on every request)."""
    key = Ed25519PrivateKey.generate()
    fetches: list[str] = []

    def fetch(url: str) -> Any:
        fetches.append(url)
        if len(fetches) > 1:
            raise urllib.error.URLError("down")
        return {"keys": [_jwk(key, "k")]}

    monkeypatch.setattr("apps.common.auth_tokens._fetch", fetch)
    check = TokenVerifier(_settings(tmp_path / "absent.json", jwks_url="https://idp.invalid/jwks"))
    await check.verify(_token(key, "k", sub="a"))
    clock.advance(REFRESH_S)
    assert (await check.verify(_token(key, "k", sub="b"))).subject == "b"
    assert (await check.verify(_token(key, "k", sub="c"))).subject == "c"
    # Two fetches in all: the first and the failed refresh (the list of answers this counted before stayed one
    # long whatever was fetched: that assertion could not fail).
    assert len(fetches) == 2
    clock.advance(REFRESH_S)
    assert (await check.verify(_token(key, "k", sub="d"))).subject == "d"
    assert len(fetches) == 3  # tried again an interval later


async def test_a_remembered_token_costs_no_second_signature_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "jwks.json"
    _write(path, _jwk(key, "k"))
    check = TokenVerifier(_settings(path))
    checks: list[int] = []
    signed_by = check._signed_by

    def counting(*args: Any) -> bool:
        checks.append(1)
        return signed_by(*args)

    monkeypatch.setattr(check, "_signed_by", counting)
    token = _token(key, "k")
    for _ in range(3):
        await check.verify(token)
    assert len(checks) == 1


@get("/api/who", guards=[public("test route")], sync_to_thread=False)
def who() -> str:
    return "ok"


async def test_the_next_request_after_the_key_leaves_is_a_401(tmp_path: Path, clock: Clock) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    path = tmp_path / "jwks.json"
    _write(path, _jwk(old, "k-old"), _jwk(new, "k-new"))
    app = Litestar([who], middleware=[auth_middleware(TokenVerifier(_settings(path)))])
    headers = {"Authorization": f"Bearer {_token(old, 'k-old')}"}
    async with AsyncTestClient(app) as client:
        assert (await client.get("/api/who", headers=headers)).status_code == 200
        _write(path, _jwk(new, "k-new"))
        clock.advance(FILE_INTERVAL_S)
        refused = await client.get("/api/who", headers=headers)
        assert refused.status_code == 401
        assert "unknown signing key" in refused.text
        assert refused.headers["www-authenticate"].startswith("Bearer")


async def test_a_key_set_emptied_withdraws_every_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    """An empty key set is a whole document saying no key verifies (an operator revoking everything), not one
    that does not parse: PyJWKSet refuses to build it, and the held keys went on verifying, remembered tokens
    and fresh ones alike, by file and by URL, until every process restarted (session 31, S; found by K)."""
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "jwks.json"
    _write(path, _jwk(key, "k"))
    by_file = TokenVerifier(_settings(path))
    served: dict[str, Any] = {"keys": [_jwk(key, "k")]}
    monkeypatch.setattr("apps.common.auth_tokens._fetch", lambda url: json.loads(json.dumps(served)))
    url = "https://idp.invalid/jwks"
    by_url = TokenVerifier(_settings(tmp_path / "absent.json", jwks_url=url, refresh_s=FILE_INTERVAL_S))
    remembered = _token(key, "k")
    for check in (by_file, by_url):
        assert (await check.verify(remembered)).subject == "u"
    _write(path)
    served["keys"] = []
    clock.advance(FILE_INTERVAL_S)  # the file's interval, and the URL's here
    for check in (by_file, by_url):
        for token in (remembered, _token(key, "k", sub="fresh")):
            with pytest.raises(InvalidToken, match="unknown signing key"):
                await check.verify(token)
    # A new key set is taken as before.
    other = Ed25519PrivateKey.generate()
    _write(path, _jwk(other, "k2"))
    served["keys"] = [_jwk(other, "k2")]
    clock.advance(FILE_INTERVAL_S)
    for check in (by_file, by_url):
        assert (await check.verify(_token(other, "k2", sub="w"))).subject == "w"


async def test_a_signed_token_expiring_beyond_a_float_is_judged_not_a_500(tmp_path: Path) -> None:
    """exp is an integer of any size in JSON; the cache kept it as a float, and float(10**400) raised
    OverflowError out of the verifier (a 500 for a token its key signed: an identity provider's or
    `just token --ttl` mistake), where the README promises a token never makes a 500."""
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "jwks.json"
    _write(path, _jwk(key, "k"))
    check = TokenVerifier(_settings(path))
    now = int(time.time())
    claims = {"iss": "iss-s", "aud": "aud-s", "iat": now, "exp": 10**400, "sub": "far", "role": "staff"}
    token = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": "k"})
    assert (await check.verify(token)).subject == "far"
    assert (await check.verify(token)).subject == "far"  # remembered


def _keep_mtime(path: Path, mtime_ns: int) -> None:
    """The file's mtime set back to ``mtime_ns``: what a coarse clock (a jiffy, before Linux 6.13) leaves after
    a rewrite within the same tick."""
    os.utime(path, ns=(mtime_ns, mtime_ns))


async def test_a_same_size_rewrite_within_the_clocks_tick_is_still_seen(tmp_path: Path, clock: Clock) -> None:
    """The file's stamp (mtime, size) cannot tell a rewrite of the same size in the same clock tick: a kid reused
    for a new key is such a rewrite. A file whose mtime is under a second old is read again at each look."""
    old = Ed25519PrivateKey.generate()
    path = tmp_path / "jwks.json"
    _write(path, _jwk(old, "k"))
    written_ns = path.stat().st_mtime_ns
    check = TokenVerifier(_settings(path))
    token = _token(old, "k")
    await check.verify(token)
    _write(path, _jwk(Ed25519PrivateKey.generate(), "k"))
    _keep_mtime(path, written_ns)
    assert path.stat().st_size == len(json.dumps({"keys": [_jwk(old, "k")]}))  # the same size: the same stamp
    clock.advance(FILE_INTERVAL_S)
    with pytest.raises(InvalidToken, match="bad signature"):
        await check.verify(token)


async def test_a_settled_file_is_not_read_again_at_each_look(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once its mtime is a second old the stamp is trusted: a look is a stat, not a read and a parse."""
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "jwks.json"
    _write(path, _jwk(key, "k"))
    _keep_mtime(path, time.time_ns() - 10 * 10**9)
    parsed: list[object] = []
    parse = auth_tokens._parse

    def counted(document: Any) -> dict[str, jwt.PyJWK]:
        parsed.append(document)
        return parse(document)

    monkeypatch.setattr(auth_tokens, "_parse", counted)
    check = TokenVerifier(_settings(path))
    for sub in ("a", "b", "c"):
        assert (await check.verify(_token(key, "k", sub=sub))).subject == sub
        clock.advance(FILE_INTERVAL_S)
    assert len(parsed) == 1
