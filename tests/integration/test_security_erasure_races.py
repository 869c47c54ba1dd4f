"""An order placed while the order service applies a customer's erasure keeps no address (session 31, S).

The order-references group applies customer.erased in one transaction: the customer leaves the read model of
known customers, then their orders' addresses go. An order placed meanwhile (the erased person's token outlives
the erasure; staff and admin place for anyone) read the known-customer row as it was before that transaction
committed, and its INSERT committed after the group's UPDATE had taken its snapshot: the new order kept its
address for good, the erasure done. Here the group's UPDATE is held on a row of the customer's first order
(locked by the test) while a second order is placed by the order app in the tree, in-process.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from apps.order.app import create_app
from tests.support.db import connect, fetch
from tests.support.http import api_client, create_customer, in_process, service_url
from tests.support.orders import eventually
from tests.support.returns import stocked

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def orders() -> AsyncIterator[AsyncTestClient[Any]]:
    async with in_process(create_app, "order", role="admin") as client:
        yield client


async def _addresses(order_id: str) -> Any:
    rows = await fetch("order", "SELECT shipping_address FROM orders WHERE id = $1", order_id)
    return rows[0]["shipping_address"]


async def test_an_order_placed_while_the_erasure_applies_keeps_no_address(orders: AsyncTestClient[Any]) -> None:
    product = await stocked("4.00", 20)
    customer = (await create_customer())["id"]
    marker = f"{uuid.uuid4().hex[:12]} Erasure Race Street"
    body = {
        "customer_id": customer,
        "items": [{"product_id": product["id"], "quantity": 1}],
        "shipping_address": {"address_line1": marker, "city": "Springfield", "country": "US"},
    }
    # The first order makes the customer known here and the product seen by this process: the next one is
    # placed by the one statement that reads the read models itself (apps/order/known.py PLACE_IF_KNOWN).
    first = await orders.post("/api/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert first.status_code == 201, first.text
    first_id = first.json()["id"]

    held = await connect("order")
    try:
        hold = held.transaction()
        await hold.start()
        await held.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", first_id)
        async with api_client(timeout=30) as http:
            erased = await http.post(f"{service_url('customer')}/api/customers/{customer}/erase")
        assert erased.status_code == 202, erased.text

        async def group_waits() -> bool:  # its UPDATE of the customer's orders waits on the row held here
            rows = await fetch(
                "order",
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'UPDATE orders SET shipping_address = NULL%' AND query LIKE '%customer_id%'",
            )
            return bool(rows)

        await eventually(group_waits, within=60, what="order-references applying customer.erased")
        second = await orders.post("/api/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        await hold.commit()
    finally:
        await held.close()

    async def applied() -> bool:
        return await _addresses(first_id) is None

    await eventually(applied, within=60, what="the erasure applied to the first order")
    if second.status_code == 201:
        await asyncio.sleep(0)  # committed before its answer: the row is final
        assert await _addresses(second.json()["id"]) is None, "an order placed during the erasure kept its address"
    else:  # refused as an unknown customer: the customer API answers 404 once erased
        assert second.status_code == 422, second.text
        assert [e["key"] for e in second.json()["extra"]] == ["customer_id"]
