"""An order placed while the order service applies a customer's erasure keeps no address (session 31, S).

The order-references group applies customer.erased in one transaction: the customer leaves the read model of
known customers, then their orders' addresses go. An order placed meanwhile (the erased person's token outlives
the erasure; staff and admin place for anyone) read the known-customer row as it was before that transaction
committed, and its INSERT committed after the group's UPDATE had taken its snapshot: the new order kept its
address for good, the erasure done. Here the group's UPDATE is held on a row of the customer's first order
(locked by the test) while a second order is placed by the order app in the tree, in-process.

Session 31 (X): the erasure marks the known-customer row erased (a tombstone, never deleted) and the read
models' lookup reads that row FOR SHARE. The tests below pin each interleaving with a lock,
not with timing luck: a placement statement whose snapshot was taken before the erasure committed, and the
order API's write-back of a customer the customer API answered for just before the erasure.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text as sa_text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from apps.common.db import litestar_alchemy_config, use_autocommit
from apps.common.topology import BY_NAME
from apps.order.app import create_app
from apps.order.erasure import STATEMENTS, erase_customer
from apps.order.known import _LOOKUP_SQL, _REMEMBER_CUSTOMER
from tests.support.db import connect, fetch
from tests.support.http import api_client, create_customer, in_process, service_url
from tests.support.orders import eventually
from tests.support.returns import stocked

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def orders() -> AsyncIterator[AsyncTestClient[Any]]:
    async with in_process(create_app, "order", role="admin") as client:
        yield client


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    engine = litestar_alchemy_config(BY_NAME["order"]).get_engine()
    yield engine
    await engine.dispose()


def addressed_order(customer: str, product_id: str, street: str) -> dict[str, Any]:
    """An order of one unit of the product, with a shipping address that names ``street`` (what an erasure clears)."""
    return {
        "customer_id": customer,
        "items": [{"product_id": product_id, "quantity": 1}],
        "shipping_address": {"address_line1": street, "city": "Springfield", "country": "US"},
    }


async def _addresses(order_id: str) -> Any:
    rows = await fetch("order", "SELECT shipping_address FROM orders WHERE id = $1", order_id)
    return rows[0]["shipping_address"]


async def test_an_order_placed_while_the_erasure_applies_keeps_no_address(orders: AsyncTestClient[Any]) -> None:
    product = await stocked("4.00", 20)
    customer = (await create_customer())["id"]
    marker = f"{uuid.uuid4().hex[:12]} Erasure Race Street"
    body = addressed_order(customer, product["id"], marker)
    # The first order makes the customer known here and the product seen by this process: the next one is
    # placed by the one statement that reads the read models itself (apps/order/known.py PLACE_IF_KNOWN).
    first = await orders.post("/api/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert first.status_code == 201, first.text
    first_id = first.json()["id"]

    # The in-process app's request blocks this event loop while its statement waits on a lock: the rows are
    # held and let go by a thread of their own.
    group_held = threading.Event()

    async def hold_first_order() -> None:
        held = await connect("order")
        try:
            async with held.transaction():
                await held.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", first_id)
                await eventually(group_waits, within=60, what="order-references applying customer.erased")
                group_held.set()
                # Since X's tombstone the second order waits on the group's row lock: let the group go on.
                await eventually(lambda: _waiting("FOR SHARE"), within=30, what="the second order waiting")
        finally:
            await held.close()

    async def group_waits() -> bool:  # its UPDATE of the customer's orders waits on the row held here
        rows = await fetch(
            "order",
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'UPDATE orders SET shipping_address = NULL%' AND query LIKE '%customer_id%'",
        )
        return bool(rows)

    with ThreadPoolExecutor(1) as thread:
        holder = thread.submit(asyncio.run, hold_first_order())
        async with api_client(timeout=30) as http:
            erased = await http.post(f"{service_url('customer')}/api/customers/{customer}/erase")
        assert erased.status_code == 202, erased.text
        assert await asyncio.to_thread(group_held.wait, 60), holder.exception(0) if holder.done() else "no hold"
        second = await orders.post("/api/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        holder.result(60)

    async def applied() -> bool:
        return await _addresses(first_id) is None

    await eventually(applied, within=60, what="the erasure applied to the first order")
    if second.status_code == 201:
        await asyncio.sleep(0)  # committed before its answer: the row is final
        assert await _addresses(second.json()["id"]) is None, "an order placed during the erasure kept its address"
    else:  # refused as an unknown customer: the customer API answers 404 once erased
        assert second.status_code == 422, second.text
        assert [e["key"] for e in second.json()["extra"]] == ["customer_id"]


async def _waiting(fragment: str) -> bool:
    """A statement containing ``fragment`` waits on a lock (a row lock held by the test)."""
    rows = await fetch(
        "order",
        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND position($1 in query) > 0",
        fragment,
    )
    return bool(rows)


async def test_an_order_whose_statement_waits_on_the_erasure_reads_the_customer_as_unknown(
    orders: AsyncTestClient[Any], engine: AsyncEngine
) -> None:
    """PLACE_IF_KNOWN, as the order API sends it, starts (its snapshot taken) while the erasure holds the
    known-customer row; the erasure commits; the statement's locked read re-checks the row's newest version:
    the customer reads as unknown, nothing is written, and the customer API's 404 makes it a 422."""
    product = await stocked("4.00", 20)
    customer = (await create_customer())["id"]
    body = addressed_order(customer, product["id"], "1 Snapshot Street")
    first = await orders.post("/api/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert first.status_code == 201, first.text  # the customer known here, the product seen by this process
    # The in-process app's request blocks this event loop while its statement waits on the row: the erasure
    # runs in a thread of its own, on its own engine.
    tombstoned = threading.Event()

    async def erase_when_the_placement_waits() -> None:
        own = litestar_alchemy_config(BY_NAME["order"]).get_engine()
        try:
            async with AsyncSession(own) as erasure:
                await erasure.execute(STATEMENTS[0], {"customer_id": customer})  # the tombstone: the row held
                tombstoned.set()
                await eventually(lambda: _waiting("FOR SHARE"), within=30, what="the placement waiting on the row")
                for statement in STATEMENTS[1:]:
                    await erasure.execute(statement, {"customer_id": customer})
                await erasure.commit()
        finally:
            await own.dispose()

    with ThreadPoolExecutor(1) as thread:
        erasing = thread.submit(asyncio.run, erase_when_the_placement_waits())
        assert await asyncio.to_thread(tombstoned.wait, 30)
        # The customer service erases too (its 404 from now on); order-references' own erasure of this
        # customer waits on the row held here and then finds nothing left to change.
        async with api_client(base_url=service_url("customer")) as http:
            erased = await http.post(f"{service_url('customer')}/api/customers/{customer}/erase")
        assert erased.status_code == 202, erased.text
        answer = await orders.post("/api/orders", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        erasing.result(30)
    assert answer.status_code == 422, answer.text
    assert [e["key"] for e in answer.json()["extra"]] == ["customer_id"]
    assert await _addresses(first.json()["id"]) is None
    rows = await fetch("order", "SELECT count(*) AS n FROM orders WHERE customer_id = $1", customer)
    assert rows[0]["n"] == 1  # the second order was never written


async def _known(engine: AsyncEngine, customer: str) -> bool:
    async with AsyncSession(engine) as session:
        rows = (await session.execute(sa_text(_LOOKUP_SQL), {"customer_id": customer, "product_ids": []})).all()
        return bool(rows[0].customer_known)


async def test_a_lookup_whose_snapshot_predates_the_erasures_commit_reads_the_customer_as_unknown(
    engine: AsyncEngine,
) -> None:
    """W's interleaving (session 31): the lookup's statement takes its snapshot, waits, and only then reads
    the known-customer row; the whole erasure commits in between. A plain read in the same statement still
    sees the row as known (the snapshot predates the commit); the lookup's locked read does not. The wait is
    on an advisory lock the test holds until the erasure committed (a 1-s pg_sleep assumed the erasure
    would commit within it)."""
    customer = str(uuid.uuid4())
    async with AsyncSession(engine) as session:
        await _REMEMBER_CUSTOMER.fetch(session, {"customer_id": customer})
        await session.commit()
    production = _LOOKUP_SQL.replace(":customer_id", "$1").replace(":product_ids", "$2")
    lookup = (
        "SELECT pg_advisory_xact_lock($3) AS pause, "
        "EXISTS (SELECT FROM order_known_customers WHERE customer_id = $1 AND NOT erased) AS as_of_snapshot, "
        f"(SELECT bool_or(customer_known) FROM ({production}) AS l) AS customer_known"
    )
    placement, gate = await connect("order"), await connect("order")
    key = uuid.UUID(customer).int >> 65  # a bigint of this test's own
    try:
        await gate.execute("SELECT pg_advisory_lock($1)", key)
        statement = asyncio.create_task(placement.fetchrow(lookup, customer, [], key))
        await eventually(lambda: _waiting("as_of_snapshot"), within=30, what="the lookup waiting after its snapshot")
        async with AsyncSession(engine) as erasure:
            await erase_customer(erasure, customer)
            await erasure.commit()
        await gate.execute("SELECT pg_advisory_unlock($1)", key)
        row = await statement
    finally:
        await placement.close()
        await gate.close()
    assert row["as_of_snapshot"] is True  # the statement's snapshot predates the erasure's commit
    assert row["customer_known"] is False
    assert await _known(engine, customer) is False


async def test_the_write_back_of_an_answer_from_before_the_erasure_leaves_the_customer_erased(
    engine: AsyncEngine,
) -> None:
    """The customer API answered 200 just before the erasure; the order API writes that answer back after
    order-references applied it (committed, or still running): the customer stays erased. Known here before
    or not; and the erasure applied twice (a replay) changes nothing more."""
    for known_before in (True, False):
        customer = str(uuid.uuid4())
        async with AsyncSession(engine) as session:
            await use_autocommit(session)
            if known_before:
                await _REMEMBER_CUSTOMER.fetch(session, {"customer_id": customer})
            async with AsyncSession(engine) as erasure:
                await erase_customer(erasure, customer)
                # Written back while the erasure runs: ON CONFLICT waits for its insert or update to commit.
                write_back = asyncio.create_task(_REMEMBER_CUSTOMER.fetch(session, {"customer_id": customer}))
                if not known_before:  # the tombstone's insert, uncommitted, holds the write-back
                    await eventually(
                        lambda: _waiting("INSERT INTO order_known_customers"), within=10, what="the write-back"
                    )
                await erasure.commit()
            await write_back
            await _REMEMBER_CUSTOMER.fetch(session, {"customer_id": customer})  # and after its commit
        assert await _known(engine, customer) is False, known_before
        async with AsyncSession(engine) as replay:
            await erase_customer(replay, customer)
            await replay.commit()
        rows = await fetch("order", "SELECT erased FROM order_known_customers WHERE customer_id = $1", customer)
        assert [r["erased"] for r in rows] == [True], known_before
