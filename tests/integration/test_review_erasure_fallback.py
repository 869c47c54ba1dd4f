"""An order placed through the read models' fallback keeps no address when the erasure lands between its
lookup and its write (review, session 31).

When PLACE_IF_KNOWN cannot write (this process has not priced the products, or the read models disagree with
it), the order service checks the customer (apps/order/known.py References.check: the lookup, or the customer
API on a miss) and then writes the order in a statement of its own (transitions.write_placement). Each
statement commits on its own, so no lock of the lookup is held at the write: the order-references group can
apply customer.erased in between (its UPDATE of the customer's orders does not see an order not yet
written), and the order written after it keeps its address. The interleaving is pinned: the group's
statements (apps/order/erasure.py STATEMENTS, as it applies them, in one transaction) run right after the
check answered, before the write.

Failed at 19:22 on HEAD and on X's working copy (201, the address kept; W31-3). The fallback's write is now
apps/order/known.py ``_PLACE_CHECKED``: it inserts only while the customer's row, read FOR SHARE, says known, so
the order is refused as for an unknown customer (422) and nothing is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from apps.common.erasure import execute_for_customer
from apps.common.topology import BY_NAME, database_url
from apps.order import known
from apps.order.erasure import STATEMENTS
from tests.integration.test_security_erasure_races import addressed_order, orders
from tests.support.db import fetch
from tests.support.http import create_customer
from tests.support.returns import stocked

pytestmark = pytest.mark.usefixtures("stack")

__all__ = ["orders"]  # the fixture, used by name


async def test_an_erasure_between_the_fallbacks_check_and_its_write_leaves_no_address(
    orders: AsyncTestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    product = await stocked("4.00", 20)  # new: no process has priced it, so PLACE_IF_KNOWN cannot write
    customer = (await create_customer())["id"]
    check = known.References.check
    erased: list[str] = []

    async def check_then_erasure(
        self: known.References, customer_id: uuid.UUID, product_ids: list[uuid.UUID], rows: Sequence[Any] = ()
    ) -> Any:
        answer = await check(self, customer_id, product_ids, rows)
        if str(customer_id) == customer:  # the group applies customer.erased now, and commits
            engine = create_async_engine(database_url(BY_NAME["order"]))
            try:
                async with AsyncSession(engine) as session, session.begin():
                    await execute_for_customer(session, STATEMENTS, customer)
            finally:
                await engine.dispose()
            erased.append(customer)
        return answer

    monkeypatch.setattr(known.References, "check", check_then_erasure)
    marker = f"{uuid.uuid4().hex[:12]} Fallback Race Street"
    body = addressed_order(customer, product["id"], marker)
    placed = await orders.post("/api/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert erased == [customer], "the placement did not go through References.check"
    # Refused as a customer erased meanwhile, and nothing written: no order of this customer at all.
    assert placed.status_code == 422, placed.text
    assert placed.json()["extra"][0]["key"] == "customer_id", placed.text
    rows = await fetch("order", "SELECT count(*) AS n FROM orders WHERE customer_id = $1", customer)
    assert rows[0]["n"] == 0, "an order was written after the erasure"
