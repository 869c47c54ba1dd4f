"""The saga's answer to inventory.reserved in two round trips: lock and read the order, then one write.

inventory.reserved reaches the saga once per order placed, so it is the saga's hot path. Through the ORM
it took three SELECTs (order, lines, saga), a flush of four statements and the outbox insert, with an
ORM object per row (docs/benchmarks.md, issue 11). Here one statement locks the order then its saga row
(the order every writer uses: the saga row is locked only once its order's row is) and reads the lines,
and one statement of data-modifying CTEs writes what the ORM path wrote: the lines' reservation, and
for the step's answer either the confirmation (order, history row, saga done, order.confirmed) or the
payment request (saga on payment, order.payment_requested). The outcome and the events are the same.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from apps.order.events import OrderConfirmed, OrderLine
from apps.order.rules import CONFIRMED, PENDING, check_transition
from apps.order.saga_state import DONE, PAYMENT, RESERVATION, step_timeout
from apps.order.transitions import SAGA
from apps.payment.events import OrderPaymentRequested, PaymentMethod
from outbox.events import Event, encode_payload
from outbox.writer import new_event_id

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Row
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.warehouse.events import ReservedItem

# The order (locked), its saga row (locked after it; none for an order older than the saga) and its lines.
_HOLD = text(
    """
    WITH o AS (
        SELECT id, order_number, customer_id, status, currency, total_amount, payment_status, created_at
        FROM orders WHERE id = :order_id FOR UPDATE
    ), s AS (
        SELECT order_id, step, payment_method_type, payment_token, payment_attempts
        FROM order_sagas WHERE order_id IN (SELECT id FROM o) FOR UPDATE
    )
    SELECT o.*, s.step, s.payment_method_type, s.payment_token, s.payment_attempts, i.*
    FROM o
    LEFT JOIN s ON s.order_id = o.id
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(id ORDER BY id), '{}') AS item_ids,
               coalesce(array_agg(product_id ORDER BY id), '{}') AS product_ids,
               coalesce(array_agg(product_sku ORDER BY id), '{}') AS skus,
               coalesce(array_agg(quantity ORDER BY id), '{}') AS quantities,
               coalesce(array_agg(unit_price ORDER BY id), '{}') AS unit_prices,
               coalesce(array_agg(total_price ORDER BY id), '{}') AS total_prices
        FROM order_items WHERE order_id = o.id
    ) AS i
    """
)

# The lines' reservation and warehouse (a line the answer does not name keeps its warehouse).
_FILL = """
    it AS (
        UPDATE order_items AS i
        SET reservation_id = :reservation_id, warehouse_id = coalesce(u.warehouse_id, i.warehouse_id)
        FROM unnest(CAST(:item_ids AS bigint[]), CAST(:warehouse_ids AS uuid[])) AS u(id, warehouse_id)
        WHERE i.id = u.id
    )
"""
# One outbox event with the order's next version (what outbox.writer.add_event sends, as CTEs).
_EVENT = """
    v AS (
        INSERT INTO outbox_aggregate_version AS v (aggregate_id, aggregate_type, version)
        VALUES (:order_id, :aggregate_type, 1)
        ON CONFLICT (aggregate_id) DO UPDATE SET version = v.version + 1
        RETURNING version
    ), e AS (
        INSERT INTO event_store (id, aggregate_id, aggregate_type, event_type, event_data, event_version,
                                 schema_version)
        SELECT :event_id, :order_id, :aggregate_type, :event_type, CAST(:event_data AS jsonb), v.version,
               :schema_version
        FROM v
    )
"""
_FILL_ONLY = text(f"WITH {_FILL} SELECT 1")
_CONFIRM = text(
    f"""
    WITH {_FILL}, {_EVENT}, h AS (
        INSERT INTO order_status_history (order_id, status_from, status_to, changed_by, reason, metadata)
        VALUES (:order_id, :status_from, :status_to, :changed_by, :reason, '{{}}'::jsonb)
    ), s AS (
        UPDATE order_sagas SET step = :step, deadline_at = NULL, updated_at = :now WHERE order_id = :order_id
    )
    UPDATE orders SET status = :status_to, updated_at = :now WHERE id = :order_id
    """
)
_ASK_PAYMENT = text(
    f"""
    WITH {_FILL}, {_EVENT}
    UPDATE order_sagas
    SET step = :step, deadline_at = :deadline_at, payment_attempts = :attempts, payment_requested_at = :now,
        updated_at = :now
    WHERE order_id = :order_id
    """
)


async def reserved(
    session: AsyncSession, order_id: uuid.UUID, reservation_id: uuid.UUID, lines: Sequence[ReservedItem]
) -> None:
    """inventory.reserved: fill the lines' reservation; if the saga waits on it, confirm the order (no
    payment to take) or ask for the payment. An order cancelled meanwhile only gets its lines filled: its
    order.cancelled (after order.created, on the same partition) makes the warehouse release the stock."""
    held = (await session.execute(_HOLD, {"order_id": order_id})).one_or_none()
    if held is None:
        return  # not an order of this service (another deployment's, or a test's)
    warehouse_ids = line_warehouses(held.product_ids, lines)
    fill = {
        "order_id": order_id,
        "reservation_id": reservation_id,
        "item_ids": held.item_ids,
        "warehouse_ids": warehouse_ids,
    }
    if held.status != PENDING or held.step != RESERVATION:
        await session.execute(_FILL_ONLY, fill)
        return
    now = dt.datetime.now(dt.UTC)
    if held.payment_token is None:
        check_transition(held.status, CONFIRMED, by_saga=True)
        confirmed = _confirmed(held, now)
        history = {"status_from": held.status, "status_to": CONFIRMED, "changed_by": SAGA, "reason": "stock reserved"}
        await session.execute(_CONFIRM, fill | history | _event(confirmed) | {"step": DONE, "now": now})
        return
    attempts = held.payment_attempts + 1
    asked = OrderPaymentRequested(
        order_id=order_id,
        amount=held.total_amount,
        currency=held.currency,
        payment_method=PaymentMethod(type=held.payment_method_type or "card", token=held.payment_token),
        customer_id=held.customer_id,
        attempt=attempts,
        requested_at=now,
    )
    ask = {"step": PAYMENT, "deadline_at": now + step_timeout(PAYMENT), "attempts": attempts, "now": now}
    await session.execute(_ASK_PAYMENT, fill | _event(asked) | ask)


def line_warehouses(product_ids: Sequence[uuid.UUID], lines: Sequence[ReservedItem]) -> list[uuid.UUID | None]:
    """Each order line's warehouse (by its product) from the answer: a line split across warehouses keeps
    the warehouse holding most of its units (the reservation lists every split); None leaves the line's
    warehouse as it is."""
    best: dict[uuid.UUID, ReservedItem] = {}
    for reserved_line in lines:
        current = best.get(reserved_line.product_id)
        if current is None or reserved_line.quantity > current.quantity:
            best[reserved_line.product_id] = reserved_line
    return [where.warehouse_id if (where := best.get(product)) is not None else None for product in product_ids]


def _confirmed(held: Row[Any], now: dt.datetime) -> OrderConfirmed:
    items = [
        OrderLine(product_id=product, sku=sku, quantity=quantity, unit_price=unit, total_price=total)
        for product, sku, quantity, unit, total in zip(
            held.product_ids, held.skus, held.quantities, held.unit_prices, held.total_prices, strict=True
        )
    ]
    return OrderConfirmed(
        order_id=held.id,
        order_number=held.order_number,
        customer_id=held.customer_id,
        currency=held.currency,
        total_amount=held.total_amount,
        items=items,
        payment_status=held.payment_status,
        created_at=held.created_at,
        confirmed_at=now,
    )


def _event(event: Event) -> dict[str, Any]:
    return {
        "event_id": new_event_id(),
        "aggregate_type": event.aggregate_type,
        "event_type": event.event_type,
        "event_data": encode_payload(event).decode(),
        "schema_version": event.schema_version,
    }
