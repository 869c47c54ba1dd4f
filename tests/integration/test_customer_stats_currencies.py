"""Customer stats per currency on the real stack (customer_0013): order and refund events written through the
order and returns outboxes, streamed by Debezium, applied by the running customer-stats consumer and read back
through GET /api/customers/{id}/stats. Amounts are never added across currencies (P, session 31: 100 USD and
10,000 JPY read 10,100). Each test's customers are its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from apps.common.topology import BY_NAME, database_url, kafka_bootstrap, topic_for
from apps.customer.consumers import group
from apps.order.events import OrderCancelled, OrderCreated
from apps.returns.events import RefundedLine, ReturnRefunded
from outbox.writer import OutboxRecord, add_event
from tests.support.db import fetch
from tests.support.http import api_client, create_customer, service_url
from tests.support.orders import (
    eventually,
    order_cancelled,
    order_confirmed,
    order_created,
    order_engine,
    produce_copy,
    stats,
    write_events,
)

pytestmark = pytest.mark.usefixtures("stack")

GROUP = group.name
ORDER_TOPIC = topic_for("order")
RETURN_TOPIC = topic_for("return")


def _ends(topics: list[str]) -> list[TopicPartition]:
    """Each partition of ``topics`` holding records, at its end as it is now (its high watermark as the
    offset); an empty one has nothing to wait for (and, on a fresh stack, no committed offset)."""
    client = Consumer({"bootstrap.servers": kafka_bootstrap(), "group.id": GROUP})
    try:
        ends = []
        for topic in topics:
            for partition in client.list_topics(topic, timeout=10).topics[topic].partitions:
                low, end = client.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                if end > low:
                    ends.append(TopicPartition(topic, partition, end))
        return ends
    finally:
        client.close()


def _committed_through(ends: list[TopicPartition]) -> bool:
    """Whether the group has committed every partition of ``ends`` up to that offset: all it was sent up to
    then applied or skipped (a consumer of the group that does not subscribe: it joins nothing)."""
    client = Consumer({"bootstrap.servers": kafka_bootstrap(), "group.id": GROUP})
    try:
        committed = client.committed([TopicPartition(e.topic, e.partition) for e in ends], timeout=10)
        return all(c.offset >= e.offset for c, e in zip(committed, ends, strict=True))
    finally:
        client.close()


async def answer(customer_id: str) -> dict[str, Any]:
    async with api_client() as http:
        response = await http.get(f"{service_url('customer')}/api/customers/{customer_id}/stats")
    assert response.status_code == 200, response.text
    return dict(response.json())


def lines(body: dict[str, Any]) -> dict[str, tuple[int, int, str, int, str]]:
    return {
        c["currency"]: (
            c["orders_count"],
            c["cancelled_count"],
            c["total_spent"],
            c["returns_count"],
            c["refunded_amount"],
        )
        for c in body["by_currency"]
    }


async def write_refund(refund: ReturnRefunded) -> OutboxRecord:
    """return.refunded through the returns service's outbox, as the returns consumer writes it."""
    engine: AsyncEngine = create_async_engine(database_url(BY_NAME["returns"]), pool_size=1)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            return await add_event(session, refund.return_id, refund)
    finally:
        await engine.dispose()


def refunded(customer_id: str, order_id: uuid.UUID, amount: str, currency: str) -> ReturnRefunded:
    return ReturnRefunded(
        return_id=uuid.uuid4(),
        return_number=f"RET-{uuid.uuid4().hex[:8].upper()}",
        order_id=order_id,
        customer_id=customer_id,
        refund_id=uuid.uuid4(),
        amount=Decimal(amount),
        currency=currency,
        items=[RefundedLine(product_id=uuid.uuid4(), quantity=1, refund_amount=Decimal(amount))],
        refunded_at=dt.datetime.now(dt.UTC),
    )


async def test_two_currencies_are_two_totals_and_a_yen_refund_comes_off_the_yen_line_only() -> None:
    customer = (await create_customer())["id"]
    dollars = order_created(customer, "100.00")
    yen = order_created(customer, "10000", currency="JPY")
    # A pending order confirmed by the saga, then cancelled: counted once, then its money comes off, in yen.
    pending = order_created(customer, "2500", currency="JPY")
    engine = order_engine()
    try:
        await write_events(engine, [dollars, yen])
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions() as session, session.begin():
            await add_event(session, pending.order_id, order_confirmed(pending))
        await write_events(engine, [order_cancelled(pending)])
    finally:
        await engine.dispose()

    async def counted() -> bool:
        body = await answer(customer)
        return (body["orders_count"], body["cancelled_count"]) == (3, 1)

    await eventually(counted, within=90, what="three orders and a cancellation counted")
    body = await answer(customer)
    assert lines(body) == {"JPY": (2, 1, "10000.00", 0, "0.00"), "USD": (1, 0, "100.00", 0, "0.00")}
    assert [c["currency"] for c in body["by_currency"]] == ["JPY", "USD"]  # by code

    await write_refund(refunded(customer, yen.order_id, "1500", "JPY"))

    async def refund_counted() -> bool:
        return bool((await answer(customer))["returns_count"] == 1)

    await eventually(refund_counted, within=90, what="the yen refund counted")
    body = await answer(customer)
    assert lines(body) == {"JPY": (2, 1, "8500.00", 1, "1500.00"), "USD": (1, 0, "100.00", 0, "0.00")}
    # The table holds what the answer says: a row per currency, nothing under another code.
    usd, jpy = await stats(customer, "USD"), await stats(customer, "JPY")
    assert usd is not None and jpy is not None
    assert (usd["spent"], usd["refunded"], jpy["spent"], jpy["refunded"]) == (
        Decimal("100.00"),
        Decimal("0.00"),
        Decimal("8500.00"),
        Decimal("1500.00"),
    )
    assert await stats(customer, "XXX") is None


async def test_a_refund_reported_in_lower_case_counts_in_its_orders_currency() -> None:
    """The payment reports its currency as the provider spells it; the line is the order's (analytics agrees)."""
    customer = (await create_customer())["id"]
    order = order_created(customer, "20.00", currency="EUR")
    engine = order_engine()
    try:
        await write_events(engine, [order])
    finally:
        await engine.dispose()
    await eventually(lambda: _orders(customer, 1), within=90, what="the order counted")
    await write_refund(refunded(customer, order.order_id, "5.00", "eur"))

    async def refund_counted() -> bool:
        return bool((await answer(customer))["returns_count"] == 1)

    await eventually(refund_counted, within=90, what="the refund counted")
    assert lines(await answer(customer)) == {"EUR": (1, 0, "15.00", 1, "5.00")}


async def _orders(customer: str, count: int) -> bool:
    return bool((await answer(customer))["orders_count"] == count)


async def _rows(customer: str) -> list[tuple[Any, ...]]:
    rows = await fetch(
        "customer",
        "SELECT currency, orders_count, cancelled_count, spent, last_order_at, returns_count, refunded "
        "FROM customer_stats WHERE customer_id = $1 ORDER BY currency",
        customer,
    )
    return [tuple(r) for r in rows]


async def test_a_rebuild_of_a_customers_events_gives_back_the_same_rows_per_currency() -> None:
    """What `just replay customer-stats --to-earliest --rebuild` does, for this test's customer only: its rows
    and the group's inbox rows of its events deleted, the same records delivered again (same ids and versions,
    one burst, so batched otherwise than the first time): every currency's row comes back identical, and
    each event is applied once (a second copy of every record changes nothing)."""
    customer = (await create_customer())["id"]
    yen = order_created(customer, "10000", currency="JPY")
    euros = order_created(customer, "1.00", currency="EUR")
    events: list[OrderCreated | OrderCancelled] = [
        order_created(customer, "100.00"),
        yen,
        order_created(customer, "30.00", currency="EUR"),
        euros,
        order_cancelled(euros),
    ]
    engine = order_engine()
    try:
        records = await write_events(engine, events)
    finally:
        await engine.dispose()
    refund = refunded(customer, yen.order_id, "1500", "JPY")
    refund_record = await write_refund(refund)

    async def all_applied() -> bool:
        body = await answer(customer)
        return (body["orders_count"], body["cancelled_count"], body["returns_count"]) == (4, 1, 1)

    await eventually(all_applied, within=90, what="the events applied")
    before = await _rows(customer)
    assert [row[:4] for row in before] == [
        ("EUR", 2, 1, Decimal("30.00")),
        ("JPY", 1, 0, Decimal("8500.00")),
        ("USD", 1, 0, Decimal("100.00")),
    ]

    # The rebuild's emptying, for this customer: its rows and the inbox rows of its events.
    ids = [record.event_id for record in records]
    inbox = await fetch(
        "customer", "SELECT event_id FROM inbox WHERE consumer_group = $1 AND event_id = ANY($2)", GROUP, ids
    )
    assert len(inbox) == len(records)  # every order event was applied once
    await fetch("customer", "DELETE FROM inbox WHERE consumer_group = $1 AND event_id = ANY($2)", GROUP, ids)
    await fetch(
        "customer", "DELETE FROM inbox WHERE consumer_group = $1 AND aggregate_id = $2", GROUP, refund.return_id
    )
    await fetch("customer", "DELETE FROM customer_stats WHERE customer_id = $1", customer)
    assert await _rows(customer) == []

    # The re-read: every record again, twice (the second copy is a duplicate the inbox skips).
    for _ in range(2):
        for record, event in zip(records, events, strict=True):
            produce_copy(ORDER_TOPIC, record, event)
        produce_copy(RETURN_TOPIC, refund_record, refund)
    copies_end = await asyncio.to_thread(_ends, [ORDER_TOPIC, RETURN_TOPIC])

    async def rebuilt() -> bool:
        return len(await _rows(customer)) == 3 and (await _rows(customer))[1][5] == 1

    await eventually(rebuilt, within=90, what="the rows rebuilt")

    async def copies_handled() -> bool:
        return await asyncio.to_thread(_committed_through, copies_end)

    # The second copies have had their turn once the group committed past them (offsets are committed every
    # 5 s): a fixed 2 s assumed they had, and on a busy machine the assertion below could pass before they did.
    await eventually(copies_handled, within=90, what="the group committed past the copies")
    assert await _rows(customer) == before
