"""The pure auth logic: policies, ownership helpers, claims, and token verification against a JWKS in a
temporary directory (no service, no shared keys)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from apps.common.auth import (
    Principal,
    actor_id,
    allow,
    ensure_acting_for,
    ensure_owner_or_guest,
    ensure_visible,
    own_rows,
    public,
    scopes_of,
)
from apps.common.auth_service import calling_service
from apps.common.auth_tokens import AuthSettings, InvalidToken, TokenVerifier, principal_from_claims
from apps.common.errors import NotFound, UnknownReference

A, B = uuid.UUID(int=1), uuid.UUID(int=2)
CUSTOMER = Principal(subject=str(A), role="customer", customer_id=A)
STAFF = Principal(subject="s1", role="staff")
ADMIN = Principal(subject="a1", role="admin")
READER = Principal(subject="service:order", role="service", service="order", scopes=frozenset({"customer:read"}))
BARE_SERVICE = Principal(subject="service:x", role="service", service="x")


@pytest.mark.parametrize(
    ("policy", "allowed"),
    [
        (allow("admin"), {"admin"}),
        (allow("staff"), {"staff", "admin"}),
        (allow("customer", "staff", service="customer:read"), {"customer", "staff", "admin", "order"}),
        (allow("customer", "service"), {"customer", "admin", "order", "x"}),
        (allow(service="customer:data-keys"), {"admin"}),
        (public("browsing"), {"customer", "staff", "admin", "order", "x"}),
    ],
)
def test_who_a_policy_permits(policy: Any, allowed: set[str]) -> None:
    callers = {"customer": CUSTOMER, "staff": STAFF, "admin": ADMIN, "order": READER, "x": BARE_SERVICE}
    assert {name for name, p in callers.items() if policy.permits(p)} == allowed


def test_policies_describe_themselves_and_refuse_nonsense() -> None:
    assert allow("customer", "staff", own="customer_id").describe() == "customer (own), staff, admin"
    assert allow("staff", service="order:read").describe() == "staff, admin, service (order:read)"
    assert public("registration").describe() == "public (registration)"
    with pytest.raises(ValueError, match="unknown roles"):
        allow("root")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only restrict customers"):
        allow("staff", own="customer_id")


def test_a_customer_sees_only_their_own_rows() -> None:
    ensure_visible(CUSTOMER, str(A), "x")
    for someone in (STAFF, ADMIN, READER, None):
        ensure_visible(someone, B, "x")
    with pytest.raises(NotFound, match="order not found"):
        ensure_visible(CUSTOMER, B, "order not found")
    with pytest.raises(NotFound):
        ensure_visible(CUSTOMER, "cs_guest", "x")  # a guest's row is nobody's
    with pytest.raises(UnknownReference):
        ensure_visible(CUSTOMER, B, UnknownReference("order_id", "unknown order"))


def test_customer_rows_need_a_token_guest_rows_their_guest_token() -> None:
    ensure_owner_or_guest(None, None, "x")
    ensure_owner_or_guest(None, "cs_abc", "x")
    ensure_owner_or_guest(STAFF, A, "x")
    with pytest.raises(NotAuthorizedException):
        ensure_owner_or_guest(None, A, "x")
    with pytest.raises(NotFound):
        ensure_owner_or_guest(CUSTOMER, B, "x")


def test_a_service_token_acts_for_no_customer_on_public_routes() -> None:
    # The checkout's routes are public: a scope does not stop a service there, these checks do.
    for service in (READER, BARE_SERVICE):
        with pytest.raises(PermissionDeniedException, match="acts for no customer"):
            ensure_owner_or_guest(service, A, "x")
        with pytest.raises(PermissionDeniedException, match="acts for no customer"):
            ensure_acting_for(service, A, "customer_id")
        ensure_owner_or_guest(service, None, "x")  # a guest's row: its guest token decides
        ensure_owner_or_guest(service, "cs_abc", "x")


def test_acting_for_a_customer_and_listing_filters() -> None:
    ensure_acting_for(CUSTOMER, A, "customer_id")
    ensure_acting_for(ADMIN, B, "customer_id")
    with pytest.raises(PermissionDeniedException):
        ensure_acting_for(CUSTOMER, B, "customer_id")
    with pytest.raises(NotAuthorizedException):
        ensure_acting_for(None, A, "customer_id")
    assert own_rows(CUSTOMER, None, "x") == str(A)
    assert own_rows(CUSTOMER, A, "x") == str(A)
    assert own_rows(STAFF, None, "x") is None
    assert own_rows(STAFF, B, "x") == str(B)
    with pytest.raises(NotFound):
        own_rows(CUSTOMER, B, "x")


def test_actor_ids_never_name_a_person() -> None:
    assert [actor_id(p) for p in (CUSTOMER, STAFF, ADMIN, READER, None)] == [
        f"customer:{A}",
        "staff:s1",
        "admin:a1",
        "service:order",
        "anonymous",
    ]


def test_claims_become_a_principal_or_are_refused() -> None:
    principal = principal_from_claims({"sub": "svc", "role": "service", "service": "order", "scope": "a:b c:d"})
    assert (principal.service, principal.scopes) == ("order", frozenset({"a:b", "c:d"}))
    assert principal_from_claims({"sub": str(A), "role": "customer", "customer_id": str(A)}).customer_id == A
    assert scopes_of(["x", "y"]) == frozenset({"x", "y"}) and scopes_of(None) == frozenset()
    for claims in (
        {"sub": "x", "role": "root"},
        {"sub": "x", "role": "customer", "customer_id": "nope"},
        {"sub": "x", "role": "service"},
    ):
        with pytest.raises(InvalidToken):
            principal_from_claims(claims)


def test_the_calling_service_comes_from_its_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVICE_NAME", raising=False)
    monkeypatch.setattr("sys.argv", ["uvicorn", "apps.order.app:create_app", "--factory"])
    assert calling_service() == "order"
    monkeypatch.setattr("sys.argv", ["/work/apps/returns/sweeper.py", "--port", "1"])
    assert calling_service() == "returns"
    monkeypatch.setenv("SERVICE_NAME", "checkout")
    assert calling_service() == "checkout"


# --- verification against a JWKS of our own ---------------------------------------------------------


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jwks")


@pytest.fixture(scope="module")
def keys(key_dir: Path) -> dict[str, Any]:
    """Three signing keys (EdDSA, RS256, ES256) published in a JWKS file under key_dir (made once: RSA is slow)."""
    tmp_path = key_dir
    made: dict[str, tuple[Any, str, Any]] = {
        "ed": (Ed25519PrivateKey.generate(), "EdDSA", jwt.algorithms.OKPAlgorithm),
        "rsa": (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", jwt.algorithms.RSAAlgorithm),
        "ec": (ec.generate_private_key(ec.SECP256R1()), "ES256", jwt.algorithms.ECAlgorithm),
    }
    jwks = [
        {**json.loads(algo.to_jwk(key.public_key())), "kid": kid, "alg": alg} for kid, (key, alg, algo) in made.items()
    ]
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": jwks}))
    return {kid: (key, alg) for kid, (key, alg, _) in made.items()}


def verifier(tmp_path: Path) -> TokenVerifier:
    settings = AuthSettings(
        issuer="iss-test",
        audience="aud-test",
        jwks_url=None,
        jwks_file=tmp_path / "jwks.json",
        algorithms=frozenset({"EdDSA", "RS256", "ES256"}),
    )
    return TokenVerifier(settings)


def unsigned(header: dict[str, Any]) -> str:
    """A token with this header and good claims, and no valid signature."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({**header, 'typ': 'JWT'})}.{part(claims())}."


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "iss-test", "aud": "aud-test", "iat": now, "exp": now + 60, "sub": "u", "role": "staff", **overrides}


async def test_each_key_type_verifies_its_own_tokens(key_dir: Path, keys: dict[str, Any]) -> None:
    check = verifier(key_dir)
    for kid, (key, alg) in keys.items():
        principal = await check.verify(jwt.encode(claims(), key, algorithm=alg, headers={"kid": kid}))
        assert (principal.role, principal.subject) == ("staff", "u")


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ("expired", "expired"),
        ("wrong audience", "audience"),
        ("wrong issuer", "issuer"),
        ("wrong signature", "signature"),
        ("unknown kid", "unknown signing key"),
        ("no kid", "names no key"),
        ("alg none", "not accepted"),
        ("hs256 keyed with the public key", "not accepted"),
        ("rsa key, ES256 header", "does not match"),
        ("no exp", "missing claim"),
        ("garbage", "malformed"),
        # Not UTF-8: msgspec raised UnicodeDecodeError, a 500 for anyone on every route (W, session 34).
        ("header not utf-8", "malformed"),
        ("signed payload not utf-8", "invalid token"),
    ],
)
async def test_bad_tokens_are_refused_with_a_reason(
    key_dir: Path, keys: dict[str, Any], label: str, reason: str
) -> None:
    tmp_path = key_dir
    ed, _ = keys["ed"]
    public_jwk = json.loads((tmp_path / "jwks.json").read_text())["keys"][0]
    now = int(time.time())
    tokens = {
        "expired": jwt.encode(claims(iat=now - 600, exp=now - 300), ed, algorithm="EdDSA", headers={"kid": "ed"}),
        "wrong audience": jwt.encode(claims(aud="other"), ed, algorithm="EdDSA", headers={"kid": "ed"}),
        "wrong issuer": jwt.encode(claims(iss="other"), ed, algorithm="EdDSA", headers={"kid": "ed"}),
        "wrong signature": jwt.encode(claims(), Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "ed"}),
        "unknown kid": jwt.encode(claims(), ed, algorithm="EdDSA", headers={"kid": "nope"}),
        "no kid": jwt.encode(claims(), ed, algorithm="EdDSA"),
        "alg none": unsigned({"alg": "none", "kid": "ed"}),
        "hs256 keyed with the public key": jwt.encode(
            claims(), public_jwk["x"], algorithm="HS256", headers={"kid": "ed"}
        ),
        "rsa key, ES256 header": unsigned({"alg": "ES256", "kid": "rsa"}),
        "no exp": jwt.encode(
            {k: v for k, v in claims().items() if k != "exp"}, ed, algorithm="EdDSA", headers={"kid": "ed"}
        ),
        "garbage": "garbage",
        "header not utf-8": base64.urlsafe_b64encode(b'{"alg": "\x80"}').decode().rstrip("=") + ".e30.c2ln",
        "signed payload not utf-8": jwt.api_jws.encode(b'{"sub": "\x80"}', ed, "EdDSA", headers={"kid": "ed"}),
    }
    with pytest.raises(InvalidToken, match=reason):
        await verifier(tmp_path).verify(tokens[label])


async def test_a_rotated_jwks_file_is_read_again(tmp_path: Path, key_dir: Path, keys: dict[str, Any]) -> None:
    (tmp_path / "jwks.json").write_text((key_dir / "jwks.json").read_text())
    check = verifier(tmp_path)
    ed, _ = keys["ed"]
    await check.verify(jwt.encode(claims(), ed, algorithm="EdDSA", headers={"kid": "ed"}))
    newer = Ed25519PrivateKey.generate()
    jwk = {**json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(newer.public_key())), "kid": "ed2", "alg": "EdDSA"}
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    assert (await check.verify(jwt.encode(claims(sub="v"), newer, algorithm="EdDSA", headers={"kid": "ed2"}))).subject
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await check.verify(jwt.encode(claims(sub="w"), ed, algorithm="EdDSA", headers={"kid": "ed"}))


async def test_a_key_removed_from_the_jwks_file_is_refused_within_a_second(
    tmp_path: Path, key_dir: Path, keys: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is looked at most once a second while the kid is known (two system calls per new token
    otherwise): a removed key stops verifying once that second is over."""
    (tmp_path / "jwks.json").write_text((key_dir / "jwks.json").read_text())
    check = verifier(tmp_path)
    ed, _ = keys["ed"]
    clock = [1000.0]
    monkeypatch.setattr("apps.common.auth_tokens.time.monotonic", lambda: clock[0])
    await check.verify(jwt.encode(claims(), ed, algorithm="EdDSA", headers={"kid": "ed"}))
    newer = Ed25519PrivateKey.generate()
    jwk = {**json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(newer.public_key())), "kid": "ed2", "alg": "EdDSA"}
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    clock[0] += 1.0
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await check.verify(jwt.encode(claims(sub="x"), ed, algorithm="EdDSA", headers={"kid": "ed"}))


def _variants(ed: Any) -> dict[str, str]:
    """Tokens that probe each claim and segment rule PyJWT's decode applied (verify parses them itself)."""
    now = int(time.time())

    def signed(**overrides: Any) -> str:
        body = {k: v for k, v in claims(**overrides).items() if v is not None}
        return jwt.api_jws.encode(json.dumps(body).encode(), ed, algorithm="EdDSA", headers={"kid": "ed"})

    good = signed()
    head, body, sig = good.split(".")
    return {
        "good": good,
        "nbf past": signed(nbf=now - 5),
        "nbf ahead within leeway": signed(nbf=now + 20),
        "nbf ahead": signed(nbf=now + 300),
        "iat ahead": signed(iat=now + 300),
        "iat as a numeric string": signed(iat=str(now)),
        "iat not a number": signed(iat="yesterday"),
        "exp within leeway": signed(exp=now - 20),
        "exp as a float": signed(exp=now + 60.5),
        "exp not a number": signed(exp="soon"),
        "no iat": signed(iat=None),
        "no sub": signed(sub=None),
        "no aud": signed(aud=None),
        "no iss": signed(iss=None),
        "aud list with ours": signed(aud=["x", "aud-test"]),
        "aud list without ours": signed(aud=["x", "y"]),
        "aud list not all strings": signed(aud=["aud-test", 3]),
        "aud a number": signed(aud=7),
        "iss a number": signed(iss=7),
        "sub a number": signed(sub=7),
        "jti a number": signed(jti=7),
        "jti a string": signed(jti="j1"),
        "padded signature": f"{head}.{body}.{sig}{'=' * (-len(sig) % 4)}",  # outside the signing input
        "junk in the signature": f"{head}.{body}.{sig[:-2]}!!",
        "four segments": f"{head}.{body}.{sig}.{sig}",
        "payload not an object": jwt.api_jws.encode(b"[1, 2]", ed, algorithm="EdDSA", headers={"kid": "ed"}),
        "payload not json": jwt.api_jws.encode(b"{nope", ed, algorithm="EdDSA", headers={"kid": "ed"}),
    }


async def test_verification_accepts_and_refuses_exactly_what_pyjwt_decode_does(
    key_dir: Path, keys: dict[str, Any]
) -> None:
    """verify() parses and checks a token itself (PyJWT's decode was most of a request's auth cost): for
    every claim and segment rule, it agrees with ``jwt.decode`` under the settings it used."""
    check = verifier(key_dir)
    ed, _ = keys["ed"]
    key = await check.keys.key("ed")
    assert key is not None
    options: Any = {"require": ["exp", "iat", "iss", "aud", "sub"]}
    disagree, accepted = {}, set()
    for label, token in _variants(ed).items():
        try:
            jwt.decode(
                token, key=key, algorithms=["EdDSA"], audience="aud-test", issuer="iss-test", leeway=30, options=options
            )
            pyjwt = True
        except jwt.PyJWTError:
            pyjwt = False
        try:
            await check.verify(token)
            ours = True
        except InvalidToken:
            ours = False
        if ours != pyjwt:
            disagree[label] = (ours, pyjwt)
        if ours:
            accepted.add(label)
    assert disagree == {}
    assert {"good", "padded signature", "aud list with ours", "exp within leeway"} <= accepted
    assert not {"nbf ahead", "iat ahead", "aud list without ours", "junk in the signature"} & accepted
    # The one deliberate difference: no JWS extension is understood, so a critical header is refused.
    crit = jwt.encode(claims(), ed, algorithm="EdDSA", headers={"kid": "ed", "crit": ["b64"], "b64": True})
    with pytest.raises(InvalidToken):
        await check.verify(crit)


async def test_guards_run_on_the_handler_itself_and_undeclared_routes_stay_admin_only() -> None:
    """``guard_without_copies``: a route's policy decides as before (token, role, own rows), without
    Litestar's copy of the handler per guard; a route that declares no policy keeps the app's default."""
    from litestar import get
    from litestar.connection import ASGIConnection

    from apps.common.http import create_service_app
    from apps.common.topology import BY_NAME

    @get("/api/mine/{customer_id:uuid}", guards=[allow("customer", own="customer_id")], sync_to_thread=False)
    def mine(customer_id: uuid.UUID) -> None: ...

    @get("/api/undeclared", sync_to_thread=False)
    def undeclared() -> None: ...

    app = create_service_app(BY_NAME["order"], controllers=[mine, undeclared])
    declared = app.route_handler_method_map["/api/mine/{customer_id:uuid}"]["GET"]
    bare = app.route_handler_method_map["/api/undeclared"]["GET"]
    assert "authorize_connection" in vars(declared) and "authorize_connection" not in vars(bare)

    def connection(path: str, user: Principal | None, **params: Any) -> ASGIConnection[Any, Any, Any, Any]:
        scope = {"type": "http", "method": "GET", "path": path, "user": user, "path_params": params, "app": app}
        return ASGIConnection(scope)  # type: ignore[arg-type]

    await declared.authorize_connection(connection("/api/mine/x", CUSTOMER, customer_id=A))
    await declared.authorize_connection(connection("/api/mine/x", ADMIN, customer_id=B))
    with pytest.raises(NotFound):
        await declared.authorize_connection(connection("/api/mine/x", CUSTOMER, customer_id=B))
    with pytest.raises(PermissionDeniedException):
        await declared.authorize_connection(connection("/api/mine/x", STAFF, customer_id=A))
    with pytest.raises(NotAuthorizedException):
        await declared.authorize_connection(connection("/api/mine/x", None, customer_id=A))
    await bare.authorize_connection(connection("/api/undeclared", ADMIN))
    with pytest.raises(PermissionDeniedException):
        await bare.authorize_connection(connection("/api/undeclared", CUSTOMER))
