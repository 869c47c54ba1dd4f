"""Write order events the way the order service does (outbox writer), and read customer stats."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any

from confluent_kafka import Producer
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from apps.checkout.events import CheckoutAddress, CheckoutCompleted, CheckoutLine
from apps.common.topology import BY_NAME, database_url, kafka_bootstrap
from apps.order.events import OrderCancelled, OrderConfirmed, OrderCreated, OrderLine
from outbox.events import Event, payload_as_dict
from outbox.writer import OutboxRecord, add_event
from tests.support.db import connect


def order_engine() -> AsyncEngine:
    return create_async_engine(database_url(BY_NAME["order"]), pool_size=5, max_overflow=20)


def checkout_completed(
    token: str = "tok_visa", *, guest: bool = True, product_id: uuid.UUID | None = None
) -> CheckoutCompleted:
    """A checkout of one unit paid with the sandbox card ``token``: a guest's (or a registered customer's), of a
    product nobody stocks unless given one. apps/order/checkout_orders.py create_from_checkout places it."""
    address = CheckoutAddress(address_line1="1 Main St", city="Springfield", country="US")
    line = CheckoutLine(
        product_id=product_id or uuid.uuid4(), sku="SAGA-T", name="t", quantity=1, unit_price=Decimal("4.00"),
        total_price=Decimal("4.00"),
    )  # fmt: skip
    return CheckoutCompleted(
        checkout_id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        cart_id=uuid.uuid4(),
        customer_id=f"cs_{uuid.uuid4().hex}" if guest else str(uuid.uuid4()),
        is_guest=guest,
        currency="USD",
        lines=[line],
        shipping_address=address,
        billing_address=address,
        shipping_method_id="standard",
        shipping_method_name="Standard",
        payment_method_type="card",
        payment_method_id=token,
        subtotal=Decimal("4.00"),
        tax_amount=Decimal("0.00"),
        shipping_amount=Decimal("5.00"),
        discount_amount=Decimal("0.00"),
        total_amount=Decimal("9.00"),
        completed_at=dt.datetime.now(dt.UTC),
    )


def order_created(
    customer_id: str, total: str = "10.00", order_id: uuid.UUID | None = None, currency: str = "USD"
) -> OrderCreated:
    order_id = order_id or uuid.uuid4()
    amount = Decimal(total)
    return OrderCreated(
        order_id=order_id,
        order_number=f"ORD-{order_id.hex[:12].upper()}",
        customer_id=customer_id,
        status="confirmed",
        currency=currency,
        total_amount=amount,
        items=[OrderLine(product_id=uuid.uuid4(), sku="SKU-T", quantity=1, unit_price=amount, total_price=amount)],
        created_at=dt.datetime.now(dt.UTC),
    )


def order_confirmed(created: OrderCreated, confirmed_at: dt.datetime | None = None) -> OrderConfirmed:
    """The saga's order.confirmed of ``created`` (payment authorized)."""
    return OrderConfirmed(
        order_id=created.order_id,
        order_number=created.order_number,
        customer_id=created.customer_id,
        currency=created.currency,
        total_amount=created.total_amount,
        items=created.items,
        payment_status="authorized",
        created_at=created.created_at,
        confirmed_at=confirmed_at or dt.datetime.now(dt.UTC),
    )


def order_cancelled(created: OrderCreated) -> OrderCancelled:
    return OrderCancelled(
        order_id=created.order_id,
        customer_id=created.customer_id,
        currency=created.currency,
        total_amount=created.total_amount,
        items=created.items,
        reason="test",
        cancelled_at=dt.datetime.now(dt.UTC),
    )


async def write_events(
    engine: AsyncEngine, events: Sequence[OrderCreated | OrderCancelled], per_transaction: int = 1
) -> list[OutboxRecord]:
    """Write events through the outbox writer, ``per_transaction`` events per committed transaction."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    records = []
    for start in range(0, len(events), per_transaction):
        async with sessions() as session, session.begin():
            for ev in events[start : start + per_transaction]:
                records.append(await add_event(session, ev.order_id, ev))
    return records


async def stats(customer_id: str, currency: str = "USD") -> dict[str, Any] | None:
    """The customer's customer_stats row in ``currency`` (one per customer and currency), None before one."""
    conn = await connect("customer")
    try:
        row = await conn.fetchrow(
            "SELECT * FROM customer_stats WHERE customer_id = $1 AND currency = $2", customer_id, currency
        )
        return dict(row) if row else None
    finally:
        await conn.close()


async def stats_checksum() -> str:
    conn = await connect("customer")
    try:
        value = await conn.fetchval(
            """SELECT md5(coalesce(string_agg(concat_ws('|', customer_id, currency, orders_count, cancelled_count,
                      spent, last_order_at), ',' ORDER BY customer_id, currency), ''))
               FROM customer_stats"""
        )
        return str(value)
    finally:
        await conn.close()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {within}s")
        await asyncio.sleep(0.1)


def produce_raw(
    topic: str,
    *,
    key: str,
    event_type: str,
    payload: bytes | dict[str, Any],
    event_id: uuid.UUID | None = None,
    event_version: int = 1,
    schema_version: int = 1,
    producer: Producer | None = None,
) -> uuid.UUID:
    """Produce a record shaped like Debezium's EventRouter output (for duplicates and poison messages); a
    copy of a stored event passes its row's versions (a v2 payload read as v1 loses its v2 fields). With a
    ``producer`` of the caller's (many records), the caller flushes it; without, the record is flushed here."""
    event_id = event_id or uuid.uuid4()
    value = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    own = producer is None
    producer = producer or Producer({"bootstrap.servers": kafka_bootstrap()})
    producer.produce(
        topic,
        key=key.encode(),
        value=value,
        headers=[
            ("id", str(event_id).encode()),
            ("event_type", event_type.encode()),
            ("event_version", str(event_version).encode()),
            ("schema_version", str(schema_version).encode()),
            ("aggregate_type", topic.split(".")[-1].encode()),
        ],
    )
    if own:
        assert producer.flush(10) == 0
    return event_id


def in_currency(answer: dict[str, Any], currency: str = "USD") -> dict[str, Any]:
    """GET /api/customers/{id}/stats' line of ``currency`` (its ``by_currency``), zeros while there is none."""
    for line in answer["by_currency"]:
        if line["currency"] == currency:
            return dict(line)
    zero = "0.00"
    return {
        "currency": currency,
        "orders_count": 0,
        "cancelled_count": 0,
        "total_spent": zero,
        "last_order_at": None,
        "returns_count": 0,
        "refunded_amount": zero,
    }


def produce_copy(topic: str, record: OutboxRecord, event: Event) -> None:
    """The Kafka record of an event written through the outbox (``record``), delivered again as Debezium or a
    replay delivers it: same key (the aggregate), id, type and versions."""
    produce_raw(
        topic,
        key=str(record.aggregate_id),
        event_type=record.event_type,
        payload=payload_as_dict(event),
        event_id=record.event_id,
        event_version=record.event_version,
        schema_version=record.schema_version,
    )
