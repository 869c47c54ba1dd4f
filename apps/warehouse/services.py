"""StockService (stock levels, HTTP) and ReservationService (orders' reservations, consumer and HTTP).

StockService owns its commit, like every HTTP write path: a failed commit raises, so the client never
hears "done" for something rolled back. ReservationService never commits: it runs inside the consumer
runtime's transaction, which also holds the event's inbox row, so the reservation rows, the stock change
and the inventory.* outbox row commit (or roll back) together with the fact that the event was applied.

Race-freedom: every path that changes stock_levels first locks the rows it touches with SELECT ... FOR
UPDATE in (product_id, warehouse_id) order, the table's primary-key order. Two writers therefore never
wait for each other in a cycle, and the maths (rules.Ledger) runs on values nobody else can change until
the transaction ends. The CHECK constraints (reserved >= 0, on_hand >= reserved) are the backstop.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import selectinload
from uuid_utils.compat import uuid7

from apps.common.errors import UnknownReference
from apps.common.models import utc_now
from apps.warehouse.decisions import lock_and_look, write_decisions
from apps.warehouse.events import (
    InventoryReleased,
    InventoryReservationFailed,
    InventoryReserved,
    ReservedItem,
    StockShortage,
)
from apps.warehouse.models import Reservation, ReservationItem, StockLevel, Warehouse
from apps.warehouse.rules import (
    DEFAULT_WAREHOUSE_ID,
    FAILED,
    RELEASED,
    RESERVED,
    Allocation,
    Ledger,
    Line,
    Plan,
    Stock,
    can_release,
    check_on_hand,
    check_quantity,
)
from outbox.errors import ContentionError
from outbox.writer import add_event

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.warehouse.clients import Dependencies

__all__ = ["ReservationRequest", "ReservationService", "StockService"]

log = logging.getLogger("apps.warehouse.reservations")


@dataclass(frozen=True, slots=True)
class ReservationRequest:
    """An order that wants its lines held (from order.created)."""

    order_id: uuid.UUID
    lines: Sequence[Line]
    correlation_id: str | None = None  # the order.created's (outbox/correlation.py): its decision carries it


async def _lock_stock(session: AsyncSession, product_ids: Iterable[uuid.UUID]) -> list[Stock]:
    """Lock every stock row of these products, in primary-key order (see the module docstring)."""
    wanted = sorted(set(product_ids))
    if not wanted:
        return []
    statement = (
        select(StockLevel.product_id, StockLevel.warehouse_id, StockLevel.on_hand, StockLevel.reserved)
        .where(StockLevel.product_id.in_(wanted))
        .order_by(StockLevel.product_id, StockLevel.warehouse_id)
        .with_for_update()
    )
    return [Stock(*row) for row in (await session.execute(statement)).tuples()]


# One statement for a whole batch's net change of `reserved`, row by row (the rows are locked already).
_ADJUST_RESERVED = text(
    """
    UPDATE stock_levels AS s
    SET reserved = s.reserved + d.delta, updated_at = now()
    FROM unnest(CAST(:products AS uuid[]), CAST(:warehouses AS uuid[]), CAST(:deltas AS int[]))
         AS d(product_id, warehouse_id, delta)
    WHERE s.product_id = d.product_id AND s.warehouse_id = d.warehouse_id
    """
)


async def _adjust_reserved(session: AsyncSession, changes: dict[tuple[uuid.UUID, uuid.UUID], int]) -> None:
    if not changes:
        return
    keys = list(changes)
    await session.execute(
        _ADJUST_RESERVED,
        {
            "products": [product for product, _ in keys],
            "warehouses": [warehouse for _, warehouse in keys],
            "deltas": [changes[key] for key in keys],
        },
    )


class StockService:
    """Stock levels: set a product's on_hand in a warehouse, read a product's stock.

    Setting stock publishes no event: no consumer needs stock changes (reservations are decided here).
    """

    def __init__(self, session: AsyncSession, dependencies: Dependencies) -> None:
        self.session = session
        self.dependencies = dependencies

    async def set_on_hand(self, product_id: uuid.UUID, quantity: int, warehouse_id: uuid.UUID | None = None) -> Stock:
        """Set the units on hand (not a delta) of a product the catalog has (422 otherwise, 503 when the
        catalog does not answer); refused (409) below what orders hold reserved."""
        quantity = check_quantity(quantity)
        # Asked before the first statement, so no database connection waits on the catalog.
        await self.dependencies.require_product(product_id)
        warehouse_id = warehouse_id or DEFAULT_WAREHOUSE_ID
        await self._require_warehouse(warehouse_id)
        key = (StockLevel.product_id == product_id, StockLevel.warehouse_id == warehouse_id)
        # Make sure the row exists, then lock it: the check below holds until our commit.
        await self.session.execute(
            pg_insert(StockLevel)
            .values(product_id=product_id, warehouse_id=warehouse_id, on_hand=0, reserved=0, updated_at=utc_now())
            .on_conflict_do_nothing(index_elements=[StockLevel.product_id, StockLevel.warehouse_id])
        )
        reserved = (await self.session.execute(select(StockLevel.reserved).where(*key).with_for_update())).scalar_one()
        # A StateConflict (409) here leaves the request's session to roll back when it closes.
        check_on_hand(quantity, reserved)
        await self.session.execute(
            update(StockLevel)
            .where(*key)
            .values(on_hand=quantity, updated_at=utc_now())
            .execution_options(synchronize_session=False)
        )
        await self.session.commit()
        return Stock(product_id, warehouse_id, quantity, reserved)

    async def levels(self, product_id: uuid.UUID) -> list[Stock]:
        """The product's stock per warehouse; empty when it was never set (which means 0 available)."""
        statement = (
            select(StockLevel.product_id, StockLevel.warehouse_id, StockLevel.on_hand, StockLevel.reserved)
            .where(StockLevel.product_id == product_id)
            .order_by(StockLevel.warehouse_id)
        )
        return [Stock(*row) for row in (await self.session.execute(statement)).tuples()]

    async def _require_warehouse(self, warehouse_id: uuid.UUID) -> None:
        found = await self.session.scalar(select(Warehouse.id).where(Warehouse.id == warehouse_id))
        if found is None:
            raise UnknownReference("warehouse_id", f"no warehouse has the id {warehouse_id}")


class ReservationService:
    """Orders' reservations: reserve all of an order's lines or none, release them, read them.

    reserve and release take a whole consumer batch at once (set-based SQL, a handful of statements
    plus one outbox insert per order) and never commit: the consumer runtime owns the transaction.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def reserve(self, requests: Sequence[ReservationRequest]) -> int:
        """Decide each order once, in the given order; return how many orders were decided now.

        An order that already has a reservation (reserved, released or failed) is left alone, so a
        repeated order.created changes nothing and emits nothing.
        """
        if not requests:
            return 0
        # The stock rows locked and the orders decided before, in one round trip. A concurrent decision on
        # one of these orders (a second consumer) that committed while we waited for its stock rows is not
        # in this statement's snapshot: its reservation row makes our insert skip, and the batch retries.
        products = {line.product_id for r in requests for line in r.lines}
        stock, decided = await lock_and_look(self.session, products, {r.order_id for r in requests})
        ledger = Ledger(stock)
        now = utc_now()
        reservations: list[dict[str, Any]] = []
        items: list[dict[str, Any]] = []
        events: list[InventoryReserved | InventoryReservationFailed] = []
        correlation_ids: list[str | None] = []
        for request in requests:
            if request.order_id in decided:
                continue
            decided.add(request.order_id)
            row, held, event = _decide(request, ledger.reserve(request.lines), now)
            reservations.append(row)
            items += held
            events.append(event)
            correlation_ids.append(request.correlation_id)
        if not reservations:
            return 0
        decided_now = [(event.order_id, event) for event in events]
        inserted = await write_decisions(
            self.session, reservations, items, ledger.changes(), decided_now, now, correlation_ids
        )
        if inserted != len(reservations):
            # Only possible when a second consumer decided one of these orders at the same moment;
            # the retried batch sees its decision and leaves that order alone. Contention, as a deadlock:
            # the retry is expected to pass at once, so /ready stays 200 through it (it was 503 at once).
            raise ContentionError("an order of this batch was decided concurrently")
        for (order_id, event), correlation in zip(decided_now, correlation_ids, strict=True):
            # One line per decision, with the request that placed the order (its id: the event's header), so
            # `just logs | grep <id>` follows an order through the warehouse too.
            log.info("order %s: %s", order_id, event.event_type, extra={"request_id": correlation})
        return len(reservations)

    async def release(self, order_ids: Sequence[uuid.UUID]) -> int:
        """Give back the units of these orders' reservations; return how many were released now.

        An order without a reservation, with a failed one, or one released already holds nothing: no-op.
        """
        if not order_ids:
            return 0
        rows = (
            await self.session.execute(
                select(Reservation.id, Reservation.order_id, Reservation.status)
                .where(Reservation.order_id.in_(sorted(set(order_ids))))
                .order_by(Reservation.order_id)
                .with_for_update()
            )
        ).all()
        held = {row.id: row.order_id for row in rows if can_release(row.status)}
        if not held:
            return 0
        allocations = await self._allocations(list(held))
        ledger = Ledger(await _lock_stock(self.session, (a.product_id for a in _flatten(allocations))))
        for reservation_id in held:
            ledger.release(allocations[reservation_id])
        await _adjust_reserved(self.session, ledger.changes())
        now = utc_now()
        await self.session.execute(
            update(Reservation)
            .where(Reservation.id.in_(list(held)))
            .values(status=RELEASED, released_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        for reservation_id, order_id in held.items():
            released = InventoryReleased(
                order_id=order_id,
                reservation_id=reservation_id,
                items=[_item(a) for a in allocations[reservation_id]],
                released_at=now,
            )
            await add_event(self.session, order_id, released)
        return len(held)

    async def for_order(self, order_id: uuid.UUID) -> list[Reservation]:
        """The order's reservations with their items (at most one: order_id is unique)."""
        statement = (
            select(Reservation)
            .where(Reservation.order_id == order_id)
            .options(selectinload(Reservation.items))
            .order_by(Reservation.created_at)
        )
        return list((await self.session.scalars(statement)).all())

    async def _allocations(self, reservation_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Allocation]]:
        statement = (
            select(
                ReservationItem.reservation_id,
                ReservationItem.product_id,
                ReservationItem.warehouse_id,
                ReservationItem.quantity,
            )
            .where(ReservationItem.reservation_id.in_(reservation_ids))
            .order_by(ReservationItem.id)
        )
        found: dict[uuid.UUID, list[Allocation]] = defaultdict(list)
        for reservation_id, product_id, warehouse_id, quantity in (await self.session.execute(statement)).tuples():
            found[reservation_id].append(Allocation(product_id, warehouse_id, quantity))
        return found


def _decide(
    request: ReservationRequest, plan: Plan, now: dt.datetime
) -> tuple[dict[str, Any], list[dict[str, Any]], InventoryReserved | InventoryReservationFailed]:
    """The reservation row, its item rows and its event for one order's plan."""
    reservation_id: uuid.UUID = uuid7()
    row = {"id": reservation_id, "order_id": request.order_id, "created_at": now, "updated_at": now}
    if plan.reason is None:
        reserved = [_item(a) for a in plan.allocations]
        items = [{"reservation_id": reservation_id, **msgspec.to_builtins(i)} for i in reserved]
        event = InventoryReserved(
            order_id=request.order_id, reservation_id=reservation_id, items=reserved, reserved_at=now
        )
        return {**row, "status": RESERVED, "reason": None, "shortages": []}, items, event
    shortages = [
        StockShortage(product_id=s.product_id, requested=s.requested, available=s.available) for s in plan.shortages
    ]
    failed = InventoryReservationFailed(
        order_id=request.order_id, reason=plan.reason, shortages=shortages, failed_at=now
    )
    row |= {"status": FAILED, "reason": plan.reason, "shortages": msgspec.to_builtins(shortages)}
    return row, [], failed


def _item(allocation: Allocation) -> ReservedItem:
    return ReservedItem(
        product_id=allocation.product_id, warehouse_id=allocation.warehouse_id, quantity=allocation.quantity
    )


def _flatten(allocations: dict[uuid.UUID, list[Allocation]]) -> list[Allocation]:
    return [a for group in allocations.values() for a in group]
