"""The saga's deadlines are the database's clock, the one the sweeper compares them with; the placing
process's clock still dates the orders, and is measured (the sweeper's order_saga_writer_clock_offset_seconds,
alert WriterClockSkewed).

The order-saga consumer wrote the payment deadline as its own clock + 15 s, and the sweeper cancels a saga
once the database's now() passes it: a consumer host 15 s behind the database's timed every payment out at
once, one ahead made timeouts late (E, session 30). Here the consumer's clock is set a minute behind (and then
a minute ahead) while inventory.reserved is applied as the consumer applies it (apps/order/saga_rows.py);
the deadline must still be the database's now() + the payment step's timeout. The reservation's deadline was
the placing process's clock + 120 s (the order API's, or the order-saga consumer's for a checkout) until
session 32: the same skews, through both placements, must leave it the database's now() + 120 s, and the
order API's answer must show the deadline written.
"""

from __future__ import annotations

import datetime as dt
import types
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from apps.checkout.events import CheckoutAddress, CheckoutCompleted, CheckoutLine
from apps.order import checkout_orders, saga_rows, services
from apps.order.app import create_app
from apps.order.checkout_orders import create_from_checkout
from apps.order.saga_state import PAYMENT, RESERVATION, step_timeout
from apps.order.sweeper import writer_clock_offsets
from apps.warehouse.events import InventoryReserved, ReservedItem
from tests.support.db import fetch
from tests.support.http import create_customer, in_process
from tests.support.orders import order_engine
from tests.support.returns import stocked

pytestmark = pytest.mark.usefixtures("stack")

ADDRESS = CheckoutAddress(address_line1="1 Main St", city="Springfield", country="US")


@pytest.fixture
async def engine(stack: None) -> AsyncIterator[AsyncEngine]:
    engine = order_engine()
    yield engine
    await engine.dispose()


def _checkout() -> CheckoutCompleted:
    line = CheckoutLine(
        product_id=uuid.uuid4(), sku="CLOCK-T", name="t", quantity=1, unit_price=Decimal("4.00"),
        total_price=Decimal("4.00"),
    )  # fmt: skip
    return CheckoutCompleted(
        checkout_id=uuid.uuid4(), order_id=uuid.uuid4(), cart_id=uuid.uuid4(), customer_id=f"cs_{uuid.uuid4().hex}",
        is_guest=True, currency="USD", lines=[line], shipping_address=ADDRESS, billing_address=ADDRESS,
        shipping_method_id="standard", shipping_method_name="Standard", payment_method_type="card",
        payment_method_id="tok_visa", subtotal=Decimal("4.00"), tax_amount=Decimal("0.00"),
        shipping_amount=Decimal("5.00"), discount_amount=Decimal("0.00"), total_amount=Decimal("9.00"),
        completed_at=dt.datetime.now(dt.UTC),
    )  # fmt: skip


def _skewed_clock(offset: dt.timedelta) -> types.SimpleNamespace:
    """The ``dt`` module as saga_rows sees it on a host whose clock is ``offset`` off the database's."""

    def now(tz: dt.tzinfo | None = None) -> dt.datetime:
        return dt.datetime.now(tz) + offset  # a plain datetime, as msgspec encodes the events' times

    return types.SimpleNamespace(datetime=types.SimpleNamespace(now=now), UTC=dt.UTC, timedelta=dt.timedelta)


@pytest.mark.parametrize("offset_s", [-60, 60])
async def test_the_payment_deadline_is_the_databases_clock_whatever_the_consumers_says(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, offset_s: int
) -> None:
    checkout = _checkout()
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        await create_from_checkout(session, checkout)
    monkeypatch.setattr(saga_rows, "dt", _skewed_clock(dt.timedelta(seconds=offset_s)))
    line = ReservedItem(product_id=checkout.lines[0].product_id, warehouse_id=uuid.uuid4(), quantity=1)
    answer = InventoryReserved(
        order_id=checkout.order_id, reservation_id=uuid.uuid4(), items=[line], reserved_at=dt.datetime.now(dt.UTC)
    )
    session_: AsyncSession
    async with sessions() as session_, session_.begin():
        await saga_rows.reserved(session_, [answer])

    (row,) = await fetch(
        "order",
        "SELECT step, extract(epoch FROM deadline_at - now()) AS left_s, "
        "extract(epoch FROM payment_requested_at - now()) AS requested_s FROM order_sagas WHERE order_id = $1",
        checkout.order_id,
    )
    timeout = step_timeout(PAYMENT).total_seconds()
    assert row["step"] == "payment"
    # The consumer's own clock still says when it asked (informational): the skew is there...
    assert abs(float(row["requested_s"]) - offset_s) < 5
    # ...and not in the deadline: before, it was the consumer's clock + 15 s (45 s past, or 75 s ahead).
    assert timeout - 5 < float(row["left_s"]) <= timeout, row


async def test_the_sweeper_measures_how_far_a_placing_processs_clock_is_off(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkouts turned into orders by an order-saga consumer whose clock is a minute behind, as it writes
    them (apps/order/checkout_orders.py), in a transaction rolled back afterwards (nobody else sees them):
    the sweeper's measure of that writer reads about -60 s (a few others' waiting sagas cannot outvote 25)."""
    monkeypatch.setattr(checkout_orders, "dt", _skewed_clock(dt.timedelta(seconds=-60)))
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        transaction = await session.begin()
        for _ in range(25):
            await create_from_checkout(session, _checkout())
        offsets = await writer_clock_offsets(session)
        await transaction.rollback()
    assert -61 < offsets["order-saga"] < -59, offsets


@pytest.mark.parametrize("offset_s", [-60, 60])
async def test_a_checkouts_reservation_deadline_is_the_databases_clock_whatever_the_consumers_says(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, offset_s: int
) -> None:
    """Read in the placing transaction, rolled back afterwards (the saga's answer cannot move it first)."""
    monkeypatch.setattr(checkout_orders, "dt", _skewed_clock(dt.timedelta(seconds=offset_s)))
    checkout = _checkout()
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        transaction = await session.begin()
        await create_from_checkout(session, checkout)
        row = (
            await session.execute(
                text(
                    "SELECT extract(epoch FROM deadline_at - statement_timestamp()) AS left_s, "
                    "extract(epoch FROM created_at - statement_timestamp()) AS created_s "
                    "FROM order_sagas WHERE order_id = :id"
                ),
                {"id": checkout.order_id},
            )
        ).one()
        await transaction.rollback()
    timeout = step_timeout(RESERVATION).total_seconds()
    assert abs(float(row.created_s) - offset_s) < 5  # the consumer's clock still dates the saga (the sweeper's measure)
    assert timeout - 5 < float(row.left_s) <= timeout  # before: 60 s, or 180 s


@pytest.mark.parametrize("offset_s", [-60, 60])
async def test_an_api_orders_reservation_deadline_is_the_databases_clock_and_its_answer_shows_it(
    monkeypatch: pytest.MonkeyPatch, offset_s: int
) -> None:
    """The order API in-process with its clock a minute off: the fallback's write (a product no process has
    priced: apps/order/known.py _PLACE_CHECKED), then the one statement (PLACE_IF_KNOWN) for the same body.
    The answer's deadline is the one written (the warehouse's answer may have moved the saga since), measured
    against the order.created the same statement wrote (event_store.created_at: the database's now())."""
    monkeypatch.setattr(services, "dt", _skewed_clock(dt.timedelta(seconds=offset_s)))
    product = await stocked("4.00", 20)
    customer = (await create_customer())["id"]
    body = {"customer_id": customer, "items": [{"product_id": product["id"], "quantity": 1}]}
    timeout = step_timeout(RESERVATION).total_seconds()
    async with in_process(create_app, "order", role="admin") as orders:
        for _ in ("fallback", "one statement"):
            answer = await orders.post("/api/orders", json=body)
            assert answer.status_code == 201, answer.text
            placed = answer.json()
            (row,) = await fetch(
                "order",
                "SELECT extract(epoch FROM $2::timestamptz - e.created_at) AS left_s, "
                "extract(epoch FROM o.created_at - e.created_at) AS created_s "
                "FROM orders o JOIN event_store e ON e.aggregate_id = o.id AND e.event_version = 1 WHERE o.id = $1",
                uuid.UUID(placed["id"]),
                dt.datetime.fromisoformat(placed["waiting_until"]),
            )
            assert abs(float(row["created_s"]) - offset_s) < 5  # the API's clock still dates the order
            assert abs(float(row["left_s"]) - timeout) < 1, row  # before: 60 s, or 180 s
