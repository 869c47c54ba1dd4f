"""Crash safety of the order saga: every participant SIGKILLed and restarted while checkouts are in flight.

The order-saga consumer, the order sweeper, the warehouse-reservations consumer and the payment consumer
are each killed (SIGKILL, kill -9 of the process group) and restarted the way `just up` starts a process
that is down (infra.stack.start_process, waiting for its readiness probe) while a batch of 200 checkouts
runs through the stack. Afterwards every order is decided and the cross-database invariants hold, checked
by SQL in each service's own database: a confirmed order has a held reservation and an authorized payment;
a cancelled order has no held reservation and no live authorization; no order has two payments. The
provider sandbox's own ledger agrees: one live authorization per confirmed order, none for the others.
Guests check out (no customer to create first), which keeps the batch quick.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.e2e.test_saga_flow import checkout, ledger, stocked
from tests.support import consumers
from tests.support.db import fetch
from tests.support.http import api_client
from tests.support.orders import eventually

pytestmark = [pytest.mark.usefixtures("stack"), pytest.mark.slow]

CHECKOUTS = 200
UNITS = 120
# The kills start once this many checkouts completed: the batch is well under way, most of it still to come.
KILL_AFTER = 30
STAGGER_S = 1.5
# Checkouts in flight at once: more only queues them in the services (and times out their catalog calls).
PARALLEL = 12
# The payment worker is not among them: a killed worker's claimed rows wait out their 30 s lease, which here
# only turns authorizations into saga timeouts; tests/integration/test_payment_flow.py kills it mid-call.
VICTIMS = ("order-consumer", "order-sweeper", "warehouse-consumer", "payment-consumer")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(timeout=60, limits=httpx.Limits(max_connections=32, keepalive_expiry=2.0)) as client:
        yield client


async def kill_each_in_turn(started: asyncio.Event) -> None:
    """Once the batch is under way, SIGKILL each participant a little after the previous one and start it
    again after a moment; the restarts overlap (each takes seconds), the batch goes on meanwhile."""
    await started.wait()

    async def crash(delay: float, name: str) -> None:
        await asyncio.sleep(delay)
        await consumers.kill(name)
        try:
            await asyncio.sleep(0.5)
        finally:
            await consumers.start(name)

    await asyncio.gather(*(crash(STAGGER_S * i, name) for i, name in enumerate(VICTIMS)))


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


async def doubled_payments(order_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    rows = await fetch(
        "payment",
        "SELECT order_id FROM payments WHERE order_id = ANY($1::uuid[]) GROUP BY order_id HAVING count(*) > 1",
        order_ids,
    )
    return [r["order_id"] for r in rows]


async def test_every_checkout_ends_decided_and_consistent_across_kills(http: httpx.AsyncClient) -> None:
    product = await stocked("2.00", UNITS)
    started = asyncio.Event()
    done = 0

    gate = asyncio.Semaphore(PARALLEL)

    async def one(index: int) -> str:
        nonlocal done
        token = "tok_chargeDeclined" if index % 6 == 5 else "tok_visa"
        async with gate:
            placed = await checkout(http, [(product, 1)], token, guest=True)
        done += 1
        if done == KILL_AFTER:
            started.set()
        return str(placed["order_id"])

    killer = asyncio.create_task(kill_each_in_turn(started))
    try:
        placed = await asyncio.gather(*(one(i) for i in range(CHECKOUTS)))
    finally:
        if not started.is_set():
            killer.cancel()  # the batch failed before the kills began
        await asyncio.gather(killer, return_exceptions=True)
    assert killer.exception() is None
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
    assert await doubled_payments(order_ids) == []
    # The provider's books: each confirmed order holds one authorization, nothing else holds any.
    books = await asyncio.gather(*(ledger(http, str(o)) for o in order_ids))
    live = {o: entry["live_authorizations"] for o, entry in zip(order_ids, books, strict=True)}
    assert {o for o, n in live.items() if n} == set(confirmed) and set(live.values()) <= {0, 1}
