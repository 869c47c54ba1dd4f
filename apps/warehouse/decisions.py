"""A batch's reservations in two statements (issue 11): lock the stock and look up the orders decided
before; then write the reservation rows, their items, the stock's `reserved` and the inventory.* outbox
events, as data-modifying CTEs of one statement.

ReservationService.reserve took five statements plus one outbox insert per order, the two inserts built
and compiled by the ORM's bulk insert on every call. Foreign keys are checked at the write's end, when
the reservation rows exist. Both go on the driver's connection in the consumer's transaction
(outbox.statements): at one or two orders per batch, SQLAlchemy's execute was ~200 us of each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import text

from apps.warehouse.rules import Stock
from outbox.statements import Statement
from outbox.writer import events_ctes, events_parameters

if TYPE_CHECKING:
    import datetime as dt
    import uuid
    from collections.abc import Iterable, Sequence

    from sqlalchemy.ext.asyncio import AsyncSession

    from outbox.events import Event

# One event per aggregate in a call (outbox.writer.events_ctes), which one decision per order gives.
_WRITE = Statement(
    text(
        f"""
    WITH r AS (
        INSERT INTO reservations AS r (id, order_id, status, reason, shortages, created_at, updated_at)
        SELECT t.id, t.order_id, t.status, t.reason, CAST(t.shortages AS jsonb), :now, :now
        FROM unnest(CAST(:ids AS uuid[]), CAST(:order_ids AS uuid[]), CAST(:statuses AS text[]),
                    CAST(:reasons AS text[]), CAST(:shortages AS text[]))
             WITH ORDINALITY AS t(id, order_id, status, reason, shortages, n)
        ORDER BY t.n
        ON CONFLICT (order_id) DO NOTHING
        RETURNING r.order_id
    ), every AS (
        -- Nothing else is written unless every reservation went in: the caller raises a RetryableError
        -- when an order was decided concurrently, and items must not point at a row that was skipped.
        SELECT count(*) = cardinality(CAST(:ids AS uuid[])) AS ok FROM r
    ), i AS (
        INSERT INTO reservation_items (reservation_id, product_id, warehouse_id, quantity)
        SELECT t.reservation_id, t.product_id, t.warehouse_id, t.quantity
        FROM unnest(CAST(:item_reservations AS uuid[]), CAST(:item_products AS uuid[]),
                    CAST(:item_warehouses AS uuid[]), CAST(:item_quantities AS int[]))
             WITH ORDINALITY AS t(reservation_id, product_id, warehouse_id, quantity, n)
        WHERE (SELECT ok FROM every)
        ORDER BY t.n
    ), s AS (
        UPDATE stock_levels AS s
        SET reserved = s.reserved + d.delta, updated_at = now()
        FROM unnest(CAST(:stock_products AS uuid[]), CAST(:stock_warehouses AS uuid[]), CAST(:deltas AS int[]))
             AS d(product_id, warehouse_id, delta)
        WHERE s.product_id = d.product_id AND s.warehouse_id = d.warehouse_id AND (SELECT ok FROM every)
    ), {events_ctes(when="(SELECT ok FROM every)")}
    SELECT count(*) FROM r
    """
    )
)


# Lock the stock rows in primary-key order (apps/warehouse/services.py), then the orders decided before.
_LOCK_AND_LOOK = Statement(
    text(
        """
    WITH locked AS (
        SELECT product_id, warehouse_id, on_hand, reserved FROM stock_levels
        WHERE product_id = ANY(CAST(:products AS uuid[]))
        ORDER BY product_id, warehouse_id
        FOR UPDATE
    )
    SELECT product_id, warehouse_id, on_hand, reserved, CAST(NULL AS uuid) AS decided FROM locked
    UNION ALL
    SELECT NULL, NULL, NULL, NULL, order_id FROM reservations WHERE order_id = ANY(CAST(:orders AS uuid[]))
    """
    )
)


async def lock_and_look(
    session: AsyncSession, product_ids: Iterable[uuid.UUID], order_ids: Iterable[uuid.UUID]
) -> tuple[list[Stock], set[uuid.UUID]]:
    """Lock every stock row of these products; the stock rows, and which of these orders have a reservation."""
    params = {"products": sorted(set(product_ids)), "orders": list(order_ids)}
    stock: list[Stock] = []
    decided: set[uuid.UUID] = set()
    for product, warehouse, on_hand, reserved, order_id in await _LOCK_AND_LOOK.fetch(session, params):
        if order_id is None:
            stock.append(Stock(product, warehouse, on_hand, reserved))
        else:
            decided.add(order_id)
    return stock, decided


async def write_decisions(
    session: AsyncSession,
    reservations: Sequence[dict[str, Any]],
    items: Sequence[dict[str, Any]],
    changes: dict[tuple[uuid.UUID, uuid.UUID], int],
    events: Sequence[tuple[uuid.UUID, Event]],
    now: dt.datetime,
    correlation_ids: Sequence[str | None] | None = None,
) -> int:
    """Insert the reservations (an order decided already is skipped), their items, add ``changes`` to the
    stock's reserved units, and publish ``events`` (aggregate id, event; one per aggregate; with each one's
    correlation id, outbox.writer.events_parameters); the number of reservations inserted."""
    stock = list(changes)
    params = {
        "now": now,
        "ids": [r["id"] for r in reservations],
        "order_ids": [r["order_id"] for r in reservations],
        "statuses": [r["status"] for r in reservations],
        "reasons": [r["reason"] for r in reservations],
        "shortages": [msgspec.json.encode(r["shortages"]).decode() for r in reservations],
        "item_reservations": [i["reservation_id"] for i in items],
        "item_products": [i["product_id"] for i in items],
        "item_warehouses": [i["warehouse_id"] for i in items],
        "item_quantities": [i["quantity"] for i in items],
        "stock_products": [product for product, _ in stock],
        "stock_warehouses": [warehouse for _, warehouse in stock],
        "deltas": [changes[key] for key in stock],
        **events_parameters(events, correlation_ids),
    }
    (row,) = await _WRITE.fetch(session, params)
    return int(row[0])
