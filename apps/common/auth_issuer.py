"""The local token issuer of the development stack and the tests (never used in production).

An Ed25519 key pair is made on first use under ``.stack/keys/`` (``STACK_STATE_DIR``): the private key
``auth-issuer.pem`` (mode 0600) and the public JWKS ``auth-jwks.json`` that every service reads
(``AUTH_JWKS_FILE``'s default, see ``apps/common/auth_tokens.py``). ``just token ROLE`` prints a token
(``infra/tokens.py``); the tests mint theirs with :func:`mint`; in development a service mints its own
service token with it (``apps/common/service_client.py``). Production points ``AUTH_JWKS_URL`` at a real
identity provider and gives each service its token by ``AUTH_SERVICE_TOKEN_FILE``; nothing here runs then.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "ISSUER_ALGORITHM",
    "claims_for",
    "ensure_keys",
    "jwks_path",
    "mint",
    "private_key_path",
]

_REPO: Final = Path(__file__).resolve().parent.parent.parent
DEFAULT_ISSUER: Final = "commerce-outbox-dev"
DEFAULT_AUDIENCE: Final = "commerce-outbox"
ISSUER_ALGORITHM: Final = "EdDSA"
DEFAULT_TTL_S: Final = 3600


def keys_dir() -> Path:
    return _paths(os.environ.get("STACK_STATE_DIR"), None, None)[0]


def private_key_path() -> Path:
    return _paths(os.environ.get("STACK_STATE_DIR"), os.environ.get("AUTH_ISSUER_KEY_FILE"), None)[1]


def jwks_path() -> Path:
    return _paths(os.environ.get("STACK_STATE_DIR"), None, os.environ.get("AUTH_JWKS_FILE"))[2]


@cache
def _paths(state: str | None, key_file: str | None, jwks_file: str | None) -> tuple[Path, Path, Path]:
    # Cached: minting thousands of tokens (just bench) should not spend its time building paths.
    keys = Path(state or _REPO / ".stack") / "keys"
    return keys, Path(key_file or keys / "auth-issuer.pem"), Path(jwks_file or keys / "auth-jwks.json")


def _public_jwk(key: Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": ISSUER_ALGORITHM, "use": "sig"}


def _write_private(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def ensure_keys() -> tuple[Ed25519PrivateKey, str]:
    """The issuer's private key and its kid, made (with the JWKS) on first use.

    Several processes start at once (``just up``): a lock file makes exactly one of them create the pair.
    """
    key_path, jwks = private_key_path(), jwks_path()
    if key_path.exists():
        return _load(key_path.stat().st_mtime_ns, key_path, jwks)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    with (key_path.parent / ".auth-issuer.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not key_path.exists():
            key = Ed25519PrivateKey.generate()
            kid = f"dev-{uuid.uuid4().hex[:12]}"
            _write_private(key_path, key)
            _write_atomically(jwks, json.dumps({"keys": [_public_jwk(key, kid)]}, indent=2))
    return _load(key_path.stat().st_mtime_ns, key_path, jwks)


@cache
def _load(_mtime_ns: int, key_path: Path, jwks: Path) -> tuple[Ed25519PrivateKey, str]:
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{key_path} is not an Ed25519 private key")
    public = _public_jwk(key, "")["x"]
    for entry in json.loads(jwks.read_text())["keys"]:
        if entry.get("x") == public:
            return key, str(entry["kid"])
    raise ValueError(f"{jwks} does not hold the public key of {key_path}")


def claims_for(
    role: str,
    *,
    customer_id: uuid.UUID | str | None = None,
    service: str | None = None,
    scopes: Iterable[str] = (),
    subject: str | None = None,
    ttl_s: int = DEFAULT_TTL_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of a token for ``role`` (what an identity provider would put in it)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": os.environ.get("AUTH_ISSUER", DEFAULT_ISSUER),
        "aud": os.environ.get("AUTH_AUDIENCE", DEFAULT_AUDIENCE),
        "iat": issued,
        "exp": issued + ttl_s,
        "role": role,
        "sub": subject or _default_subject(role, customer_id, service),
    }
    if customer_id is not None:
        claims["customer_id"] = str(customer_id)
    if service is not None:
        claims["service"] = service
    if scopes := " ".join(scopes):
        claims["scope"] = scopes
    return claims


def _default_subject(role: str, customer_id: uuid.UUID | str | None, service: str | None) -> str:
    if role == "customer" and customer_id is not None:
        return str(customer_id)
    if role == "service" and service is not None:
        return f"service:{service}"
    return f"dev-{role}"


def mint(role: str, **claims: Any) -> str:
    """A signed token for ``role`` from the local issuer (keyword arguments as :func:`claims_for`)."""
    key, kid = ensure_keys()
    return jwt.encode(claims_for(role, **claims), key, algorithm=ISSUER_ALGORITHM, headers={"kid": kid})
