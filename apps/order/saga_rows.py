"""The saga's answers to inventory.reserved, a whole batch in two round trips: lock and read, then write.

inventory.reserved reaches the saga once per order placed, so it is the saga's hot path. Through the ORM
each took three SELECTs (order, lines, saga), a flush of four statements and the outbox insert, with an
ORM object per row (docs/benchmarks.md, issue 11). Here one statement locks the batch's orders (in id
order) and their saga rows (each only once its order's row is: the order every writer uses) and reads
the lines, and one statement of data-modifying CTEs writes what the ORM path wrote: the lines'
reservation, and for each order whose saga waits on it either the confirmation (order, history row,
saga done, order.confirmed) or the payment request (saga on payment, order.payment_requested). The
outcomes and the events are the same; answers for one order apply in their order (one per round). Both
statements go on the driver's connection in the consumer's transaction (outbox.statements).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from apps.order.events import OrderConfirmed, OrderLine
from apps.order.rules import CONFIRMED, PENDING, SAGA, check_transition
from apps.order.saga_state import DONE, PAYMENT, RESERVATION, step_timeout
from apps.payment.events import OrderPaymentRequested, PaymentMethod
from outbox.events import Event
from outbox.statements import Statement
from outbox.writer import events_ctes, events_parameters

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Row
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.warehouse.events import InventoryReserved, ReservedItem

log = logging.getLogger("apps.order.saga")

# The orders (locked, in id order), their saga rows (locked after them; none for an order older than the
# saga) and their lines.
_HOLD = Statement(
    text(
        """
    WITH o AS (
        SELECT id, order_number, customer_id, status, currency, total_amount, payment_status, created_at
        FROM orders WHERE id = ANY(CAST(:order_ids AS uuid[])) ORDER BY id FOR UPDATE
    ), s AS (
        SELECT order_id, step, payment_method_type, payment_token, payment_attempts
        FROM order_sagas WHERE order_id IN (SELECT id FROM o) ORDER BY order_id FOR UPDATE
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
)

# The lines' reservation and warehouse (a line the answer does not name keeps its warehouse); the
# confirmations; the payment requests; one event per order with the order's next version. The payment
# step's deadline is the database's clock plus the step's timeout: the sweeper compares it with the
# database's now(), and a deadline written from this process's clock moved with its host's skew (a host 15 s
# behind timed every payment out at once; E, session 30). The times beside it only say when.
_WRITE = Statement(
    text(
        f"""
    WITH it AS (
        UPDATE order_items AS i
        SET reservation_id = u.reservation_id, warehouse_id = coalesce(u.warehouse_id, i.warehouse_id)
        FROM unnest(CAST(:item_ids AS bigint[]), CAST(:item_reservations AS uuid[]),
                    CAST(:item_warehouses AS uuid[])) AS u(id, reservation_id, warehouse_id)
        WHERE i.id = u.id
    ), oc AS (
        UPDATE orders AS o SET status = :confirmed, updated_at = c.at
        FROM unnest(CAST(:confirm_ids AS uuid[]), CAST(:confirm_times AS timestamptz[])) AS c(id, at)
        WHERE o.id = c.id
    ), h AS (
        INSERT INTO order_status_history (order_id, status_from, status_to, changed_by, reason, metadata, created_at)
        SELECT c.id, :pending, :confirmed, :changed_by, :reason, '{{}}'::jsonb, c.at
        FROM unnest(CAST(:confirm_ids AS uuid[]), CAST(:confirm_times AS timestamptz[])) WITH ORDINALITY AS c(id, at, n)
        ORDER BY c.n
    ), sd AS (
        UPDATE order_sagas AS s SET step = :done, deadline_at = NULL, updated_at = c.at
        FROM unnest(CAST(:confirm_ids AS uuid[]), CAST(:confirm_times AS timestamptz[])) AS c(id, at)
        WHERE s.order_id = c.id
    ), sp AS (
        UPDATE order_sagas AS s
        SET step = :payment, deadline_at = statement_timestamp() + CAST(:payment_timeout AS interval),
            payment_attempts = p.attempts, payment_requested_at = p.at, updated_at = p.at
        FROM unnest(CAST(:pay_ids AS uuid[]), CAST(:pay_attempts AS int[]), CAST(:pay_times AS timestamptz[]))
             AS p(id, attempts, at)
        WHERE s.order_id = p.id
    ), {events_ctes()}
    SELECT 1
    """
    )
)


async def reserved(
    session: AsyncSession, answers: Sequence[InventoryReserved], correlation_ids: Sequence[str | None] | None = None
) -> None:
    """inventory.reserved, a batch: fill each order's lines with its reservation; where the saga waits on
    it, confirm the order (no payment to take) or ask for the payment. An order cancelled meanwhile only
    gets its lines filled: its order.cancelled (after order.created, on the same partition) makes the
    warehouse release the stock. A second answer for one order applies after the first, in a later round.
    ``correlation_ids``: each answer's (EventContext.correlation_id), carried by the event it causes."""
    remaining = list(zip(answers, correlation_ids or [None] * len(answers), strict=True))
    while remaining:
        seen: set[uuid.UUID] = set()
        now_round: list[tuple[InventoryReserved, str | None]] = []
        later: list[tuple[InventoryReserved, str | None]] = []
        for answer in remaining:
            (later if answer[0].order_id in seen else now_round).append(answer)
            seen.add(answer[0].order_id)
        await _apply(session, now_round)
        remaining = later


async def _apply(session: AsyncSession, answers: Sequence[tuple[InventoryReserved, str | None]]) -> None:
    """One answer per order."""
    found = await _HOLD.rows(session, {"order_ids": sorted(a.order_id for a, _ in answers)})
    held = {row.id: row for row in found}
    writes = _Writes()
    now = dt.datetime.now(dt.UTC)
    for answer, correlation in answers:
        row = held.get(answer.order_id)
        if row is None:
            continue  # not an order of this service (another deployment's, or a test's)
        writes.fill(row, answer)
        if row.status != PENDING or row.step != RESERVATION:
            continue
        if row.payment_token is None:
            check_transition(row.status, CONFIRMED, by_saga=True)
            writes.confirm(row, now, correlation)
        else:
            writes.ask_payment(row, now, correlation)
    if writes.item_ids or writes.events:
        await _WRITE.execute(session, writes.params())
        log_steps(writes.events, writes.correlation_ids)


# Orders named per line by log_steps: a 1,000-event batch writes ten lines of ~11 kB, not one of 107.
LINE_ORDERS = 100


def log_steps(events: Sequence[tuple[uuid.UUID, Event]], correlation_ids: Sequence[str | None]) -> None:
    """The step each order took (the event it caused) with the request that placed it, so `just logs | grep
    <id>` follows an order through the saga too: one line per LINE_ORDERS orders of a round, not one per
    order, on the saga's hot path (in-process, per order: a line each 19.1 us, as much as decoding and
    applying the event; a round's line 6.4 us; docs/decisions.md "One id for one order's story")."""
    if not log.isEnabledFor(logging.INFO):
        return
    if len(events) == 1:  # as the warehouse's line (apps/warehouse/services.py)
        (order_id, event), correlation = events[0], correlation_ids[0]
        log.info("order %s: %s", order_id, event.event_type, extra={"request_id": correlation})
        return
    steps = [
        f"order {order_id}: {event.event_type}" + ("" if correlation is None else f" request_id={correlation}")
        for (order_id, event), correlation in zip(events, correlation_ids, strict=True)
    ]
    for start in range(0, len(steps), LINE_ORDERS):
        log.info("%s", "; ".join(steps[start : start + LINE_ORDERS]))


@dataclass
class _Writes:
    """The batch's write, as one list per column of each CTE."""

    item_ids: list[int] = field(default_factory=list)
    item_reservations: list[uuid.UUID] = field(default_factory=list)
    item_warehouses: list[uuid.UUID | None] = field(default_factory=list)
    confirm_ids: list[uuid.UUID] = field(default_factory=list)
    confirm_times: list[dt.datetime] = field(default_factory=list)
    pay_ids: list[uuid.UUID] = field(default_factory=list)
    pay_attempts: list[int] = field(default_factory=list)
    pay_times: list[dt.datetime] = field(default_factory=list)
    events: list[tuple[uuid.UUID, Event]] = field(default_factory=list)  # (order id, event)
    correlation_ids: list[str | None] = field(default_factory=list)  # each event's (outbox/correlation.py)

    def fill(self, held: Row[Any], answer: InventoryReserved) -> None:
        self.item_ids += held.item_ids
        self.item_reservations += [answer.reservation_id] * len(held.item_ids)
        self.item_warehouses += line_warehouses(held.product_ids, answer.items)

    def confirm(self, held: Row[Any], now: dt.datetime, correlation: str | None) -> None:
        self.confirm_ids.append(held.id)
        self.confirm_times.append(now)
        self.events.append((held.id, _confirmed(held, now)))
        self.correlation_ids.append(correlation)

    def ask_payment(self, held: Row[Any], now: dt.datetime, correlation: str | None) -> None:
        attempts = held.payment_attempts + 1
        self.pay_ids.append(held.id)
        self.pay_attempts.append(attempts)
        self.pay_times.append(now)
        asked = OrderPaymentRequested(
            order_id=held.id,
            amount=held.total_amount,
            currency=held.currency,
            payment_method=PaymentMethod(type=held.payment_method_type or "card", token=held.payment_token),
            customer_id=held.customer_id,
            attempt=attempts,
            requested_at=now,
        )
        self.events.append((held.id, asked))
        self.correlation_ids.append(correlation)

    def params(self) -> dict[str, Any]:
        columns = {name: value for name, value in vars(self).items() if name not in ("events", "correlation_ids")}
        constants = {
            "pending": PENDING,
            "confirmed": CONFIRMED,
            "done": DONE,
            "payment": PAYMENT,
            "payment_timeout": step_timeout(PAYMENT),
        }
        history = {"changed_by": SAGA, "reason": "stock reserved"}
        return columns | constants | history | events_parameters(self.events, self.correlation_ids)


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
