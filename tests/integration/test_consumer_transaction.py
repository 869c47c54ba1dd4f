"""The runtime's batch transaction (outbox.transaction, outbox.connection) against the customer database.

The transaction is begun and committed on the driver's adapter unless a handler uses the session; these
tests pin down that every way a handler writes (the driver's statements, the session's statements, ORM
objects left unflushed, savepoints) lands in the one transaction of the batch's inbox claim, and that a
failure leaves nothing of the batch behind.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from apps.common.topology import BY_NAME, database_url
from apps.customer.models import CustomerStats
from outbox.consumer import ConsumerGroup, EventContext
from outbox.decoding import Parsed
from outbox.runner import CONSUMER_SESSION
from outbox.transaction import BatchTransaction, IsolateBatch
from outbox.writer import new_event_id
from tests.support.db import fetch
from tests.support.orders import order_created

pytestmark = pytest.mark.usefixtures("stack")

_UPSERT_SQL = (
    "INSERT INTO customer_stats (customer_id, currency, orders_count) VALUES ({}, 'USD', 1) "
    "ON CONFLICT (customer_id, currency) DO UPDATE SET orders_count = customer_stats.orders_count + 1"
)
_UPSERT = text(_UPSERT_SQL.format(":customer"))  # through the session
_UPSERT_DRIVER = _UPSERT_SQL.format("$1")  # on the driver's connection, as outbox.statements sends


class Harness:
    """A group of its own with one batch handler, ``self.handle``, swapped per test."""

    def __init__(self) -> None:
        self.group = ConsumerGroup(f"test-tx-{uuid.uuid4().hex[:10]}", topic_override=["test.tx"])
        self.customers: list[str] = []
        self.handle: Any = None
        self.seen: list[dict[str, Any]] = []

        async def handler(session: AsyncSession, items: Sequence[tuple[Any, EventContext]]) -> None:
            await self.handle(session, items)

        self.group.batch_handler("order.created")(handler)
        self.engine = create_async_engine(
            database_url(BY_NAME["customer"]),
            pool_size=1,
            max_overflow=0,
            connect_args={"server_settings": CONSUMER_SESSION},
        )
        self.tx = BatchTransaction(self.group, async_sessionmaker(self.engine, expire_on_commit=False), self.dead)
        self.dead_letters: list[Any] = []

    def dead(self, letters: Sequence[Any]) -> None:
        self.dead_letters += letters

    def batch(self, n: int = 1) -> list[Parsed]:
        items = []
        for _ in range(n):
            customer = str(uuid.uuid4())
            self.customers.append(customer)
            event = order_created(customer, "1.00")
            ctx = EventContext(
                event_id=new_event_id(),
                aggregate_id=event.order_id,
                aggregate_type="order",
                event_type="order.created",
                event_version=1,
                schema_version=1,
                topic="test.tx",
                partition=0,
                offset=len(self.customers),
                timestamp=dt.datetime.now(dt.UTC),
            )
            items.append(Parsed(_FakeMessage(), event, ctx))  # type: ignore[arg-type]
        return items

    async def apply(self, items: list[Parsed], *, isolate: bool = False) -> None:
        await self.tx.apply(items, [], isolate=isolate)

    async def close(self) -> None:
        await self.tx.close()
        await self.engine.dispose()
        ids = self.customers
        await fetch("customer", "DELETE FROM customer_stats WHERE customer_id = ANY($1::varchar[])", ids)
        await fetch("customer", "DELETE FROM inbox WHERE consumer_group = $1", self.group.name)


class _FakeMessage:
    """What a Poison needs of a Kafka message to become a dead letter."""

    def topic(self) -> str:
        return "test.tx"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0

    def key(self) -> bytes:
        return b""

    def value(self) -> bytes:
        return b"{}"

    def headers(self) -> list[tuple[str, bytes]]:
        return [("event_type", b"order.created")]

    def timestamp(self) -> tuple[int, int]:
        return 0, 0


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    try:
        yield h
    finally:
        await h.close()


async def claimed(h: Harness) -> dict[uuid.UUID, str]:
    rows = await fetch("customer", "SELECT event_id, outcome FROM inbox WHERE consumer_group = $1", h.group.name)
    return {r["event_id"]: r["outcome"] for r in rows}


async def counts(h: Harness) -> dict[str, int]:
    rows = await fetch(
        "customer",
        "SELECT customer_id, orders_count FROM customer_stats WHERE customer_id = ANY($1::varchar[])",
        h.customers,
    )
    return {r["customer_id"]: r["orders_count"] for r in rows}


def ids(items: list[Parsed]) -> set[uuid.UUID]:
    return {p.ctx.event_id for p in items}


async def test_each_way_a_handler_writes_commits_with_the_claim_in_one_transaction(harness: Harness) -> None:
    h = harness

    async def write_three_ways(session: AsyncSession, items: Sequence[tuple[Any, EventContext]]) -> None:
        (first, _), (second, _), (third, _) = items
        driver_xid = await session.info["outbox.driver"].fetchval("SELECT txid_current()")
        await session.info["outbox.driver"].execute(_UPSERT_DRIVER, first.customer_id)
        await session.execute(_UPSERT, {"customer": second.customer_id})  # the session's own statement
        # Left for the commit to flush.
        session.add(CustomerStats(customer_id=third.customer_id, currency="USD", orders_count=1))
        session_xid = (await session.execute(text("SELECT txid_current()"))).scalar_one()
        h.seen.append({"driver": driver_xid, "session": session_xid})

    h.handle = write_three_ways
    items = h.batch(3)
    await h.apply(items)
    assert h.seen[0]["driver"] == h.seen[0]["session"]
    assert await counts(h) == dict.fromkeys(h.customers, 1)
    assert await claimed(h) == dict.fromkeys(ids(items), "applied")


async def test_a_batch_after_one_that_used_the_session_starts_afresh(harness: Harness) -> None:
    h = harness

    async def orm_then_driver(session: AsyncSession, items: Sequence[tuple[Any, EventContext]]) -> None:
        h.seen.append({"identity_map": len(session.sync_session.identity_map)})
        event = items[0][0]
        if len(h.seen) == 1:
            session.add(CustomerStats(customer_id=event.customer_id, currency="USD", orders_count=1))
            await session.flush()
        else:
            await session.info["outbox.driver"].execute(_UPSERT_DRIVER, event.customer_id)

    h.handle = orm_then_driver
    for _ in range(3):
        await h.apply(h.batch())
    assert [s["identity_map"] for s in h.seen] == [0, 0, 0]
    assert await counts(h) == dict.fromkeys(h.customers, 1)
    assert len(await claimed(h)) == 3


@pytest.mark.parametrize("through", ["driver", "session"])
async def test_a_handler_that_fails_leaves_nothing_of_the_batch(harness: Harness, through: str) -> None:
    h = harness

    async def write_then_fail(session: AsyncSession, items: Sequence[tuple[Any, EventContext]]) -> None:
        customer = items[0][0].customer_id
        if through == "driver":
            await session.info["outbox.driver"].execute(_UPSERT_DRIVER, customer)
        else:
            await session.execute(_UPSERT, {"customer": customer})
        raise ValueError("refused")

    h.handle = write_then_fail
    with pytest.raises(IsolateBatch):
        await h.apply(h.batch())
    assert await claimed(h) == {}
    assert await counts(h) == {}

    async def upsert(session: AsyncSession, items: Sequence[tuple[Any, EventContext]]) -> None:
        await session.execute(_UPSERT, {"customer": items[0][0].customer_id})

    h.handle = upsert  # the next batch, on a new connection, applies
    items = h.batch()
    await h.apply(items)
    assert await claimed(h) == dict.fromkeys(ids(items), "applied")


async def test_isolating_a_batch_applies_the_good_events_and_dead_letters_the_bad(harness: Harness) -> None:
    h = harness
    items = h.batch(3)
    bad = h.customers[1]

    async def refuse_one(session: AsyncSession, batch: Sequence[tuple[Any, EventContext]]) -> None:
        for event, _ in batch:
            if event.customer_id == bad:
                raise ValueError("refused")
            await session.execute(_UPSERT, {"customer": event.customer_id})

    h.handle = refuse_one
    with pytest.raises(IsolateBatch):
        await h.apply(items)
    await h.apply(items, isolate=True)
    assert await counts(h) == {c: 1 for c in h.customers if c != bad}
    outcomes = await claimed(h)
    assert outcomes[items[1].ctx.event_id] == "dead_lettered"
    assert [outcomes[items[i].ctx.event_id] for i in (0, 2)] == ["applied", "applied"]
    assert len(h.dead_letters) == 1
