"""Another customer's order, return or cart answers exactly as an unknown id, by the same statements.

A customer naming another customer's row gets a 404 (a 422 for a cart named in a body) as if it did not
exist; but the row was read first and the owner checked after, so the answer took the reads of a found row
(an order's items and saga, a return's items) and came ~0.65-1 ms later than an unknown id's, and another's
cached cart ~1 ms sooner (S, sessions 29-30: paired timings over the running stack). The owner is now in
the read's statement (apps/common/auth.py ``read_owner``). A duration would be a flaky test: this asserts
the code path, the statements each request sends, and the answers byte for byte (status, body, headers).
The apps run in-process (the code in the tree) against the stack's databases and Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from apps.checkout.app import create_app as checkout_app
from apps.common.service_client import ServiceClient
from apps.order.app import create_app as order_app
from apps.returns.app import create_app as returns_app
from tests.support.checkout import add, checkout_body, guest_cart
from tests.support.db import connect
from tests.support.http import auth_headers, authorized, create_customer, create_product, set_stock

pytestmark = pytest.mark.usefixtures("stack")

Client = AsyncTestClient[Any]
# Differ between any two answers, whatever they name: when, and a write's place in the caller's rate limit.
# x-request-id is a fresh UUID per answer (05e38cf): it names the request, never the resource asked for.
_VOLATILE_HEADERS = frozenset({"date", "ratelimit-remaining", "ratelimit-reset", "x-request-id"})


# The apps' own background task (apps/common/read_routing.py) reads both ends every 2 s: not a request's.
_BACKGROUND_TASKS = frozenset({"read-replica-monitor"})


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every SQL statement the in-process engines send for requests, in order."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        task = asyncio.current_task()
        if task is None or task.get_name() not in _BACKGROUND_TASKS:
            sent.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    yield sent
    event.remove(Engine, "before_cursor_execute", record)


async def _answer(
    client: Client, statements: list[str], method: str, path: str, **kwargs: Any
) -> tuple[tuple[int, str, list[tuple[str, str]]], list[str]]:
    """What a caller sees and what the server read to answer it."""
    statements.clear()
    response = await client.request(method, path, **kwargs)
    sent = list(statements)
    return _seen(response, path), sent


def _seen(response: httpx.Response, path: str) -> tuple[int, str, list[tuple[str, str]]]:
    named = path.rstrip("/").split("/")
    ids = [part for part in named if _is_uuid(part)]
    body = response.text
    for ident in ids:
        body = body.replace(ident, "<id>")
    headers = sorted((k, v) for k, v in response.headers.items() if k.lower() not in _VOLATILE_HEADERS)
    return response.status_code, body, headers


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _filters_by_owner(statement: str) -> bool:
    _, _, where = statement.partition("WHERE")
    return "customer_id" in where


def _unknown_like(real: str) -> str:
    """An id of the same shape (a UUIDv7 of the same millisecond) that names nothing."""
    return real[:19] + str(uuid.uuid4())[19:]


async def _same_answers(
    client: Client, statements: list[str], method: str, theirs: str, unknown: str, **kwargs: Any
) -> list[str]:
    seen_theirs, sent_theirs = await _answer(client, statements, method, theirs, **kwargs)
    seen_unknown, sent_unknown = await _answer(client, statements, method, unknown, **kwargs)
    assert seen_theirs[0] in (404, 422), seen_theirs
    assert seen_theirs == seen_unknown
    assert sent_theirs == sent_unknown
    return sent_theirs


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path another service is asked for (apps/common/service_client.py), in order."""
    paths: list[str] = []
    real = ServiceClient.get

    async def get(self: ServiceClient, path: str) -> tuple[int, bytes]:
        paths.append(path)
        return await real(self, path)

    monkeypatch.setattr(ServiceClient, "get", get)
    return paths


@pytest.fixture
async def orders() -> AsyncIterator[Client]:
    async with authorized(AsyncTestClient(app=order_app())) as client:
        yield client


@pytest.fixture
async def returns(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    monkeypatch.setenv("SERVICE_NAME", "returns")
    async with AsyncTestClient(app=returns_app()) as client:
        yield client


@pytest.fixture
async def checkout() -> AsyncIterator[Client]:
    async with AsyncTestClient(app=checkout_app()) as client:
        yield client


async def _customer_cart(
    checkout: Client, own: dict[str, str], customer_id: str, product: dict[str, Any], quantity: int
) -> str:
    """A cart of the customer's own (``own``: their headers) holding ``quantity`` of ``product``; its id."""
    made = await checkout.post("/api/carts", json={"customer_id": customer_id}, headers=own)
    assert made.status_code in (200, 201), made.text
    cart: dict[str, Any] = made.json()
    await add(checkout, cart, own, product, quantity)
    return str(cart["id"])


async def test_another_customers_order_is_read_as_an_unknown_id(orders: Client, statements: list[str]) -> None:
    victim, attacker, product = await create_customer(), await create_customer(), await create_product("4.00")
    body = {"customer_id": victim["id"], "items": [{"product_id": product["id"], "quantity": 1}]}
    placed = await orders.post("/api/orders", json=body)  # the admin's token (authorized)
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    as_attacker: dict[str, Any] = {"headers": auth_headers("customer", customer_id=attacker["id"])}

    sent = await _same_answers(
        orders, statements, "GET", f"/api/orders/{order_id}", f"/api/orders/{_unknown_like(order_id)}", **as_attacker
    )
    assert sent and all(_filters_by_owner(statement) for statement in sent), sent
    await _same_answers(
        orders,
        statements,
        "POST",
        f"/api/orders/{order_id}/cancel",
        f"/api/orders/{_unknown_like(order_id)}/cancel",
        **as_attacker,
    )
    # A service asking for a customer (the returns service, before a return) names them: the same.
    as_returns: dict[str, Any] = {"headers": auth_headers("service", service="returns", scopes=("order:read",))}
    asked = f"?customer_id={attacker['id']}"
    await _same_answers(
        orders,
        statements,
        "GET",
        f"/api/orders/{order_id}{asked}",
        f"/api/orders/{_unknown_like(order_id)}{asked}",
        **as_returns,
    )
    theirs = await orders.get(f"/api/orders/{order_id}?customer_id={victim['id']}", **as_returns)
    assert theirs.status_code == 200, theirs.text
    # The owner reads it as before (and staff, unfiltered).
    for headers in (auth_headers("customer", customer_id=victim["id"]), auth_headers("staff")):
        own = await orders.get(f"/api/orders/{order_id}", headers=headers)
        assert own.status_code == 200, own.text
        assert own.json()["items"][0]["product_id"] == product["id"]


async def test_another_customers_return_is_read_as_an_unknown_id(returns: Client, statements: list[str]) -> None:
    """The return row is written directly (a rejected return: nothing acts on it), its owner made up."""
    victim, attacker, return_id = str(uuid.uuid4()), str(uuid.uuid4()), uuid.uuid4()
    conn = await connect("returns")
    try:
        await conn.execute(
            "INSERT INTO return_requests (id, return_number, order_id, customer_id, status, reason, currency)"
            " VALUES ($1, $2, $3, $4, 'rejected', 'other', 'USD')",
            return_id,
            f"RET-S30-{return_id.hex[:12]}",
            uuid.uuid4(),
            victim,
        )
        await conn.execute(
            "INSERT INTO return_items (return_request_id, order_item_id, product_id, product_sku, product_name,"
            " quantity_returned, unit_price, refund_amount) VALUES ($1, 1, $2, 'S30-SKU', 'a mug', 1, 1, 1)",
            return_id,
            uuid.uuid4(),
        )
        path = f"/api/returns/{return_id}"
        sent = await _same_answers(
            returns,
            statements,
            "GET",
            path,
            f"/api/returns/{_unknown_like(str(return_id))}",
            headers=auth_headers("customer", customer_id=attacker),
        )
        assert sent and all(_filters_by_owner(statement) for statement in sent), sent
        own = await returns.get(path, headers=auth_headers("customer", customer_id=victim))
        assert own.status_code == 200, own.text
        assert [item["product_sku"] for item in own.json()["items"]] == ["S30-SKU"]
    finally:
        await conn.execute("DELETE FROM return_items WHERE return_request_id = $1", return_id)
        await conn.execute("DELETE FROM return_requests WHERE id = $1", return_id)
        await conn.close()


async def test_another_customers_cart_is_read_as_an_unknown_id(checkout: Client, statements: list[str]) -> None:
    """Even while the cart's view is in Redis (its owner just read it), which answered ~1 ms sooner."""
    victim, attacker, product = await create_customer(), await create_customer(), await create_product("2.50")
    await set_stock(product["id"], 5)
    own = auth_headers("customer", customer_id=victim["id"])
    cart_id = await _customer_cart(checkout, own, victim["id"], product, 1)
    as_attacker: dict[str, Any] = {"headers": auth_headers("customer", customer_id=attacker["id"])}
    unknown = _unknown_like(cart_id)

    for method, suffix, kwargs in (
        ("GET", "", {}),
        ("POST", "/items", {"json": {"product_id": product["id"], "quantity": 1}}),
        ("DELETE", "/items/1", {}),
    ):
        assert (await checkout.get(f"/api/carts/{cart_id}", headers=own)).status_code == 200  # cached now
        sent = await _same_answers(
            checkout,
            statements,
            method,
            f"/api/carts/{cart_id}{suffix}",
            f"/api/carts/{unknown}{suffix}",
            **as_attacker,
            **kwargs,
        )
        assert sent and _filters_by_owner(sent[0]), sent

    # Named in a checkout's body: the same 422 naming cart_id, by the same statements.
    statements.clear()
    theirs = await checkout.post("/api/checkout", json=checkout_body(cart_id), **as_attacker)
    sent_theirs = list(statements)
    statements.clear()
    missing = await checkout.post("/api/checkout", json=checkout_body(unknown), **as_attacker)
    assert theirs.status_code == 422, theirs.text
    assert _seen(theirs, "") == _seen(missing, "")
    assert [e["key"] for e in theirs.json()["extra"]] == ["cart_id"]
    assert sent_theirs == list(statements)

    mine = await checkout.get(f"/api/carts/{cart_id}", headers=own)
    assert mine.status_code == 200 and [i["product_id"] for i in mine.json()["items"]] == [product["id"]], mine.text


async def test_a_return_of_another_customers_order_is_refused_as_one_of_an_unknown_order(
    returns: Client, statements: list[str], asked: list[str]
) -> None:
    """Another customer's delivered order, in the returns projection, was refused from it ~20 ms before an
    unknown order's question to the order API came back; another's undelivered one was fetched from the
    order API and written to the projection for the asker. The snapshot is written directly: only the
    refusals are asked for, nothing acts on it."""
    victim, attacker, order_id = str(uuid.uuid4()), str(uuid.uuid4()), uuid.uuid4()
    line = {"order_item_id": 7, "product_id": str(uuid.uuid4()), "sku": "S30", "name": "a mug", "quantity": 2}
    conn = await connect("returns")
    try:
        await conn.execute(
            "INSERT INTO order_snapshots (order_id, customer_id, currency, status, delivered_at, subtotal,"
            " discount_amount, tax_amount, shipping_amount, lines, paid, status_source)"
            " VALUES ($1, $2, 'USD', 'delivered', now(), 10, 0, 0, 0, $3::jsonb, true, 'events')",
            order_id,
            victim,
            json.dumps([{**line, "unit_price": "5.00"}]),
        )
        body = {"items": [{"order_item_id": 7, "quantity": 1, "reason": "other"}]}
        as_attacker = auth_headers("customer", customer_id=attacker)
        answers = []
        for named in (str(order_id), _unknown_like(str(order_id))):
            statements.clear()
            asked.clear()
            response = await returns.post("/api/returns", json={**body, "order_id": named}, headers=as_attacker)
            answers.append((_seen(response, ""), list(statements), [path.replace(named, "<id>") for path in asked]))
        assert answers[0][0][0] == 422, answers[0]
        assert answers[0] == answers[1]
        assert answers[0][2] == [f"/api/orders/<id>?customer_id={attacker}"]  # the order API filters it too
        assert all(_filters_by_owner(statement) for statement in answers[0][1] if "order_snapshots" in statement)
        rows = await conn.fetch("SELECT order_id FROM return_requests WHERE order_id = $1", order_id)
        assert rows == []
    finally:
        await conn.execute("DELETE FROM order_snapshots WHERE order_id = $1", order_id)
        await conn.close()


async def test_another_customers_checkout_session_is_read_as_an_unknown_id(
    checkout: Client, statements: list[str]
) -> None:
    """One statement either way before too (no time difference measured: +0.04 +- 0.17 ms), but the row was
    read and checked after, as the others were; a guest's session still opens with its token."""
    victim, attacker, product = await create_customer(), await create_customer(), await create_product("3.25")
    own = auth_headers("customer", customer_id=victim["id"])
    cart_id = await _customer_cart(checkout, own, victim["id"], product, 2)
    started = await checkout.post("/api/checkout", json=checkout_body(cart_id), headers=own)
    assert started.status_code == 201, started.text
    session_id = started.json()["id"]
    unknown = _unknown_like(session_id)
    as_attacker: dict[str, Any] = {"headers": auth_headers("customer", customer_id=attacker["id"])}

    sent = await _same_answers(
        checkout, statements, "GET", f"/api/checkout/{session_id}", f"/api/checkout/{unknown}", **as_attacker
    )
    assert sent and _filters_by_owner(sent[0]), sent
    keyed = {"headers": {**as_attacker["headers"], "Idempotency-Key": str(uuid.uuid4())}}
    await _same_answers(
        checkout,
        statements,
        "POST",
        f"/api/checkout/{session_id}/complete",
        f"/api/checkout/{unknown}/complete",
        **keyed,
    )
    mine = await checkout.get(f"/api/checkout/{session_id}", headers=own)
    assert mine.status_code == 200, mine.text

    guest, opens = await guest_cart(checkout)
    await add(checkout, guest, opens, product, 1)
    started = await checkout.post("/api/checkout", json=checkout_body(guest["id"]), headers=opens)
    assert started.status_code == 201, started.text
    with_token = {**opens, **as_attacker["headers"]}  # a customer's token does not shut a guest's session
    seen = await checkout.get(f"/api/checkout/{started.json()['id']}", headers=with_token)
    assert seen.status_code == 200, seen.text
