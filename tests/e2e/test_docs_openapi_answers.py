"""The main journey's real answers, checked against each service's published OpenAPI document.

A team calling the APIs for the first time reads `/schema/openapi.json`; the fuzz test
(tests/integration/test_openapi_fuzz.py) checks random requests, which rarely get past a 4xx: a confirmed
order, a captured payment, a completed return and their projections are never its answers. Here the
README's path is walked with the roles it names (an admin's products and stock, a registered customer's cart,
checkout, order and return, staff moving the order and deciding the return), plus a direct order with an
Idempotency-Key, a cancellation, a refund by hand, paging and a few refusals; every request body is checked
against the operation's request schema and every answer against the schema of its status code, which must
be one the operation documents.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema_rs
import pytest

from apps.common.topology import SERVICES
from tests.support.http import auth_headers, service_url
from tests.support.orders import eventually

pytestmark = pytest.mark.usefixtures("stack")


@dataclass
class Spec:
    """One service's OpenAPI document and the validators built from it."""

    document: dict[str, Any]
    validators: dict[str, Any] = field(default_factory=dict)

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        # A literal segment wins over a parameter: /products/top is not /products/{product_id}.
        for template, item in sorted(self.document["paths"].items(), key=lambda pair: pair[0].count("{")):
            if method.lower() in item and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
                return template, item[method.lower()]
        return None

    def problems(self, where: str, schema: dict[str, Any], instance: Any) -> list[str]:
        key = repr(schema)
        if key not in self.validators:
            rooted = {**schema, "components": self.document.get("components", {})}
            self.validators[key] = jsonschema_rs.validator_for(rooted, validate_formats=True)
        return [
            f"{where}: {error.message} at {list(error.instance_path)}"
            for error in self.validators[key].iter_errors(instance)
        ]


@dataclass
class Journey:
    """Every call goes through :meth:`call`, which checks it against the service's document."""

    http: httpx.AsyncClient
    specs: dict[str, Spec] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    covered: set[str] = field(default_factory=set)

    async def spec(self, service: str) -> Spec:
        if service not in self.specs:
            response = await self.http.get(f"{service_url(service)}/schema/openapi.json")
            assert response.status_code == 200, response.text
            self.specs[service] = Spec(response.json())
        return self.specs[service]

    async def call(
        self,
        auth: dict[str, str] | None,
        method: str,
        service: str,
        path: str,
        json: Any = None,
        expect: int = 200,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """``method path`` on ``service`` as ``auth``'s bearer (None: no token), expecting ``expect``."""
        response = await self.http.request(
            method,
            f"{service_url(service)}{path}",
            json=json,
            params=params,
            headers={**(auth or {}), **(headers or {})},
        )
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        spec = await self.spec(service)
        found = spec.operation(method, path)
        where = f"{service} {method} {path} -> {response.status_code}"
        if found is None:
            self.problems.append(f"{where}: no such operation in the document")
            return response.json() if response.content else None
        template, operation = found
        self.covered.add(f"{service} {method} {template}")
        body_schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if json is not None and body_schema is not None and expect < 400:  # a refusal's body is bad on purpose
            self.problems += spec.problems(f"{where} (request body)", body_schema, json)
        documented = operation["responses"].get(str(response.status_code))
        if documented is None:
            self.problems.append(f"{where}: status not documented ({sorted(operation['responses'])})")
            return response.json() if response.content else None
        schema = documented.get("content", {}).get("application/json", {}).get("schema")
        if schema is not None:
            self.problems += spec.problems(where, schema, response.json())
        return response.json() if response.content else None

    async def until(
        self, what: str, service: str, path: str, auth: dict[str, str], done: Callable[[Any], bool], **params: Any
    ) -> None:
        """Poll ``GET path`` (an asynchronous step: the saga, the payment, a projection) until ``done``."""

        async def check() -> bool:
            response = await self.http.get(f"{service_url(service)}{path}", params=params, headers=auth)
            return response.status_code == 200 and done(response.json())

        await eventually(check, within=60, what=what)


@pytest.fixture
async def journey() -> AsyncIterator[Journey]:
    async with httpx.AsyncClient(timeout=30) as http:
        yield Journey(http)


# The operations a user of the README's walkthrough and API table meets; the test fails if one is skipped.
MAIN_JOURNEY = {
    "catalog POST /api/products",
    "catalog GET /api/products",
    "catalog GET /api/products/{product_id}",
    "warehouse PUT /api/inventory/{product_id}",
    "warehouse GET /api/inventory/{product_id}",
    "warehouse GET /api/reservations",
    "customer POST /api/customers",
    "customer GET /api/customers/{customer_id}",
    "customer POST /api/customers/{customer_id}/addresses",
    "customer GET /api/customers/{customer_id}/addresses",
    "customer GET /api/customers/{customer_id}/stats",
    "customer GET /api/customers/{customer_id}/access-log",
    "checkout POST /api/carts",
    "checkout GET /api/carts/{cart_id}",
    "checkout POST /api/carts/{cart_id}/items",
    "checkout PATCH /api/carts/{cart_id}/items/{item_id}",
    "checkout POST /api/checkout",
    "checkout GET /api/checkout/{checkout_id}",
    "checkout POST /api/checkout/{checkout_id}/complete",
    "order POST /api/orders",
    "order GET /api/orders/{order_id}",
    "order GET /api/orders",
    "order POST /api/orders/{order_id}/status",
    "order POST /api/orders/{order_id}/cancel",
    "payment GET /api/payments",
    "payment GET /api/payments/{payment_id}",
    "payment POST /api/payments/{payment_id}/refund",
    "returns POST /api/returns",
    "returns GET /api/returns/{return_id}",
    "returns GET /api/returns",
    "returns POST /api/returns/{return_id}/approve",
    "returns POST /api/returns/{return_id}/receive",
    "analytics GET /api/analytics/products/{product_id}",
    "analytics GET /api/analytics/sales/daily",
    "analytics GET /api/analytics/products/top",
}


async def test_the_main_journeys_answers_match_each_services_openapi(journey: Journey) -> None:
    j = journey
    admin, staff = auth_headers("admin"), auth_headers("staff")
    run = uuid.uuid4().hex[:12].upper()

    # An admin puts two products on sale and stocks them; anyone browses the catalog a page at a time.
    mug = await j.call(
        admin, "POST", "catalog", "/api/products", {"sku": f"M-{run}", "name": "Mug", "price": "12.50"}, 201
    )
    tea_body = {"sku": f"T-{run}", "name": "Tea", "price": "4.00", "currency": "USD", "description": "green"}
    tea = await j.call(admin, "POST", "catalog", "/api/products", tea_body, 201)
    for product in (mug, tea):
        await j.call(admin, "PUT", "warehouse", f"/api/inventory/{product['id']}", {"quantity": 10})
    await j.call(None, "GET", "catalog", f"/api/products/{mug['id']}")
    first = await j.call(None, "GET", "catalog", "/api/products", params={"limit": 1})
    await j.call(None, "GET", "catalog", "/api/products", params={"limit": 1, "cursor": first["next_cursor"]})

    # A customer registers, then acts with a token of their own.
    registration = {"email": f"doc-{run.lower()}@example.com", "first_name": "Ada", "last_name": "Lovelace"}
    cid = (await j.call(None, "POST", "customer", "/api/customers", registration, 201))["id"]
    me = auth_headers("customer", customer_id=cid)
    await j.call(me, "GET", "customer", f"/api/customers/{cid}")
    saved = {"type": "shipping", "address_line1": "1 Main St", "city": "Springfield", "country": "US"}
    address = await j.call(me, "POST", "customer", f"/api/customers/{cid}/addresses", saved, 201)
    await j.call(me, "GET", "customer", f"/api/customers/{cid}/addresses")

    # A cart, a checkout, paid with the sandbox's approving card.
    cart = await j.call(me, "POST", "checkout", "/api/carts", {"customer_id": cid}, 201)
    await j.call(me, "POST", "checkout", "/api/carts", {"customer_id": cid}, 200)  # the active one, again
    items = f"/api/carts/{cart['id']}/items"
    await j.call(me, "POST", "checkout", items, {"product_id": mug["id"], "quantity": 3})
    lines = await j.call(me, "POST", "checkout", items, {"product_id": tea["id"], "quantity": 1})
    mug_item = next(line["id"] for line in lines["items"] if line["product_id"] == mug["id"])
    await j.call(me, "PATCH", "checkout", f"{items}/{mug_item}", {"quantity": 2})
    await j.call(me, "GET", "checkout", f"/api/carts/{cart['id']}")
    card = {"type": "card", "token": "tok_visa"}
    body = {"cart_id": cart["id"], "customer_shipping_address_id": address["id"], "shipping_method_id": "standard"}
    session = await j.call(me, "POST", "checkout", "/api/checkout", {**body, "payment_method": card}, 201)
    await j.call(me, "GET", "checkout", f"/api/checkout/{session['id']}")
    key = {"Idempotency-Key": f"checkout-{session['id']}"}
    complete = f"/api/checkout/{session['id']}/complete"
    order_id = (await j.call(me, "POST", "checkout", complete, None, 202, headers=key))["order_id"]
    await j.call(me, "POST", "checkout", complete, None, 202, headers=key)

    await j.until("the order confirmed", "order", f"/api/orders/{order_id}", me, lambda o: o["status"] == "confirmed")
    placed = await j.call(me, "GET", "order", f"/api/orders/{order_id}")
    assert placed["payment_status"] == "authorized"
    await j.call(me, "GET", "order", "/api/orders", params={"customer_id": cid, "limit": 1})
    await j.call(staff, "GET", "warehouse", "/api/reservations", params={"order_id": order_id})

    # Staff ship and deliver it (the capture); the customer returns a mug; staff approve and receive it.
    for status in ("processing", "shipped", "delivered"):
        await j.call(staff, "POST", "order", f"/api/orders/{order_id}/status", {"status": status})
    captured = lambda p: p and p[0]["status"] == "captured"  # noqa: E731
    await j.until("the capture", "payment", "/api/payments", staff, captured, order_id=order_id)
    paid = await j.call(staff, "GET", "payment", "/api/payments", params={"order_id": order_id})
    mug_line = next(line["id"] for line in placed["items"] if line["product_id"] == mug["id"])
    asking = {"order_id": order_id, "items": [{"order_item_id": mug_line, "quantity": 1, "reason": "defective"}]}
    asked = await j.call(me, "POST", "returns", "/api/returns", asking, 201)
    await j.call(staff, "POST", "returns", f"/api/returns/{asked['id']}/approve", {})
    came = {"return_item_id": asked["items"][0]["id"], "quantity_received": 1, "condition": "new"}
    await j.call(staff, "POST", "returns", f"/api/returns/{asked['id']}/receive", {"items": [came]})
    completed = lambda r: r["status"] == "completed"  # noqa: E731
    await j.until("the return completed", "returns", f"/api/returns/{asked['id']}", me, completed)
    await j.call(me, "GET", "returns", f"/api/returns/{asked['id']}")
    await j.call(me, "GET", "returns", "/api/returns", params={"customer_id": cid})
    payment = f"/api/payments/{paid[0]['id']}"
    await j.call(staff, "GET", "payment", payment)
    goodwill = {"Idempotency-Key": f"goodwill-{run}"}
    await j.call(
        admin, "POST", "payment", f"{payment}/refund", {"amount": "1.00", "reason": "x"}, 201, headers=goodwill
    )

    # Stats and analytics once the refund is projected.
    stats = f"/api/customers/{cid}/stats"
    await j.until("the refund in the stats", "customer", stats, me, lambda s: s["returns_count"] == 1)
    await j.call(me, "GET", "customer", stats)
    await j.call(me, "GET", "customer", f"/api/customers/{cid}/access-log", params={"limit": 5})
    sold = f"/api/analytics/products/{mug['id']}"
    await j.until("the refund in analytics", "analytics", sold, staff, lambda rows: rows and rows[0]["units_returned"])
    await j.call(staff, "GET", "analytics", sold)
    await j.call(staff, "GET", "analytics", "/api/analytics/sales/daily", params={"currency": "USD"})
    await j.call(staff, "GET", "analytics", "/api/analytics/products/top", params={"limit": 3})
    await j.call(staff, "GET", "warehouse", f"/api/inventory/{mug['id']}")

    # A direct order with an Idempotency-Key (its repeat too), cancelled by the customer once confirmed.
    order = {"customer_id": cid, "items": [{"product_id": tea["id"], "quantity": 1}]}
    direct_key = {"Idempotency-Key": f"direct-{run}"}
    direct_id = (await j.call(me, "POST", "order", "/api/orders", order, 201, headers=direct_key))["id"]
    await j.call(me, "POST", "order", "/api/orders", order, 201, headers=direct_key)
    direct = f"/api/orders/{direct_id}"
    await j.until("the direct order confirmed", "order", direct, me, lambda o: o["status"] == "confirmed")
    await j.call(me, "POST", "order", f"{direct}/cancel", {"reason": "changed my mind"})

    # Refusals carry the shared error body, with the field at fault.
    none_of_it = {"customer_id": cid, "items": [{"product_id": tea["id"], "quantity": 0}]}
    await j.call(me, "POST", "order", "/api/orders", none_of_it, 400)
    await j.call(me, "POST", "order", f"{direct}/cancel", {}, 409)
    await j.call(me, "GET", "order", f"/api/orders/{uuid.uuid4()}", None, 404)
    await j.call(me, "POST", "checkout", items, {"product_id": tea["id"], "quantity": 1}, 409)  # converted
    fresh = await j.call(me, "POST", "checkout", "/api/carts", {"customer_id": cid}, 201)
    await j.call(
        me, "POST", "checkout", f"/api/carts/{fresh['id']}/items", {"product_id": str(uuid.uuid4()), "quantity": 1}, 422
    )

    # A token sent to a public route is verified; a guest cart wants its X-Guest-Token, a customer's cart a token.
    await j.call({"Authorization": "Bearer not-a-jwt"}, "GET", "catalog", "/api/products", None, 401)
    guest = await j.call(None, "POST", "checkout", "/api/carts", None, 201)
    await j.call(
        None, "POST", "checkout", f"/api/carts/{guest['id']}/items", {"product_id": tea["id"], "quantity": 1}, 403
    )
    await j.call(None, "GET", "checkout", f"/api/carts/{fresh['id']}", None, 401)

    assert j.problems == [], "answers that do not match the services' OpenAPI documents:\n" + "\n".join(j.problems)
    assert j.covered >= MAIN_JOURNEY, f"not walked: {sorted(MAIN_JOURNEY - j.covered)}"
    assert {spec.name for spec in SERVICES} == set(j.specs)
