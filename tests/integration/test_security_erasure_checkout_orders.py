"""A checkout's order placed by the saga while the order service applies the customer's erasure keeps no
address (session 32, X).

The order-saga group writes a checkout's order (apps/order/checkout_orders.py create_from_checkout) inside its
batch's transaction, which commits after the batch's other events; order-references applies customer.erased
in a transaction of its own (apps/order/erasure.py STATEMENTS: the tombstone, then the UPDATEs that clear
the customer's orders). Neither waited for the other: an erasure whose UPDATEs ran while the order was written
but not committed did not see it, one committed before the order was written (its addresses opened with a data
key the saga's process had cached, or a v1 event's clear ones) did not follow it, and the order kept its
addresses for good. Each interleaving is pinned here with the transactions held open by the test, on rows
of its own only (a new customer id, the checkout's own order), as the two groups run them; the addresses
are the event's in clear (what the saga writes once it has opened them).

Before the fix the first two tests failed (the order's shipping address kept), and so did the third.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from apps.checkout.events import CheckoutCompleted
from apps.order.checkout_orders import create_from_checkout
from apps.order.erasure import erase_customer
from apps.order.known import _REMEMBER_CUSTOMER
from tests.support.db import fetch
from tests.support.orders import checkout_completed, eventually, order_engine

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def engine(stack: None) -> AsyncIterator[AsyncEngine]:
    engine = order_engine()
    yield engine
    await engine.dispose()


async def _customer(engine: AsyncEngine, *, known: bool) -> str:
    """A customer of this test only; known here (customer.registered applied) or not yet."""
    customer = str(uuid.uuid4())
    if known:
        async with AsyncSession(engine) as session, session.begin():
            await _REMEMBER_CUSTOMER.fetch(session, {"customer_id": customer})
    return customer


def _checkout(customer: str) -> CheckoutCompleted:
    return msgspec.structs.replace(checkout_completed(guest=False), customer_id=customer)


async def _pid(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _waits_or_ends(pid: int, work: asyncio.Future[Any]) -> None:
    """Until the backend ``pid`` waits on a lock or ``work`` is over (it went through without waiting)."""

    async def settled() -> bool:
        if work.done():
            return True
        rows = await fetch("order", "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", pid)
        return bool(rows)

    await eventually(settled, within=10, what=f"backend {pid} waiting on a lock or done")


async def _shipping_address(order_id: uuid.UUID) -> object:
    rows = await fetch("order", "SELECT shipping_address FROM orders WHERE id = $1", order_id)
    assert len(rows) == 1, order_id
    return rows[0]["shipping_address"]


async def _erasure(engine: AsyncEngine, customer: str, pids: asyncio.Queue[int]) -> None:
    async with AsyncSession(engine) as session, session.begin():
        await pids.put(await _pid(session))
        await erase_customer(session, customer)


@pytest.mark.parametrize("known", [True, False], ids=["known", "not-known-yet"])
async def test_an_erasure_applied_while_the_saga_writes_the_order_clears_its_addresses(
    engine: AsyncEngine, known: bool
) -> None:
    """The saga's batch has written the order, not committed; order-references applies the erasure now. It
    waits for the batch (the known-customer row is held) and its UPDATEs then see the order."""
    customer = await _customer(engine, known=known)
    checkout = _checkout(customer)
    pids: asyncio.Queue[int] = asyncio.Queue()
    async with AsyncSession(engine) as saga, saga.begin():  # the batch's transaction
        assert await create_from_checkout(saga, checkout)
        erasing = asyncio.ensure_future(_erasure(engine, customer, pids))
        await _waits_or_ends(await pids.get(), erasing)
    await asyncio.wait_for(erasing, 30)
    assert await _shipping_address(checkout.order_id) is None, "the order kept its address after the erasure"


@pytest.mark.parametrize("known", [True, False], ids=["known", "not-known-yet"])
async def test_an_order_written_while_the_erasure_applies_has_no_addresses(engine: AsyncEngine, known: bool) -> None:
    """order-references has applied the erasure, not committed; the saga writes the order now. It waits for
    the erasure's commit and finds the customer erased: the order is written without the addresses."""
    customer = await _customer(engine, known=known)
    checkout = _checkout(customer)
    async with AsyncSession(engine) as erasure:
        await erase_customer(erasure, customer)
        async with AsyncSession(engine) as saga, saga.begin():
            pid = await _pid(saga)
            placing = asyncio.ensure_future(create_from_checkout(saga, checkout))
            await _waits_or_ends(pid, placing)
            await erasure.commit()
            assert await asyncio.wait_for(placing, 30)
    assert await _shipping_address(checkout.order_id) is None, "the order written during the erasure kept its address"


async def test_an_order_written_after_the_erasure_has_no_addresses_and_a_guests_keeps_them(
    engine: AsyncEngine,
) -> None:
    """The erasure applied and committed here first (the saga lagging behind, its addresses opened with a
    key it had cached before the customer service destroyed it): the order is written without them. A
    guest's checkout order keeps its addresses and makes no known-customer row."""
    customer = await _customer(engine, known=True)
    async with AsyncSession(engine) as erasure, erasure.begin():
        await erase_customer(erasure, customer)
    checkout, guest = _checkout(customer), checkout_completed(guest=True)
    async with AsyncSession(engine) as saga, saga.begin():
        assert await create_from_checkout(saga, checkout)
        assert await create_from_checkout(saga, guest)
    assert await _shipping_address(checkout.order_id) is None
    assert await _shipping_address(guest.order_id) is not None
    rows = await fetch("order", "SELECT 1 FROM order_known_customers WHERE customer_id = $1", guest.customer_id)
    assert rows == []
