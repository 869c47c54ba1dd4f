"""Every route of every service declares who may call it, and a bad token is a 401 everywhere, never a 500.

- The running services' OpenAPI documents: every operation carries ``security`` (the bearer scheme; public
  ones also the empty requirement) and its "Access:" line.
- The apps' route tables (built in process, no I/O): every route but the probes and the OpenAPI document
  has a policy guard, so a route hidden from OpenAPI cannot escape.
- Expired, wrongly signed, wrong audience or issuer, unknown key, ``alg: none``, HS256 keyed with the
  public key, garbage, another scheme: 401 with ``WWW-Authenticate: Bearer`` on every service.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import re
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar.routes import HTTPRoute

from apps.common.auth import policy_of
from apps.common.auth_issuer import ISSUER_ALGORITHM, claims_for, ensure_keys, jwks_path
from apps.common.auth_tokens import UNAUTHENTICATED_PATHS
from apps.common.topology import SERVICES
from tests.support.http import auth_headers, service_url

pytestmark = pytest.mark.usefixtures("stack")

NAMES = [spec.name for spec in SERVICES]
ANY = uuid.UUID(int=7)
# A route of each service that needs a token (catalog's are public: a bad token there is a 401 too).
PROBED = {
    "catalog": "/api/products?limit=1",
    "customer": f"/api/customers/{ANY}",
    "checkout": f"/api/carts/{ANY}",
    "order": f"/api/orders/{ANY}",
    "payment": f"/api/payments?order_id={ANY}",
    "warehouse": f"/api/reservations?order_id={ANY}",
    "returns": "/api/returns",
    "analytics": "/api/analytics/products/top",
}
OPEN = re.compile("|".join(UNAUTHENTICATED_PATHS))
METHODS = {"get", "put", "post", "patch", "delete"}


@pytest.mark.parametrize("name", NAMES)
async def test_every_operation_in_openapi_declares_its_policy(name: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        document = (await http.get(f"{service_url(name)}/schema/openapi.json")).json()
    assert "bearer" in document["components"]["securitySchemes"]
    undeclared = [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
        and not OPEN.match(path)
        and ("security" not in operation or "Access: " not in operation.get("description", ""))
    ]
    assert undeclared == [], f"{name}: operations without a declared policy"


@pytest.mark.parametrize("name", NAMES)
def test_every_route_of_the_app_has_a_policy(name: str) -> None:
    app = importlib.import_module(f"apps.{name}.app").create_app()
    undeclared = [
        f"{sorted(handler.http_methods)} {route.path}"
        for route in app.routes
        if isinstance(route, HTTPRoute) and not OPEN.match(route.path)
        for handler in route.route_handlers
        if handler.http_methods != {"OPTIONS"} and policy_of(handler) is None
    ]
    assert undeclared == [], f"{name}: routes without a policy (they are admin-only until they declare one)"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def bad_tokens() -> dict[str, str]:
    key, kid = ensure_keys()
    headers = {"kid": kid}

    def signed(claims: dict[str, Any], signer: Any = key, **extra: Any) -> str:
        return jwt.encode(claims, signer, algorithm=ISSUER_ALGORITHM, headers={**headers, **extra})

    good = claims_for("admin")
    public_x = next(k["x"] for k in json.loads(jwks_path().read_text())["keys"] if k["kid"] == kid)
    return {
        "expired": signed(claims_for("admin", ttl_s=60, now=time.time() - 3600)),
        "wrong signature": signed(good, Ed25519PrivateKey.generate()),
        "wrong audience": signed({**good, "aud": "someone-else"}),
        "wrong issuer": signed({**good, "iss": "https://evil.example"}),
        "unknown kid": signed(good, kid="no-such-key"),
        "no role": signed({k: v for k, v in good.items() if k != "role"}),
        "customer without id": signed(claims_for("customer")),
        "alg none": f"{_b64({'alg': 'none', 'kid': kid, 'typ': 'JWT'})}.{_b64(good)}.",
        "hs256 with the public key": jwt.encode(good, public_x, algorithm="HS256", headers=headers),
        "garbage": "not-a-jwt",
        "three garbage parts": "a.b.c",
    }


@pytest.mark.parametrize("name", NAMES)
async def test_bad_tokens_are_401_with_a_bearer_challenge(name: str) -> None:
    url = service_url(name) + PROBED[name]
    cases = {label: f"Bearer {token}" for label, token in bad_tokens().items()}
    cases["basic scheme"] = "Basic YWRtaW46YWRtaW4="
    cases["bearer without a token"] = "Bearer"
    async with httpx.AsyncClient(timeout=30) as http:
        answers = await asyncio.gather(*(http.get(url, headers={"Authorization": v}) for v in cases.values()))
        control = await http.get(url, headers=auth_headers("admin"))
    wrong = {
        label: (r.status_code, r.text[:120])
        for label, r in zip(cases, answers, strict=True)
        if r.status_code != 401 or not r.headers.get("www-authenticate", "").startswith("Bearer")
    }
    assert wrong == {}, f"{name}: bad tokens not refused with 401"
    assert all("detail" in r.json() for r in answers)
    assert control.status_code in (200, 404), control.text  # a good token passes (the id is unknown)


@pytest.mark.parametrize("name", NAMES)
async def test_options_and_probes_need_no_token(name: str) -> None:
    path = PROBED[name].split("?")[0]
    async with httpx.AsyncClient(timeout=30) as http:
        options, health, ready = await asyncio.gather(
            http.options(service_url(name) + path),
            http.get(f"{service_url(name)}/health"),
            http.get(f"{service_url(name)}/ready"),
        )
    assert options.status_code == 204 and "GET" in options.headers["allow"], options.text
    assert (health.status_code, ready.status_code) == (200, 200)
