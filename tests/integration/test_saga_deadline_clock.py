"""The saga's payment deadline is the database's clock, the one the sweeper compares it with; the
reservation's, still the placing process's clock, is measured (the sweeper's
order_saga_writer_clock_offset_seconds, alert WriterClockSkewed).

The order-saga consumer wrote it as its own clock + 15 s, and the sweeper cancels a saga once the
database's now() passes it: a consumer host 15 s behind the database's timed every payment out at once,
one ahead made timeouts late (E, session 30). Here the consumer's clock is set a minute behind (and then a
minute ahead) while inventory.reserved is applied as the consumer applies it (apps/order/saga_rows.py);
the deadline must still be the database's now() + the payment step's timeout.
"""

from __future__ import annotations

import datetime as dt
import types
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from apps.checkout.events import CheckoutAddress, CheckoutCompleted, CheckoutLine
from apps.order import checkout_orders, saga_rows
from apps.order.checkout_orders import create_from_checkout
from apps.order.saga_state import PAYMENT, step_timeout
from apps.order.sweeper import writer_clock_offsets
from apps.warehouse.events import InventoryReserved, ReservedItem
from tests.support.db import fetch
from tests.support.orders import order_engine

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
