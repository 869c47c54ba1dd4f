"""Who may call what, against the real services: every endpoint x caller -> the expected status.

Callers: none (no token), customer A (the resources' owner), customer B (another customer), staff, admin,
and a service token with the scopes the order and returns services hold (customer:read, order:read).
One world per module: customer A with a delivered order, a return, a cart and a checkout session.

Writes are sent so that an allowed caller changes nothing: a body the handler refuses (400), an unknown
reference (422) or a state that forbids it (409); the matrix checks what the auth layer decides
(401 without a token, 403 for a role that may not, 404 for another customer's resource) and that an
allowed caller gets past it (the statuses listed for "ok").
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import pytest

from tests.support.checkout import US_ADDRESS
from tests.support.http import auth_headers, create_customer, create_product, service_url, set_stock
from tests.support.orders import eventually

pytestmark = pytest.mark.usefixtures("stack")

CALLERS: Final = ("none", "own", "other", "staff", "admin", "service")
SERVICE_SCOPES: Final = ("customer:read", "order:read")
ANY = uuid.UUID(int=7)


@dataclass
class World:
    a: str
    b: str
    product: str
    order: str
    item: int
    return_id: str
    cart: str
    checkout: str
    headers: dict[str, dict[str, str]] = field(default_factory=dict)


def _headers(a: str, b: str) -> dict[str, dict[str, str]]:
    return {
        "none": {},
        "own": auth_headers("customer", customer_id=a),
        "other": auth_headers("customer", customer_id=b),
        "staff": auth_headers("staff"),
        "admin": auth_headers("admin"),
        "service": auth_headers("service", service="tests", scopes=SERVICE_SCOPES),
    }


async def _ok(response: httpx.Response, *expected: int) -> Any:
    assert response.status_code in expected, response.text
    return response.json()


async def _delivered_order(http: httpx.AsyncClient, own: dict[str, str], staff: dict[str, str], a: str, p: str) -> Any:
    order_url = f"{service_url('order')}/api/orders"
    body = {"customer_id": a, "items": [{"product_id": p, "quantity": 1}]}
    placed = await _ok(await http.post(order_url, json=body, headers=own), 201)

    async def confirmed() -> bool:
        return bool((await http.get(f"{order_url}/{placed['id']}", headers=own)).json()["status"] == "confirmed")

    await eventually(confirmed, within=60, what="order confirmed")
    for status in ("processing", "shipped", "delivered"):
        await _ok(await http.post(f"{order_url}/{placed['id']}/status", json={"status": status}, headers=staff), 200)
    return placed


async def _cart_and_checkout(http: httpx.AsyncClient, own: dict[str, str], a: str, product: str) -> tuple[str, str]:
    checkout = service_url("checkout")
    cart = await _ok(await http.post(f"{checkout}/api/carts", json={"customer_id": a}, headers=own), 200, 201)
    line = {"product_id": product, "quantity": 1}
    await _ok(await http.post(f"{checkout}/api/carts/{cart['id']}/items", json=line, headers=own), 200)
    start = {
        "cart_id": cart["id"],
        "shipping_address": US_ADDRESS,
        "shipping_method_id": "standard",
        "payment_method": {"type": "card", "token": "tok_visa"},
    }
    session = await _ok(await http.post(f"{checkout}/api/checkout", json=start, headers=own), 201)
    return cart["id"], session["id"]


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[World]:
    async with httpx.AsyncClient(timeout=30) as http:
        a, b = (await create_customer())["id"], (await create_customer())["id"]
        product = (await create_product("12.00"))["id"]
        await set_stock(product, 10)
        headers = _headers(a, b)
        own, staff = headers["own"], headers["staff"]
        # The cart and checkout are made while the saga confirms the order (the slow part).
        placed, (cart, session) = await asyncio.gather(
            _delivered_order(http, own, staff, a, product), _cart_and_checkout(http, own, a, product)
        )
        item = int(placed["items"][0]["id"])
        body = {"order_id": placed["id"], "items": [{"order_item_id": item, "quantity": 1, "reason": "defective"}]}
        returned = await _ok(await http.post(f"{service_url('returns')}/api/returns", json=body, headers=own), 201)
        yield World(a, b, product, placed["id"], item, returned["id"], cart, session, headers)


@dataclass(frozen=True)
class Case:
    """One endpoint: the request, who is allowed, and what an allowed caller gets."""

    service: str
    method: str
    path: str  # formatted with the world's fields: {a}, {order}, ...
    allowed: frozenset[str]
    ok: tuple[int, ...] = (200,)
    body: Any = None
    other: int = 404  # customer B on A's resource
    headers: dict[str, str] = field(default_factory=dict)

    def expected(self, caller: str) -> set[int]:
        if caller in self.allowed:
            return set(self.ok)
        if caller == "none":
            return {401}
        if caller == "other" and "own" in self.allowed:
            return {self.other}
        return {403}


def case(service: str, method: str, path: str, allowed: str, ok: tuple[int, ...] = (200,), **kw: Any) -> Any:
    return pytest.param(Case(service, method, path, frozenset(allowed.split()), ok, **kw), id=f"{method} {path}")


PUBLIC = "none own other staff admin service"
OWN_STAFF = "own staff admin"
OWN_STAFF_SERVICE = "own staff admin service"
STAFF = "staff admin"
UNKNOWN_LINE = {"product_id": str(ANY), "quantity": 1}
PLACE_BODY = {"customer_id": "{a}", "items": [UNKNOWN_LINE]}

CASES = [
    # catalog: browsing is public, changes are the admin's
    case("catalog", "GET", "/api/products?limit=1", PUBLIC),
    case("catalog", "GET", "/api/products/{product}", PUBLIC),
    case("catalog", "POST", "/api/products/validate", PUBLIC, body={"product_ids": ["{product}"]}),
    case("catalog", "POST", "/api/products", "admin", (400,), body={}),
    case("catalog", "PATCH", "/api/products/{product}", "admin", (400,), body={"price": "-1"}),
    case("catalog", "DELETE", f"/api/products/{ANY}", "admin", (404,)),
    # customer: registration is public; a customer reaches only their own id
    case("customer", "POST", "/api/customers", PUBLIC, (400,), body={}),
    case("customer", "GET", "/api/customers/{a}", OWN_STAFF_SERVICE),
    case("customer", "PATCH", "/api/customers/{a}", "own admin", (400,), body={"first_name": ""}),
    case("customer", "GET", "/api/customers/{a}/addresses", OWN_STAFF_SERVICE),
    case("customer", "POST", "/api/customers/{a}/addresses", "own admin", (400,), body={}),
    case("customer", "GET", "/api/customers/{a}/stats", OWN_STAFF),
    # An unknown address, so that nothing changes: 404 for whoever may change or delete one of A's.
    case("customer", "PATCH", "/api/customers/{a}/addresses/9999999999", "own admin", (404,), body={}),
    case("customer", "DELETE", "/api/customers/{a}/addresses/9999999999", OWN_STAFF, (404,)),
    # An unknown id, so that nobody is erased: 404 for whoever may erase (a customer: not their id).
    case("customer", "POST", f"/api/customers/{ANY}/erase", OWN_STAFF, (404,)),
    # checkout: guests shop with their cart token; a customer's cart and checkout need their token (a
    # service's is refused: the routes are public, so no scope would stop it)
    case("checkout", "POST", "/api/carts", PUBLIC, (201,)),
    case("checkout", "POST", "/api/carts", OWN_STAFF, (200,), body={"customer_id": "{a}"}, other=403),
    case("checkout", "GET", "/api/carts/{cart}", OWN_STAFF),
    case("checkout", "POST", "/api/carts/{cart}/items", OWN_STAFF, (422,), body=UNKNOWN_LINE),
    case("checkout", "GET", "/api/checkout/{checkout}", OWN_STAFF),
    # order: a customer places, reads, lists and cancels their own; staff moves orders; services read
    case("order", "POST", "/api/orders", "own admin", (422,), body=PLACE_BODY, other=403),
    case("order", "GET", "/api/orders/{order}", OWN_STAFF_SERVICE),
    case("order", "GET", "/api/orders?customer_id={a}", OWN_STAFF),
    case("order", "POST", "/api/orders/{order}/status", STAFF, (400,), body={"status": "bogus"}),
    case("order", "POST", "/api/orders/{order}/cancel", OWN_STAFF, (409,), body={}),
    # payment: the back office reads; refunds are the admin's
    case("payment", "GET", "/api/payments?order_id={order}", STAFF),
    case("payment", "GET", f"/api/payments/{ANY}", STAFF, (404,)),
    case("payment", "POST", f"/api/payments/{ANY}/refund", "admin", (400,), body={}, headers={"Idempotency-Key": "k"}),
    # warehouse: staff reads stock and reservations; the admin sets stock
    case("warehouse", "GET", "/api/inventory/{product}", STAFF),
    case("warehouse", "PUT", "/api/inventory/{product}", "admin", (400,), body={"quantity": -1}),
    case("warehouse", "GET", "/api/reservations?order_id={order}", STAFF),
    # returns: a customer requests and reads their own; staff decides
    case(
        "returns",
        "POST",
        "/api/returns",
        OWN_STAFF,
        (409,),
        body={"order_id": "{order}", "items": [{"order_item_id": "{item}", "quantity": 1, "reason": "defective"}]},
        other=422,
    ),
    case("returns", "GET", "/api/returns/{return_id}", OWN_STAFF),
    case("returns", "GET", "/api/returns?customer_id={a}", OWN_STAFF),
    case("returns", "POST", "/api/returns/{return_id}/approve", STAFF, (400,), body={"refund_tax": "x"}),
    case("returns", "POST", "/api/returns/{return_id}/reject", STAFF, (400,), body={}),
    case("returns", "POST", "/api/returns/{return_id}/receive", STAFF, (400,), body={}),
    case("returns", "POST", "/api/returns/{return_id}/retry-refund", STAFF, (409,), body={}),
    # analytics: the back office
    case("analytics", "GET", "/api/analytics/sales/daily", STAFF),
    case("analytics", "GET", "/api/analytics/products/top", STAFF),
    case("analytics", "GET", "/api/analytics/products/{product}", STAFF),
]


def _fill(value: Any, world: World) -> Any:
    fields = {k: v for k, v in vars(world).items() if k != "headers"}
    if isinstance(value, str):
        filled = value.format(**fields)
        return int(filled) if value == "{item}" else filled
    if isinstance(value, list):
        return [_fill(v, world) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, world) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.mark.parametrize("endpoint", CASES)
async def test_each_caller_gets_the_expected_status(endpoint: Case, world: World, http: httpx.AsyncClient) -> None:
    url = service_url(endpoint.service) + _fill(endpoint.path, world)
    body = _fill(endpoint.body, world)

    async def call(caller: str) -> tuple[str, int, str]:
        headers = {**world.headers[caller], **endpoint.headers}
        response = await http.request(endpoint.method, url, json=body, headers=headers)
        return caller, response.status_code, response.text[:160]

    # All callers at once: no request of the matrix changes anything (see the module doc).
    answers = await asyncio.gather(*(call(caller) for caller in CALLERS))
    wrong = {c: (status, text) for c, status, text in answers if status not in endpoint.expected(c)}
    expected = {c: sorted(endpoint.expected(c)) for c in CALLERS}
    assert not wrong, f"{endpoint.method} {endpoint.path}: expected {expected}, got {wrong}"


async def test_listings_show_a_customer_only_their_own_rows(world: World, http: httpx.AsyncClient) -> None:
    returns, orders = service_url("returns"), service_url("order")
    mine, theirs, everyone = await asyncio.gather(
        http.get(f"{returns}/api/returns", headers=world.headers["own"]),
        http.get(f"{returns}/api/returns?order_id={world.order}", headers=world.headers["other"]),
        http.get(f"{orders}/api/orders?customer_id={world.a}", headers=world.headers["own"]),
    )
    assert [r["id"] for r in (await _ok(mine, 200))["items"]] == [world.return_id]
    assert (await _ok(theirs, 200))["items"] == []  # another customer's order: filtered to nothing of theirs
    assert [o["id"] for o in (await _ok(everyone, 200))["items"]] == [world.order]
