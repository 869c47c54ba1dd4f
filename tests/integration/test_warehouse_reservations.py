"""Warehouse reservations end to end through the real stack.

Stock is set with the warehouse API (in-process); order events are written into order_db's outbox exactly
as the order service writes them; Debezium carries them to commerce.order; the warehouse-reservations
consumer decides each order and writes its inventory.* event into warehouse_db's outbox in the same
transaction; Debezium carries that to commerce.inventory, where the test reads it.

Every test uses its own product and order ids.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from apps.common.models import utc_now
from apps.common.topology import BY_NAME, database_url, topic_for
from apps.order.events import OrderCreated, OrderLine
from apps.warehouse.app import create_app
from apps.warehouse.decisions import write_decisions
from apps.warehouse.events import InventoryReserved, ReservedItem
from apps.warehouse.rules import DEFAULT_WAREHOUSE_ID
from tests.support.db import db_fixture
from tests.support.http import authorized, create_product
from tests.support.kafka import Received, TopicTail
from tests.support.orders import eventually, order_cancelled, order_engine, write_events

pytestmark = pytest.mark.usefixtures("stack")

Client = AsyncTestClient[Litestar]
GROUP = "warehouse-reservations"
INVENTORY_TOPIC = topic_for("inventory")
DEFAULT = str(DEFAULT_WAREHOUSE_ID)
# The consumer may be catching up on other tests' order events first.
WITHIN = 120.0


@pytest.fixture(scope="module")
async def client(stack: None) -> AsyncIterator[Client]:
    async with authorized(AsyncTestClient(app=create_app())) as test_client:
        yield test_client


db = db_fixture("warehouse")


@pytest.fixture
def tail() -> Iterator[TopicTail]:
    """commerce.inventory from its current end: only what this test causes (and others' new events)."""
    topic_tail = TopicTail(INVENTORY_TOPIC)
    try:
        yield topic_tail
    finally:
        topic_tail.close()


async def new_product() -> str:
    """A product the catalog has (created through its API): only such a product's stock can be set."""
    return str((await create_product())["id"])


def order_for(lines: Sequence[tuple[str, int]], order_id: uuid.UUID | None = None) -> OrderCreated:
    """An order.created as the order service writes it, for these (product id, quantity) lines."""
    order_id = order_id or uuid.uuid4()
    price = Decimal("2.50")
    items = [
        OrderLine(
            product_id=uuid.UUID(product_id),
            sku=f"SKU-{product_id[:8]}",
            quantity=quantity,
            unit_price=price,
            total_price=price * quantity,
        )
        for product_id, quantity in lines
    ]
    return OrderCreated(
        order_id=order_id,
        order_number=f"ORD-{order_id.hex[:12].upper()}",
        customer_id=str(uuid.uuid4()),
        status="confirmed",
        currency="USD",
        total_amount=sum((item.total_price for item in items), Decimal("0.00")),
        items=items,
        created_at=dt.datetime.now(dt.UTC),
    )


async def write(*events: Any) -> list[uuid.UUID]:
    engine = order_engine()
    try:
        return [record.event_id for record in await write_events(engine, list(events))]
    finally:
        await engine.dispose()


async def set_stock(client: Client, product_id: str, quantity: int, **extra: Any) -> None:
    response = await client.put(f"/api/inventory/{product_id}", json={"quantity": quantity, **extra})
    assert response.status_code == 200, response.text


async def stock(client: Client, product_id: str) -> tuple[int, int, int]:
    body = (await client.get(f"/api/inventory/{product_id}")).json()
    return body["on_hand"], body["reserved"], body["available"]


async def reservation(client: Client, order_id: uuid.UUID) -> dict[str, Any] | None:
    response = await client.get("/api/reservations", params={"order_id": str(order_id)})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    assert len(found) <= 1
    return found[0] if found else None


async def wait_for_status(client: Client, order_id: uuid.UUID, status: str) -> dict[str, Any]:
    async def reached() -> bool:
        found = await reservation(client, order_id)
        return found is not None and found["status"] == status

    await eventually(reached, within=WITHIN, what=f"reservation of {order_id} {status}")
    found = await reservation(client, order_id)
    assert found is not None
    return found


async def wait_until_applied(db: asyncpg.Connection, event_ids: Sequence[uuid.UUID]) -> None:
    """The group's inbox holds these events: they were applied (or found to change nothing)."""

    async def applied() -> bool:
        count = await db.fetchval(
            "SELECT count(*) FROM inbox "
            "WHERE consumer_group = $1 AND event_id = ANY($2::uuid[]) AND outcome = 'applied'",
            GROUP,
            list(event_ids),
        )
        return bool(count == len(event_ids))

    await eventually(applied, within=WITHIN, what=f"{len(event_ids)} order events applied by {GROUP}")


async def outbox_events(db: asyncpg.Connection, order_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT aggregate_id, aggregate_type, event_type, event_version FROM event_store "
            "WHERE aggregate_id = ANY($1::uuid[]) ORDER BY aggregate_id, event_version",
            list(order_ids),
        )
    )


async def on_kafka(tail: TopicTail, order_ids: Sequence[uuid.UUID], count: int) -> list[Received]:
    """Read commerce.inventory until ``count`` records keyed by these orders arrived."""
    keys = {str(order_id) for order_id in order_ids}

    def arrived(seen: list[Received]) -> bool:
        return sum(record.key in keys for record in seen) >= count

    seen = await asyncio.to_thread(tail.read_until, arrived, WITHIN)
    return [record for record in seen if record.key in keys]


# --- reserve, release ----------------------------------------------------------------------------


async def test_an_order_reserves_its_units_and_cancelling_it_releases_them(client: Client, tail: TopicTail) -> None:
    shirt, mug = await new_product(), await new_product()
    await set_stock(client, shirt, 5)
    await set_stock(client, mug, 1)
    created = order_for([(shirt, 3), (mug, 1)])

    await write(created)
    reserved = await wait_for_status(client, created.order_id, "reserved")

    assert (reserved["reason"], reserved["shortages"], reserved["released_at"]) == (None, [], None)
    assert sorted((i["product_id"], i["warehouse_id"], i["quantity"]) for i in reserved["items"]) == sorted(
        [(shirt, DEFAULT, 3), (mug, DEFAULT, 1)]
    )
    assert await stock(client, shirt) == (5, 3, 2)
    assert await stock(client, mug) == (1, 1, 0)

    await write(order_cancelled(created))
    released = await wait_for_status(client, created.order_id, "released")

    assert released["id"] == reserved["id"]
    assert released["released_at"] is not None
    assert released["items"] == reserved["items"]  # kept as the record of what was held
    assert await stock(client, shirt) == (5, 0, 5)
    assert await stock(client, mug) == (1, 0, 1)

    records = await on_kafka(tail, [created.order_id], 2)
    assert [(r.headers["event_type"], r.headers["event_version"]) for r in records] == [
        ("inventory.reserved", "1"),
        ("inventory.released", "2"),
    ]
    assert {r.topic for r in records} == {"commerce.inventory"}
    assert {r.headers["aggregate_type"] for r in records} == {"inventory"}
    for record in records:
        payload = json.loads(record.value)
        assert (payload["order_id"], payload["reservation_id"]) == (str(created.order_id), reserved["id"])
        assert sorted((i["product_id"], i["quantity"]) for i in payload["items"]) == sorted([(shirt, 3), (mug, 1)])
    assert "reserved_at" in json.loads(records[0].value)
    assert "released_at" in json.loads(records[1].value)


async def test_a_line_is_split_over_warehouses_when_no_single_one_has_enough(
    client: Client, db: asyncpg.Connection
) -> None:
    product_id = await new_product()
    other = uuid.uuid4()
    await db.execute(
        "INSERT INTO warehouses (id, code, name) VALUES ($1, $2, 'Test warehouse')", other, f"T-{other.hex[:12]}"
    )
    await set_stock(client, product_id, 2)
    await set_stock(client, product_id, 3, warehouse_id=str(other))
    created = order_for([(product_id, 4)])

    await write(created)
    reserved = await wait_for_status(client, created.order_id, "reserved")

    # The default warehouse first, the rest from the other one.
    assert sorted((i["warehouse_id"], i["quantity"]) for i in reserved["items"]) == sorted(
        [(DEFAULT, 2), (str(other), 2)]
    )
    assert await stock(client, product_id) == (5, 4, 1)


# --- all or nothing ------------------------------------------------------------------------------


async def test_one_short_line_fails_the_whole_order_and_a_cancel_then_changes_nothing(
    client: Client, db: asyncpg.Connection, tail: TopicTail
) -> None:
    plenty, scarce, never_stocked = await new_product(), await new_product(), str(uuid.uuid4())
    await set_stock(client, plenty, 5)
    await set_stock(client, scarce, 1)
    created = order_for([(plenty, 2), (scarce, 2), (never_stocked, 1)])

    await write(created)
    failed = await wait_for_status(client, created.order_id, "failed")

    assert failed["reason"] == "insufficient_stock"
    assert failed["items"] == []
    assert sorted((s["product_id"], s["requested"], s["available"]) for s in failed["shortages"]) == sorted(
        [(scarce, 2, 1), (never_stocked, 1, 0)]  # a product without stock counts as 0 available
    )
    # Nothing was held, not even the line that fitted.
    assert await stock(client, plenty) == (5, 0, 5)
    assert await stock(client, scarce) == (1, 0, 1)
    [record] = await on_kafka(tail, [created.order_id], 1)
    assert record.headers["event_type"] == "inventory.reservation_failed"
    payload = json.loads(record.value)
    assert (payload["order_id"], payload["reason"]) == (str(created.order_id), "insufficient_stock")
    assert sorted((s["product_id"], s["requested"], s["available"]) for s in payload["shortages"]) == sorted(
        [(scarce, 2, 1), (never_stocked, 1, 0)]
    )

    [cancel_id] = await write(order_cancelled(created))
    await wait_until_applied(db, [cancel_id])

    assert (await reservation(client, created.order_id)) == failed
    assert [r["event_type"] for r in await outbox_events(db, [created.order_id])] == ["inventory.reservation_failed"]
    assert await stock(client, scarce) == (1, 0, 1)


async def test_a_cancel_for_an_order_without_a_reservation_is_a_no_op(client: Client, db: asyncpg.Connection) -> None:
    product_id = await new_product()
    await set_stock(client, product_id, 3)
    never_reserved = order_for([(product_id, 1)])

    [cancel_id] = await write(order_cancelled(never_reserved))
    await wait_until_applied(db, [cancel_id])

    assert await reservation(client, never_reserved.order_id) is None
    assert await outbox_events(db, [never_reserved.order_id]) == []
    assert await stock(client, product_id) == (3, 0, 3)


async def test_a_repeated_order_created_reserves_once_and_publishes_once(
    client: Client, db: asyncpg.Connection
) -> None:
    product_id = await new_product()
    await set_stock(client, product_id, 10)
    created = order_for([(product_id, 4)])

    # Two distinct order.created events for one order (not a redelivery: the inbox would catch that).
    event_ids = await write(created, created)
    await wait_until_applied(db, event_ids)

    reserved = await reservation(client, created.order_id)
    assert reserved is not None
    assert reserved["status"] == "reserved"
    assert await stock(client, product_id) == (10, 4, 6)
    assert [(r["event_type"], r["event_version"]) for r in await outbox_events(db, [created.order_id])] == [
        ("inventory.reserved", 1)
    ]


async def test_the_database_itself_refuses_to_oversell(client: Client, db: asyncpg.Connection) -> None:
    product_id = uuid.UUID(await new_product())
    await set_stock(client, str(product_id), 2)
    for statement in (
        "UPDATE stock_levels SET reserved = 3 WHERE product_id = $1",
        "UPDATE stock_levels SET reserved = -1 WHERE product_id = $1",
        "UPDATE stock_levels SET on_hand = -1 WHERE product_id = $1",
    ):
        with pytest.raises(asyncpg.CheckViolationError):
            await db.execute(statement, product_id)


# --- the race -------------------------------------------------------------------------------------


async def test_fifty_concurrent_orders_for_ten_units_reserve_exactly_ten(
    client: Client, db: asyncpg.Connection, tail: TopicTail
) -> None:
    product_id = await new_product()
    await set_stock(client, product_id, 10)
    orders = [order_for([(product_id, 1)]) for _ in range(50)]
    order_ids = [o.order_id for o in orders]

    # Fifty order transactions committed concurrently, as fifty checkouts would.
    engine = order_engine()
    try:
        await asyncio.gather(*(write_events(engine, [o]) for o in orders))
    finally:
        await engine.dispose()

    async def all_decided() -> bool:
        count = await db.fetchval("SELECT count(*) FROM reservations WHERE order_id = ANY($1::uuid[])", order_ids)
        return bool(count == len(order_ids))

    await eventually(all_decided, within=WITHIN, what="all 50 orders decided")

    statuses = Counter(
        r["status"]
        for r in await db.fetch("SELECT status FROM reservations WHERE order_id = ANY($1::uuid[])", order_ids)
    )
    assert statuses == {"reserved": 10, "failed": 40}
    assert await stock(client, product_id) == (10, 10, 0)
    held = await db.fetchval(
        "SELECT sum(i.quantity) FROM reservation_items i JOIN reservations r ON r.id = i.reservation_id "
        "WHERE r.order_id = ANY($1::uuid[])",
        order_ids,
    )
    assert held == 10

    outbox = await outbox_events(db, order_ids)
    assert Counter(r["event_type"] for r in outbox) == {"inventory.reserved": 10, "inventory.reservation_failed": 40}
    assert len({r["aggregate_id"] for r in outbox}) == 50  # one decision per order

    records = await on_kafka(tail, order_ids, 50)
    assert len(records) == 50
    assert Counter(r.headers["event_type"] for r in records) == {
        "inventory.reserved": 10,
        "inventory.reservation_failed": 40,
    }
    assert len({r.key for r in records}) == 50
    by_order = {r.key: r.headers["event_type"] for r in records}
    reserved_orders = {
        str(r["order_id"])
        for r in await db.fetch(
            "SELECT order_id FROM reservations WHERE order_id = ANY($1::uuid[]) AND status = 'reserved'", order_ids
        )
    }
    assert {key for key, event_type in by_order.items() if event_type == "inventory.reserved"} == reserved_orders


async def test_a_decision_written_for_an_order_decided_meanwhile_writes_nothing(client: Client) -> None:
    """The batch's one statement (apps/warehouse/decisions.py) inserts no items, moves no stock and publishes
    nothing when one of its orders was decided concurrently: the caller then retries the batch."""
    product_id = await new_product()
    await set_stock(client, product_id, 10)
    product, order_id = uuid.UUID(product_id), uuid.uuid4()

    def decision(units: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], InventoryReserved]:
        reservation_id, now = uuid.uuid4(), dt.datetime.now(dt.UTC)
        row = {"id": reservation_id, "order_id": order_id, "status": "reserved", "reason": None, "shortages": []}
        item = {"reservation_id": reservation_id, "product_id": product, "warehouse_id": DEFAULT_WAREHOUSE_ID}
        reserved = ReservedItem(product_id=product, warehouse_id=DEFAULT_WAREHOUSE_ID, quantity=units)
        event = InventoryReserved(order_id=order_id, reservation_id=reservation_id, items=[reserved], reserved_at=now)
        return [row], [item | {"quantity": units}], event

    engine = create_async_engine(database_url(BY_NAME["warehouse"]))
    try:
        async with AsyncSession(engine) as session, session.begin():
            written = []
            for units in (2, 3):  # the second decision for the same order finds the first one's row
                rows, items, event = decision(units)
                changes = {(product, DEFAULT_WAREHOUSE_ID): units}
                written.append(await write_decisions(session, rows, items, changes, [(order_id, event)], utc_now()))
            assert written == [1, 0]
            found = await session.execute(
                text(
                    "SELECT (SELECT reserved FROM stock_levels WHERE product_id = :p),"
                    " (SELECT count(*) FROM reservation_items WHERE product_id = :p),"
                    " (SELECT count(*) FROM event_store WHERE aggregate_id = :o)"
                ),
                {"p": product, "o": order_id},
            )
            assert tuple(found.one()) == (2, 1, 1)
            await session.rollback()
    finally:
        await engine.dispose()
