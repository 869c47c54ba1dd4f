"""The order saga's handlers and its sweeper against the real order database (and the running sweeper).

The handlers are called as the order-saga consumer calls them, inside a transaction the test commits;
the deadline test leaves the running order-sweeper process to compensate.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from apps.checkout.events import CheckoutCompleted
from apps.order import saga_rows
from apps.order.checkout_orders import create_from_checkout
from apps.order.events import OrderConfirmed, OrderLine
from apps.order.saga import Saga
from apps.payment.events import OrderPaymentRequested
from apps.warehouse.events import InventoryReserved, ReservedItem
from tests.support.db import fetch
from tests.support.http import api_client, create_product, service_url, set_stock
from tests.support.orders import checkout_completed, eventually, order_engine

pytestmark = pytest.mark.usefixtures("stack")

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
async def engine(stack: None) -> AsyncIterator[AsyncEngine]:
    engine = order_engine()
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def events_of(order_id: uuid.UUID) -> list[tuple[str, Any]]:
    rows = await fetch(
        "order", "SELECT event_type, event_data FROM event_store WHERE aggregate_id = $1 ORDER BY created_at", order_id
    )
    return [(r["event_type"], r["event_data"]) for r in rows]


async def test_a_checkout_creates_one_pending_guest_order_however_often_it_arrives(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    event = checkout_completed()
    for expected in (True, False):
        async with sessions() as session, session.begin():
            assert await create_from_checkout(session, event) is expected
    order = (await fetch("order", "SELECT * FROM orders WHERE id = $1", event.order_id))[0]
    assert (order["status"], order["customer_id"], order["total_amount"]) == (
        "pending",
        event.customer_id,
        Decimal("9.00"),
    )
    assert '"is_guest": true' in order["metadata"]
    saga = (await fetch("order", "SELECT * FROM order_sagas WHERE order_id = $1", event.order_id))[0]
    assert (saga["checkout_id"], saga["step"], saga["payment_token"]) == (event.checkout_id, "reservation", "tok_visa")
    assert [kind for kind, _ in await events_of(event.order_id)][:1] == ["order.created"]


async def test_a_step_past_its_deadline_is_compensated_by_the_sweeper_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    event = checkout_completed()
    # Created, and (in the same transaction, so no warehouse answer can come first) as if the reservation
    # was answered and payment asked for long ago, with no answer since.
    async with sessions() as session, session.begin():
        await create_from_checkout(session, event)
        held = await Saga(session).hold(event.order_id)
        assert held is not None and held.saga is not None
        held.saga.step = "payment"
        held.saga.payment_requested_at = dt.datetime.now(dt.UTC)
        held.saga.deadline_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)

    async def cancelled() -> bool:
        rows = await fetch("order", "SELECT status FROM orders WHERE id = $1", event.order_id)
        return bool(rows[0]["status"] == "cancelled")

    await eventually(cancelled, within=30, what="the running order-sweeper compensated the order")
    history = await fetch(
        "order", "SELECT status_to, reason, changed_by FROM order_status_history WHERE order_id = $1 ORDER BY id",
        event.order_id,
    )  # fmt: skip
    assert [(h["status_to"], h["reason"], h["changed_by"]) for h in history][-1] == (
        "cancelled",
        "timeout",
        "order-saga",
    )
    saga_row = (await fetch("order", "SELECT * FROM order_sagas WHERE order_id = $1", event.order_id))[0]
    assert (saga_row["step"], saga_row["deadline_at"], saga_row["reason"]) == ("done", None, "timeout")

    # The late authorization: the cancel was asked for already, so nothing more is asked.
    async with sessions() as session, session.begin():
        await Saga(session).authorized(event.order_id, uuid.uuid4())
    kinds = [kind for kind, _ in await events_of(event.order_id)]
    assert kinds.count("order.cancelled") == 1 and kinds.count("order.payment_cancel_requested") == 1
    cancelled_event = next(data for kind, data in await events_of(event.order_id) if kind == "order.cancelled")
    assert json.loads(cancelled_event)["was_confirmed"] is False
    status = await fetch("order", "SELECT status, payment_status FROM orders WHERE id = $1", event.order_id)
    assert (status[0]["status"], status[0]["payment_status"]) == ("cancelled", "authorized")


async def test_answers_for_unknown_orders_or_left_steps_change_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await Saga(session).reservation_failed(uuid.uuid4(), "insufficient_stock")
        await Saga(session).authorized(uuid.uuid4(), uuid.uuid4())
    event = checkout_completed()
    # Never committed: the warehouse never hears of it, so nothing but this answer can move it.
    async with sessions() as session:
        await create_from_checkout(session, event)
        # A payment answer while the saga still waits on stock is not its step: no status change.
        await Saga(session).refused(event.order_id, "declined")
        held = await Saga(session).hold(event.order_id)
        assert held is not None and held.saga is not None
        assert (held.order.status, held.saga.step, held.saga.reason) == ("pending", "reservation", None)
        await session.rollback()


async def test_a_reservation_after_its_timeout_is_released(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The deadline passed before the warehouse answered: the saga cancels (timeout) as the sweeper does,
    here in the order's creating transaction, so the cancellation certainly comes first (the warehouse
    answers in well under a second, faster than a sweeper poll). The warehouse reads order.created then
    order.cancelled on the same partition, so it reserves and then releases, and the late
    inventory.reserved leaves the order cancelled."""
    product = await create_product("6.00")
    await set_stock(product["id"], 3)
    event = checkout_completed(product_id=uuid.UUID(product["id"]))
    async with sessions() as session, session.begin():
        await create_from_checkout(session, event)
        saga = Saga(session)
        held = await saga.hold(event.order_id)
        assert held is not None
        await saga.time_out(held)

    async def released() -> bool:
        async with api_client() as http:
            answer = await http.get(
                f"{service_url('warehouse')}/api/reservations", params={"order_id": str(event.order_id)}
            )
        body = answer.json()
        items = body if isinstance(body, list) else body.get("items", [])
        return bool(items) and items[0]["status"] == "released"

    await eventually(released, within=120, what="the late reservation released")
    async with api_client() as http:
        stock = (await http.get(f"{service_url('warehouse')}/api/inventory/{product['id']}")).json()
    assert (stock["on_hand"], stock["reserved"], stock["available"]) == (3, 0, 3)
    rows = await fetch("order", "SELECT status FROM orders WHERE id = $1", event.order_id)
    assert rows[0]["status"] == "cancelled"
    history = await fetch(
        "order", "SELECT status_to, reason FROM order_status_history WHERE order_id = $1 ORDER BY id", event.order_id
    )
    assert [(h["status_to"], h["reason"]) for h in history] == [
        ("pending", "checkout completed"),
        ("cancelled", "timeout"),
    ]
    kinds = [kind for kind, _ in await events_of(event.order_id)]
    # No payment was ever asked for, so none is cancelled.
    assert kinds == ["order.created", "order.cancelled"]


async def test_a_failed_payment_operation_is_noted_once_per_event(sessions: async_sessionmaker[AsyncSession]) -> None:
    event = checkout_completed()
    async with sessions() as session, session.begin():
        await create_from_checkout(session, event)
    failure, later = uuid.uuid4(), uuid.uuid4()
    # The same event twice (a replay after a rebuild empties the inbox), then another failure.
    for event_id, kind, reason in ((failure, "capture_failed", "expired"), (failure, "capture_failed", "expired"),
                                   (later, "void_failed", "processing_error")):  # fmt: skip
        async with sessions() as session, session.begin():
            await Saga(session).payment_failed(event.order_id, kind, reason, event_id)
        async with sessions() as session, session.begin():  # an unknown order is someone else's: ignored
            await Saga(session).payment_failed(uuid.uuid4(), kind, reason, uuid.uuid4())
    rows = await fetch(
        "order", "SELECT status_from, status_to, reason, changed_by, metadata FROM order_status_history "
        "WHERE order_id = $1 ORDER BY id", event.order_id,
    )  # fmt: skip
    # The warehouse may cancel the order (nobody stocks its product) meanwhile: a note keeps whichever status.
    notes = [r for r in rows if (r["reason"] or "").startswith(("capture_failed", "void_failed"))]
    assert [(r["reason"], r["changed_by"]) for r in notes] == [
        ("capture_failed: expired", "order-saga"),
        ("void_failed: processing_error", "order-saga"),
    ]
    assert all(r["status_from"] == r["status_to"] for r in notes)
    assert json.loads(notes[0]["metadata"]) == {"payment_status": "capture_failed", "event_id": str(failure)}
    order = await fetch("order", "SELECT payment_status FROM orders WHERE id = $1", event.order_id)
    assert order[0]["payment_status"] == "void_failed"


async def test_a_batch_of_reservations_confirms_orders_or_asks_for_their_payment_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """inventory.reserved as the saga's batch handler applies it (apps/order/saga_rows.py): without a card
    the order is confirmed, with one the payment is asked for; a second answer for an order in the same
    batch only fills its lines again; an answer for someone else's order changes nothing."""
    warehouse = uuid.uuid4()
    # The card's answer comes 5 s late (tok_delayed): the live payment path, which takes the payment request
    # from the outbox, cannot authorize and confirm the order before these checks read it.
    checkouts = {token: checkout_completed(token or "tok_delayed") for token in (None, "tok_delayed")}

    def answer(event: CheckoutCompleted) -> InventoryReserved:
        line = ReservedItem(product_id=event.lines[0].product_id, warehouse_id=warehouse, quantity=1)
        return InventoryReserved(order_id=event.order_id, reservation_id=reservation, items=[line], reserved_at=NOW)

    reservation, stranger = uuid.uuid4(), checkout_completed()
    # In the creating transaction, so the warehouse's own answer (nobody stocks the product) comes too late.
    async with sessions() as session, session.begin():
        for event in checkouts.values():
            await create_from_checkout(session, event)
        held = await Saga(session).hold(checkouts[None].order_id)
        assert held is not None and held.saga is not None
        held.saga.payment_token = None
        await session.flush()
        answers = [answer(event) for event in checkouts.values()]
        await saga_rows.reserved(session, [*answers, answer(stranger), *answers])
    for token, event in checkouts.items():
        order = (await fetch("order", "SELECT * FROM orders WHERE id = $1", event.order_id))[0]
        saga = (await fetch("order", "SELECT * FROM order_sagas WHERE order_id = $1", event.order_id))[0]
        items = await fetch("order", "SELECT * FROM order_items WHERE order_id = $1", event.order_id)
        assert [(i["reservation_id"], i["warehouse_id"]) for i in items] == [(reservation, warehouse)]
        rows = await fetch(
            "order", "SELECT event_type, event_data, event_version FROM event_store WHERE aggregate_id = $1 "
            "ORDER BY event_version", event.order_id,
        )  # fmt: skip
        if token is None:
            assert (order["status"], saga["step"], saga["deadline_at"], saga["payment_attempts"]) == (
                "confirmed", "done", None, 0,
            )  # fmt: skip
            kinds = [(r["event_type"], r["event_version"]) for r in rows]
            assert kinds == [("order.created", 1), ("order.confirmed", 2)]
            confirmed = msgspec.json.decode(rows[1]["event_data"], type=OrderConfirmed)
            assert confirmed == OrderConfirmed(
                order_id=event.order_id, order_number=order["order_number"], customer_id=event.customer_id,
                currency="USD", total_amount=Decimal("9.00"),
                items=[OrderLine(product_id=event.lines[0].product_id, sku="SAGA-T", quantity=1,
                                 unit_price=Decimal("4.00"), total_price=Decimal("4.00"))],
                payment_status=order["payment_status"], created_at=order["created_at"],
                confirmed_at=order["updated_at"],
            )  # fmt: skip
            history = await fetch(
                "order", "SELECT status_from, status_to, changed_by, reason FROM order_status_history "
                "WHERE order_id = $1 ORDER BY id", event.order_id,
            )  # fmt: skip
            assert [tuple(h.values()) for h in history][-1] == ("pending", "confirmed", "order-saga", "stock reserved")
        else:
            assert (order["status"], saga["step"], saga["payment_attempts"]) == ("pending", "payment", 1)
            assert saga["deadline_at"] > saga["payment_requested_at"] == saga["updated_at"]
            assert [(r["event_type"], r["event_version"]) for r in rows] == [
                ("order.created", 1), ("order.payment_requested", 2),
            ]  # fmt: skip
            asked = msgspec.json.decode(rows[1]["event_data"], type=OrderPaymentRequested)
            assert (asked.amount, asked.attempt, asked.payment_method.token) == (Decimal("9.00"), 1, "tok_delayed")
            assert (asked.customer_id, asked.requested_at) == (event.customer_id, saga["payment_requested_at"])
    assert await events_of(stranger.order_id) == []
