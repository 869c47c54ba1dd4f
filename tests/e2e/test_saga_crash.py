"""Crash safety of the order saga: every participant SIGKILLed and restarted while checkouts are in flight.

The order-saga consumer, the order sweeper, the warehouse-reservations consumer and the payment consumer
are each killed (SIGKILL) and restarted while a batch of checkouts runs through the stack. Afterwards every
order is decided and the cross-database invariants hold, checked by SQL in each service's own database:
a confirmed order has a held reservation and an authorized payment; a cancelled order has no held
reservation and no live authorization.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.e2e.test_saga_flow import checkout, stocked
from tests.support import consumers
from tests.support.db import fetch
from tests.support.orders import eventually

pytestmark = [pytest.mark.usefixtures("stack"), pytest.mark.slow]

CHECKOUTS = 60
UNITS = 25
VICTIMS = ("order-consumer", "order-sweeper", "warehouse-consumer", "payment-consumer")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=32)) as client:
        yield client


async def kill_each_in_turn(started: asyncio.Event) -> None:
    await started.wait()
    for name in VICTIMS:
        await consumers.kill(name)
        try:
            await asyncio.sleep(0.5)
        finally:
            await consumers.start(name)


async def statuses(order_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await fetch("order", "SELECT id, status FROM orders WHERE id = ANY($1::uuid[])", order_ids)
    return {r["id"]: r["status"] for r in rows}


async def held_reservations(order_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    rows = await fetch(
        "warehouse", "SELECT order_id FROM reservations WHERE order_id = ANY($1::uuid[]) AND status = 'reserved'",
        order_ids,
    )  # fmt: skip
    return {r["order_id"] for r in rows}


async def live_payments(order_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    rows = await fetch(
        "payment",
        "SELECT order_id FROM payments WHERE order_id = ANY($1::uuid[]) AND status IN ('authorized', 'captured')",
        order_ids,
    )
    return {r["order_id"] for r in rows}


async def test_every_checkout_ends_decided_and_consistent_across_kills(http: httpx.AsyncClient) -> None:
    product = await stocked("2.00", UNITS)
    started = asyncio.Event()

    async def one(index: int) -> str:
        token = "tok_chargeDeclined" if index % 6 == 5 else "tok_visa"
        placed = await checkout(http, [(product, 1)], token)
        started.set()
        return str(placed["order_id"])

    killer = asyncio.create_task(kill_each_in_turn(started))
    try:
        placed = await asyncio.gather(*(one(i) for i in range(CHECKOUTS)))
    finally:
        await killer
    order_ids = [uuid.UUID(o) for o in placed]

    async def all_decided() -> bool:
        found = await statuses(order_ids)
        return len(found) == CHECKOUTS and all(s in ("confirmed", "cancelled") for s in found.values())

    await eventually(all_decided, within=300, what="every checkout's order confirmed or cancelled")

    async def consistent() -> bool:
        found = await statuses(order_ids)
        confirmed = {o for o, s in found.items() if s == "confirmed"}
        cancelled = {o for o, s in found.items() if s == "cancelled"}
        reserved, live = await held_reservations(order_ids), await live_payments(order_ids)
        return confirmed <= reserved and confirmed <= live and not (cancelled & reserved) and not (cancelled & live)

    # Releases and voids of compensated orders are themselves events in flight: wait for them.
    await eventually(consistent, within=180, what="confirmed: reserved and authorized; cancelled: nothing held")
    found = await statuses(order_ids)
    confirmed = [o for o, s in found.items() if s == "confirmed"]
    assert 0 < len(confirmed) <= UNITS
    reasons = await fetch(
        "order", "SELECT DISTINCT reason FROM order_sagas WHERE order_id = ANY($1::uuid[]) AND reason IS NOT NULL",
        order_ids,
    )  # fmt: skip
    assert {r["reason"] for r in reasons} <= {"out_of_stock", "payment_declined", "timeout"}
