"""An order's answer says why it is cancelled (``status_reason``): each way an order is cancelled today, driven
through the running stack (warehouse, payment sandbox, sweeper) or the API, answers its code, in the order's
answer and in the listing, and never the free text a person gave (N, session 34: only ``cancelled`` was shown,
the reason was in order_status_history alone)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from apps.order.app import create_app
from apps.order.checkout_orders import create_from_checkout
from apps.order.saga import Saga
from infra import jobs
from tests.support.db import fetch
from tests.support.http import auth_headers, create_customer, create_product, set_stock
from tests.support.orders import checkout_completed, eventually, order_engine

pytestmark = pytest.mark.usefixtures("stack")

SECRET = "my sister's wedding is off"  # a person's reason: recorded, never shown


@pytest.fixture
async def client() -> AsyncIterator[AsyncTestClient[Any]]:
    """The order API in-process; each request names its token (``as_``)."""
    async with AsyncTestClient(app=create_app()) as test_client:
        yield test_client


@pytest.fixture
async def engine(stack: None) -> AsyncIterator[AsyncEngine]:
    engine = order_engine()
    yield engine
    await engine.dispose()


def as_(role: str, customer: dict[str, Any] | None = None) -> dict[str, str]:
    return auth_headers(role, customer_id=customer["id"] if customer else None)


async def place(client: AsyncTestClient[Any], customer: dict[str, Any], quantity: int, on_hand: int) -> dict[str, Any]:
    """The customer's order of ``quantity`` units of a new product with ``on_hand`` in stock."""
    product = await create_product("6.00")
    await set_stock(product["id"], on_hand)
    body = {"customer_id": customer["id"], "items": [{"product_id": product["id"], "quantity": quantity}]}
    placed = await client.post("/api/orders", json=body, headers=as_("customer", customer))
    assert placed.status_code == 201, placed.text
    assert placed.json()["status_reason"] is None  # pending: nothing to explain yet
    return dict(placed.json())


async def decided(client: AsyncTestClient[Any], order_id: str, status: str) -> dict[str, Any]:
    """The order (read by staff) once its saga moved it to ``status``."""
    seen: dict[str, Any] = {}

    async def moved() -> bool:
        answer = await client.get(f"/api/orders/{order_id}", headers=as_("staff"))
        seen.update(answer.json())
        return bool(seen["status"] == status)

    await eventually(moved, within=90, what=f"order {order_id} {status}")
    return seen


async def listed(client: AsyncTestClient[Any], customer_id: str) -> dict[str, str | None]:
    """The customer's orders in the listing (read by staff): id -> status_reason."""
    page = await client.get("/api/orders", params={"customer_id": customer_id}, headers=as_("staff"))
    assert page.status_code == 200, page.text
    return {o["id"]: o["status_reason"] for o in page.json()["items"]}


async def test_an_order_the_warehouse_cannot_fill_answers_out_of_stock(client: AsyncTestClient[Any]) -> None:
    customer = await create_customer()
    order = await place(client, customer, quantity=3, on_hand=1)
    cancelled = await decided(client, order["id"], "cancelled")
    assert cancelled["status_reason"] == "out_of_stock"
    own = await client.get(f"/api/orders/{order['id']}", headers=as_("customer", customer))
    assert own.json()["status_reason"] == "out_of_stock", "the customer reads it too"
    assert await listed(client, customer["id"]) == {order["id"]: "out_of_stock"}


async def test_a_declined_card_answers_payment_declined(client: AsyncTestClient[Any], engine: AsyncEngine) -> None:
    """The sandbox's refusing card through the live saga: reserved, payment asked, declined, cancelled."""
    product = await create_product("4.00")
    await set_stock(product["id"], 5)
    event = checkout_completed("tok_chargeDeclined", guest=False, product_id=uuid.UUID(product["id"]))
    async with async_sessionmaker(engine)() as session, session.begin():
        await create_from_checkout(session, event)
    cancelled = await decided(client, str(event.order_id), "cancelled")
    assert (cancelled["status_reason"], cancelled["payment_status"]) == ("payment_declined", "declined")
    assert await listed(client, event.customer_id) == {str(event.order_id): "payment_declined"}


async def test_a_step_past_its_deadline_answers_timeout(client: AsyncTestClient[Any], engine: AsyncEngine) -> None:
    """The running order-sweeper cancels an order whose payment step's deadline passed."""
    event = checkout_completed()  # a product nobody stocks
    async with async_sessionmaker(engine)() as session, session.begin():
        await create_from_checkout(session, event)
        held = await Saga(session).hold(event.order_id)
        assert held is not None and held.saga is not None
        held.saga.step = "payment"
        held.saga.deadline_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    cancelled = await decided(client, str(event.order_id), "cancelled")
    assert cancelled["status_reason"] == "timeout"


async def test_the_customers_cancellation_answers_cancelled_by_customer(client: AsyncTestClient[Any]) -> None:
    customer = await create_customer()
    order = await place(client, customer, quantity=1, on_hand=5)
    assert (await decided(client, order["id"], "confirmed"))["status_reason"] is None
    answer = await client.post(
        f"/api/orders/{order['id']}/cancel", json={"reason": SECRET}, headers=as_("customer", customer)
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status_reason"] == "cancelled_by_customer"
    assert "wedding" not in answer.text
    read = await client.get(f"/api/orders/{order['id']}", headers=as_("customer", customer))
    assert read.json()["status_reason"] == "cancelled_by_customer" and "wedding" not in read.text
    assert await listed(client, customer["id"]) == {order["id"]: "cancelled_by_customer"}
    history = await fetch(
        "order",
        "SELECT reason, changed_by, metadata->>'role' AS role FROM order_status_history "
        "WHERE order_id = $1 AND status_to = 'cancelled'",
        uuid.UUID(order["id"]),
    )
    assert [tuple(h) for h in history] == [(SECRET, "order-service", "customer")], "recorded as before, and by whom"


@pytest.mark.parametrize(
    ("role", "route"),
    [("staff", "status"), ("staff", "cancel"), ("admin", "status")],
)
async def test_the_back_offices_cancellation_answers_cancelled_by_staff(
    client: AsyncTestClient[Any], role: str, route: str
) -> None:
    customer = await create_customer()
    order = await place(client, customer, quantity=1, on_hand=5)
    await decided(client, order["id"], "confirmed")
    url = f"/api/orders/{order['id']}/{route}"
    body = {"status": "cancelled", "reason": SECRET} if route == "status" else {"reason": SECRET}
    answer = await client.post(url, json=body, headers=as_(role))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status_reason"] == "cancelled_by_staff" and "wedding" not in answer.text
    own = await client.get(f"/api/orders/{order['id']}", headers=as_("customer", customer))
    assert own.json()["status_reason"] == "cancelled_by_staff" and "wedding" not in own.text
    assert await listed(client, customer["id"]) == {order["id"]: "cancelled_by_staff"}


async def test_a_cancellation_recorded_without_a_role_answers_requested(client: AsyncTestClient[Any]) -> None:
    """History rows written before the API recorded the caller's role say only that someone asked."""
    customer = await create_customer()
    order = await place(client, customer, quantity=1, on_hand=5)
    await decided(client, order["id"], "confirmed")
    await client.post(f"/api/orders/{order['id']}/cancel", headers=as_("customer", customer))
    await fetch(
        "order",
        "UPDATE order_status_history SET metadata = '{}' WHERE order_id = $1 AND status_to = 'cancelled'",
        uuid.UUID(order["id"]),
    )
    read = await client.get(f"/api/orders/{order['id']}", headers=as_("customer", customer))
    assert read.json()["status_reason"] == "requested"
    assert await listed(client, customer["id"]) == {order["id"]: "requested"}


async def test_only_a_cancelled_order_has_a_reason_in_a_mixed_listing(client: AsyncTestClient[Any]) -> None:
    """Each order of a page gets its own cancelling row (the lateral read is per order, not per page)."""
    customer = await create_customer()
    short = await place(client, customer, quantity=4, on_hand=0)
    kept = await place(client, customer, quantity=1, on_hand=5)
    dropped = await place(client, customer, quantity=1, on_hand=5)
    await decided(client, short["id"], "cancelled")
    await decided(client, kept["id"], "confirmed")
    await decided(client, dropped["id"], "confirmed")
    await client.post(f"/api/orders/{dropped['id']}/cancel", headers=as_("customer", customer))
    body = {"status": "processing", "reason": "ops"}
    shipped = await client.post(f"/api/orders/{kept['id']}/status", json=body, headers=as_("staff"))
    assert shipped.json()["status_reason"] is None
    assert await listed(client, customer["id"]) == {
        short["id"]: "out_of_stock",
        kept["id"]: None,
        dropped["id"]: "cancelled_by_customer",
    }


OLD_ORDER = """
INSERT INTO orders (id, order_number, customer_id, status, currency, subtotal, total_amount, payment_status,
                    source_service, created_at, updated_at, cancelled_at)
VALUES ($1, $2, $3, 'cancelled', 'USD', 20, 20, 'pending', 'order-service', $4, $4, $4)
"""
OLD_HISTORY = """
INSERT INTO order_status_history (order_id, status_from, status_to, changed_by, reason, metadata, created_at)
VALUES ($1, NULL, 'pending', 'order-service', 'awaiting stock', '{}', $2),
       ($1, 'pending', 'cancelled', $3, $4, $5::jsonb, $2)
"""


@pytest.mark.parametrize(
    ("changed_by", "reason", "metadata", "code"),
    [
        ("order-saga", "out_of_stock", "{}", "out_of_stock"),
        ("order-service", SECRET, '{"role": "customer"}', "cancelled_by_customer"),
    ],
)
async def test_an_archived_order_answers_its_reason_from_the_archived_history(
    client: AsyncTestClient[Any], changed_by: str, reason: str, metadata: str, code: str
) -> None:
    """Past two years the order and its history move to the archive (infra/archive.py): same answer."""
    order_id, at = uuid.uuid4(), dt.datetime.now(dt.UTC) - dt.timedelta(days=800)
    customer = str(uuid.uuid4())
    await fetch("order", OLD_ORDER, order_id, f"ORD-WHY-{order_id.hex[:10]}", customer, at)
    await fetch("order", OLD_HISTORY, order_id, at, changed_by, reason, metadata)
    before = await client.get(f"/api/orders/{order_id}", headers=as_("staff"))
    assert before.json()["status_reason"] == code
    await jobs.order_archive(dt.datetime.now(dt.UTC))
    assert await fetch("order", "SELECT 1 FROM orders WHERE id = $1", order_id) == []
    after = await client.get(f"/api/orders/{order_id}", headers=as_("staff"))
    assert after.status_code == 200 and after.json() == before.json()


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


async def test_status_changed_at_is_when_the_order_entered_its_status(
    client: AsyncTestClient[Any], engine: AsyncEngine
) -> None:
    """Placed (created_at), confirmed by the saga's batch statement, moved by staff, a refused capture noted
    (not a status change: the time stays), cancelled (cancelled_at); the answer and a later read agree."""
    customer = await create_customer()
    placed = await place(client, customer, quantity=1, on_hand=5)
    assert placed["status_changed_at"] == placed["created_at"]
    confirmed = await decided(client, placed["id"], "confirmed")
    assert confirmed["status_changed_at"] == confirmed["updated_at"]
    assert at(confirmed["status_changed_at"]) > at(placed["created_at"])
    url = f"/api/orders/{placed['id']}"
    moved = (await client.post(f"{url}/status", json={"status": "processing"}, headers=as_("staff"))).json()
    assert moved["status_changed_at"] == moved["updated_at"]
    assert at(moved["status_changed_at"]) > at(confirmed["status_changed_at"])
    async with async_sessionmaker(engine)() as session, session.begin():
        await Saga(session).payment_failed(uuid.UUID(placed["id"]), "capture_failed", "card_declined", uuid.uuid4())
    noted = (await client.get(url, headers=as_("staff"))).json()
    assert (noted["payment_status"], noted["status_changed_at"]) == ("capture_failed", moved["status_changed_at"])
    assert at(noted["updated_at"]) > at(moved["updated_at"]), "the note moved updated_at, not the status' time"
    cancelled = (await client.post(f"{url}/cancel", headers=as_("staff"))).json()
    assert cancelled["status_changed_at"] == cancelled["cancelled_at"]
    assert at(cancelled["cancelled_at"]) > at(noted["updated_at"])
    assert (await client.get(url, headers=as_("customer", customer))).json()["status_changed_at"] == (
        cancelled["cancelled_at"]
    )
    listed_order = await client.get("/api/orders", params={"customer_id": customer["id"]}, headers=as_("staff"))
    assert [o["status_changed_at"] for o in listed_order.json()["items"]] == [cancelled["cancelled_at"]]
