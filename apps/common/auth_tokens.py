"""Bearer token verification against a JWKS (PyJWT's keys and algorithms), in a Litestar authentication middleware.

Configuration (environment):

- ``AUTH_JWKS_URL``: the identity provider's JWKS (production); fetched on first use and again once it
  is ``AUTH_JWKS_REFRESH_S`` (60) old, by the first token verified after that (a new kid, or a key
  withdrawn); a failed refresh keeps the keys held and is tried again an interval later.
- ``AUTH_JWKS_FILE``: a JWKS on disk, re-read when it changes (looked at, at most once a second, and at
  once for a kid it does not hold); default the local issuer's
  ``.stack/keys/auth-jwks.json`` (``apps/common/auth_issuer.py``).
- ``AUTH_ISSUER`` / ``AUTH_AUDIENCE``: the ``iss`` and ``aud`` every token must carry.
- ``AUTH_ALGORITHMS``: accepted signature algorithms, asymmetric only (default ``EdDSA,RS256,ES256``).

All but the file are read through ``AuthVariables`` (on the settings base, apps/common/settings.py) when the
app is built: a refresh that is not a number, or an algorithm that is not asymmetric, stops the start naming
the variable. The file's path is the local issuer's to resolve (``jwks_path``: ``STACK_STATE_DIR``,
``AUTH_JWKS_FILE``), as ``just token`` does.

A key withdrawn from the key set stops verifying within that interval (the file's second, the URL's
``AUTH_JWKS_REFRESH_S``), and so does every token it signed, remembered ones included.

A token must name its key (``kid``), be signed by that key with that key's algorithm, be unexpired
(``exp``, 30 s leeway) and carry ``iss``, ``aud``, ``sub``, ``iat`` and ``role``; anything else (expired,
wrong signature, audience or issuer, unknown kid, ``alg: none``, an HS256 token keyed with the public
key, garbage) is a 401 with ``WWW-Authenticate: Bearer`` and the reason, never a 500.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import re
import time
import urllib.request
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import jwt
import msgspec
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.middleware.base import DefineMiddleware

from apps.common.auth import ROLES, Principal, Role, scopes_of, unauthorized
from apps.common.auth_issuer import DEFAULT_AUDIENCE, DEFAULT_ISSUER, ensure_keys, jwks_path
from apps.common.ed25519 import sodium_verifier
from apps.common.settings import DAY_S, Settings, env

__all__ = ["AuthSettings", "AuthVariables", "InvalidToken", "KeySet", "TokenVerifier", "auth_middleware"]

ASYMMETRIC: Final = frozenset({"EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"})
REQUIRED_CLAIMS: Final = ["exp", "iat", "iss", "aud", "sub"]
# Paths that never look at a token: liveness, readiness, metrics, the OpenAPI document.
UNAUTHENTICATED_PATHS: Final = ["^/health$", "^/ready$", "^/metrics", "^/schema"]
_CACHE_SIZE: Final = 4096
_FILE_CHECK_S: Final = 1.0
_RACY_FILE_S: Final = 1.0

log = logging.getLogger("apps.auth")


class InvalidToken(Exception):
    """Why a token was refused (the 401's detail)."""


@dataclass(frozen=True, slots=True)
class AuthVariables(Settings):
    """What the environment says about tokens (the module docstring); ``AuthSettings`` is what is verified with."""

    issuer: str = env("AUTH_ISSUER", DEFAULT_ISSUER)
    audience: str = env("AUTH_AUDIENCE", DEFAULT_AUDIENCE)
    jwks_url: str | None = env("AUTH_JWKS_URL", None)  # empty: unset
    algorithms: str = env("AUTH_ALGORITHMS", "EdDSA,RS256,ES256")
    refresh_s: float = env("AUTH_JWKS_REFRESH_S", 60.0, above=0, maximum=DAY_S)

    def __post_init__(self) -> None:
        if not self.algorithm_set or not self.algorithm_set <= ASYMMETRIC:
            raise self.invalid("algorithms", f"not asymmetric algorithms among {sorted(ASYMMETRIC)}")

    @property
    def algorithm_set(self) -> frozenset[str]:
        return frozenset(a.strip() for a in self.algorithms.split(",") if a.strip())


@dataclass(frozen=True)
class AuthSettings:
    issuer: str
    audience: str
    jwks_url: str | None
    jwks_file: Path
    algorithms: frozenset[str]
    refresh_s: float = 60.0
    leeway_s: int = 30

    @classmethod
    def from_env(cls) -> AuthSettings:
        read = AuthVariables.from_env()
        return cls(
            issuer=read.issuer,
            audience=read.audience,
            jwks_url=read.jwks_url or None,
            jwks_file=jwks_path(),
            algorithms=read.algorithm_set,
            refresh_s=read.refresh_s,
        )


@dataclass
class KeySet:
    """The verification keys by kid, from ``AUTH_JWKS_URL`` or the JWKS file (see the module doc)."""

    settings: AuthSettings
    _keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    _loaded_at: float = float("-inf")
    _file_stamp: tuple[int, int] | None = None
    _file_checked_at: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def key(self, kid: str) -> jwt.PyJWK | None:
        now = time.monotonic()
        if self.settings.jwks_url is None:
            # Two system calls per new token otherwise; a key added or removed is seen within a second.
            if kid not in self._keys or now - self._file_checked_at >= _FILE_CHECK_S:
                self._file_checked_at = now
                self._reload_file_if_changed()
        elif now - self._loaded_at >= self.settings.refresh_s:
            # Known kids too: a key the provider withdraws (a compromised one) must stop verifying, and
            # only a fetch can tell. One fetch per interval, by the first token after it.
            async with self._lock:
                if time.monotonic() - self._loaded_at >= self.settings.refresh_s:
                    self._loaded_at = time.monotonic()
                    await self._fetch_url(self.settings.jwks_url)
        return self._keys.get(kid)

    async def _fetch_url(self, url: str) -> None:
        try:
            self._keys = _parse(await asyncio.to_thread(_fetch, url))
        except Exception:
            if not self._keys:
                raise  # nothing held yet: no token can be judged
            # An unreachable provider keeps its last keys for another interval rather than refusing every
            # token; a withdrawn key is then dropped one interval late.
            log.warning("JWKS refresh from %s failed; keeping the %d keys held", url, len(self._keys), exc_info=True)

    def _reload_file_if_changed(self) -> None:
        path = self.settings.jwks_file
        if not path.exists() and "AUTH_JWKS_FILE" not in os.environ:
            # The local issuer makes its keys on first use: a service may start before any token exists.
            ensure_keys()
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._file_stamp:
            try:
                keys = _parse(json.loads(path.read_text()))
            except Exception:
                if not self._keys:
                    raise  # nothing held yet: no token can be judged
                # Read while it is rewritten in place (empty, or half a document): the held keys answer,
                # as for an unreachable URL, and the file is read again at the next look (a 500 per token
                # before: S, session 30).
                log.warning("JWKS file %s does not parse; keeping the %d keys held", path, len(self._keys))
                return
            self._keys = keys
            # A file written within a clock tick of this read could be rewritten, same size, in that tick
            # without a new mtime (mtimes are coarse: a jiffy on kernels before 6.13): until its mtime is a
            # second old, every look reads it again, as git treats a "racily clean" index entry.
            self._file_stamp = stamp if time.time() - stat.st_mtime_ns / 1e9 >= _RACY_FILE_S else None


def _fetch(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _parse(jwks: Any) -> dict[str, jwt.PyJWK]:
    if isinstance(jwks, dict) and jwks.get("keys") == []:
        # A whole document naming no key: every key withdrawn (an operator revoking them all). PyJWKSet
        # refuses to build it, and its error read as "does not parse" kept the held keys verifying (S, 31).
        return {}
    keys = {}
    for key in jwt.PyJWKSet.from_dict(jwks).keys:
        if key.key_id:
            keys[key.key_id] = key
    return keys


class TokenVerifier:
    """Verified tokens become Principals; a verified token is remembered until it expires (same answer,
    no second signature check for a client that reuses its token) or its signing key leaves the key set."""

    def __init__(self, settings: AuthSettings, keys: KeySet | None = None) -> None:
        self.settings = settings
        self.keys = keys or KeySet(settings)
        # token -> (principal, exp, kid, the key object that verified it): a hit holds only while the key
        # set still answers that very object for the kid (a key withdrawn or replaced is a miss).
        self._verified: dict[str, tuple[Principal, float, str, jwt.PyJWK]] = {}
        # Per key object (a reloaded JWKS makes new ones; a weak key never outlives its key, so an id
        # reused after a rotation cannot find another key's check): libsodium's Ed25519 check, or None.
        self._fast: weakref.WeakKeyDictionary[jwt.PyJWK, Callable[[bytes, bytes], bool] | None] = (
            weakref.WeakKeyDictionary()
        )

    async def verify(self, token: str) -> Principal:
        remembered = self._verified.get(token)
        if remembered is not None:
            principal, exp, kid, key = remembered
            if exp > time.time() and await self.keys.key(kid) is key:
                return principal
            self._verified.pop(token, None)
        claims, kid, key = await self._claims(token)
        principal = principal_from_claims(claims)
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.clear()
        # exp is an integer of any size (checked above); as a float 10**400 would raise: past 2**53 s it is
        # forever for this cache either way.
        self._verified[token] = (principal, float(min(_int_claim(claims, "exp"), 2**53)), kid, key)
        return principal

    async def _claims(self, token: str) -> tuple[dict[str, Any], str, jwt.PyJWK]:
        header, signing_input, payload, signature = _split(token)
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.settings.algorithms:
            raise InvalidToken(f"algorithm {str(alg)[:20]!r} is not accepted")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("the token names no key (kid)")
        if "crit" in header or "b64" in header:
            raise InvalidToken("invalid token")  # no JWS extension is understood here (RFC 7515 4.1.11)
        key = await self.keys.key(kid)
        if key is None:
            raise InvalidToken("unknown signing key (kid)")
        if key.algorithm_name != alg:
            raise InvalidToken("the algorithm does not match the signing key")
        if not self._signed_by(key, signing_input, signature):
            raise InvalidToken("bad signature")
        try:
            claims = msgspec.json.decode(payload)
        except (msgspec.DecodeError, UnicodeDecodeError):
            raise InvalidToken("invalid token") from None
        if not isinstance(claims, dict):
            raise InvalidToken("invalid token")
        check_claims(claims, self.settings, time.time())
        return claims, kid, key

    def _signed_by(self, key: jwt.PyJWK, signing_input: bytes, signature: bytes) -> bool:
        """The key's algorithm's verdict; an Ed25519 key's through libsodium when it is there (about half
        OpenSSL's CPU per signature: apps/common/ed25519.py)."""
        if key not in self._fast:
            self._fast[key] = sodium_verifier(key.key) if key.algorithm_name == "EdDSA" else None
        fast = self._fast[key]
        if fast is not None:
            return fast(signing_input, signature)
        return bool(key.Algorithm.verify(signing_input, key.key, signature))


# What PyJWT's decode did, in one pass: its base64 segment check tests each character in a Python generator
# (~30 % of a verification) and the header was parsed twice; a signature check is ~40 % (docs/benchmarks.md).
_SEGMENT: Final = re.compile(r"[A-Za-z0-9_-]*")


def _split(token: str) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """A compact JWS's header, signing input, payload bytes and signature; "malformed token" otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("malformed token")
    header_b, payload, signature = (_segment(part) for part in parts)
    try:
        header = msgspec.json.decode(header_b)
    except (msgspec.DecodeError, UnicodeDecodeError):  # a string that is not UTF-8 is not a DecodeError
        raise InvalidToken("malformed token") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed token")
    return header, f"{parts[0]}.{parts[1]}".encode(), payload, signature


def _segment(part: str) -> bytes:
    """base64url without padding (up to two trailing "=" tolerated, as PyJWT does); junk is refused."""
    stripped = part.rstrip("=")
    padding = len(part) - len(stripped)
    if padding > 2 or (padding and len(part) % 4) or len(stripped) % 4 == 1 or not _SEGMENT.fullmatch(stripped):
        raise InvalidToken("malformed token")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed token") from None


def check_claims(claims: dict[str, Any], settings: AuthSettings, now: float) -> None:
    """PyJWT's registered-claim checks, in its order, as ``jwt.decode`` ran them for us: the required claims
    present, ``iat`` and ``nbf`` not in the future, ``exp`` not past (each within the leeway, each an integer
    or convertible to one), ``iss`` and ``aud`` ours, ``sub`` and ``jti`` strings."""
    leeway = settings.leeway_s
    for name in REQUIRED_CLAIMS:
        if claims.get(name) is None:
            raise InvalidToken(f"missing claim {name}")
    if _int_claim(claims, "iat") > now + leeway:
        raise InvalidToken("invalid token")
    if "nbf" in claims and _int_claim(claims, "nbf") > now + leeway:
        raise InvalidToken("invalid token")
    if _int_claim(claims, "exp") <= now - leeway:
        raise InvalidToken("token expired")
    if claims["iss"] != settings.issuer or not isinstance(claims["iss"], str):
        raise InvalidToken("wrong issuer")
    audiences = claims["aud"]
    audiences = [audiences] if isinstance(audiences, str) else audiences
    if not isinstance(audiences, list) or any(not isinstance(a, str) for a in audiences):
        raise InvalidToken("wrong audience")
    if settings.audience not in audiences:
        raise InvalidToken("wrong audience")
    if not isinstance(claims["sub"], str) or not isinstance(claims.get("jti", ""), str):
        raise InvalidToken("invalid token")


def _int_claim(claims: dict[str, Any], name: str) -> int:
    try:
        return int(claims[name])
    except (ValueError, TypeError, OverflowError):
        raise InvalidToken("invalid token") from None


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    role = claims.get("role")
    if role not in ROLES:
        raise InvalidToken("the token carries no known role")
    role_: Role = role
    customer_id = service = None
    if role_ == "customer":
        try:
            customer_id = uuid.UUID(str(claims.get("customer_id")))
        except ValueError:
            raise InvalidToken("a customer token needs its customer_id") from None
    if role_ == "service":
        service = claims.get("service")
        if not isinstance(service, str) or not service:
            raise InvalidToken("a service token needs its service name")
    scopes = scopes_of(claims.get("scope", claims.get("scp")))
    return Principal(subject=str(claims["sub"]), role=role_, customer_id=customer_id, service=service, scopes=scopes)


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    """Sets ``request.user`` to the caller's Principal, or None without an Authorization header (the
    route's policy then decides); a header that is not a valid bearer token is a 401 on every route."""

    def __init__(self, app: Any, verifier: TokenVerifier, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.verifier = verifier

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        header = connection.headers.get("authorization")
        if header is None:
            return AuthenticationResult(user=None, auth=None)
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("expected Authorization: Bearer <token>", error="invalid_request")
        try:
            principal = await self.verifier.verify(token.strip())
        except InvalidToken as exc:
            raise unauthorized(str(exc)) from None
        return AuthenticationResult(user=principal, auth=token.strip())


def auth_middleware(verifier: TokenVerifier | None = None) -> DefineMiddleware:
    """The middleware for a service app: one verifier (and its key cache) shared by every route."""
    return DefineMiddleware(
        BearerAuthMiddleware,
        verifier=verifier or TokenVerifier(AuthSettings.from_env()),
        exclude=UNAUTHENTICATED_PATHS,
    )
