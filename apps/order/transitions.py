"""Status changes shared by the HTTP service and the saga: the history row, the order's columns and the
event(s) each change publishes, all added to the caller's session (the caller commits).

A cancellation also asks the payment service to give the money back whenever the saga asked it for money
(order.payment_cancel_requested voids an authorization, refunds a capture, and voids a late one).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import text

from apps.common.responses import from_row
from apps.order.driver import DriverStatement
from apps.order.events import OrderCancelled, OrderConfirmed, OrderCreated, OrderLine, OrderStatusChanged
from apps.order.models import Order, OrderItem, OrderStatusHistory
from apps.order.placed import PlacedItem, PlacedOrder, PlacedSaga
from apps.order.rules import CANCELLED, CONFIRMED, DELIVERED, PENDING, SAGA, SHIPPED, check_transition
from apps.order.saga_state import DONE, RESERVATION, OrderSaga, enter, step_timeout
from apps.payment.events import OrderPaymentCancelRequested, OrderPaymentCaptureRequested
from outbox.correlation import correlation_id
from outbox.events import encode_payload
from outbox.writer import add_event, new_event_id

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.common.pricing import PricedLine

SERVICE = "order-service"


AMOUNTS = ("currency", "subtotal", "tax_amount", "shipping_amount", "discount_amount", "total_amount")


def line(item: OrderItem) -> OrderLine:
    return from_row(OrderLine, item, sku=item.product_sku)


def amounts(priced: object) -> dict[str, Any]:
    """An order's currency and amount columns, from what priced it (a quote, a completed checkout)."""
    return {name: getattr(priced, name) for name in AMOUNTS}


# Placing an order in one round trip: the order, its items, the first history row, the saga waiting on the
# reservation, the Idempotency-Key (when given; scoped to the order's customer) and order.created with its
# per-aggregate version, as data-modifying CTEs of one statement (foreign keys are checked at its end, when
# the order row exists).
# The ORM's flush took six statements and most of a worker's CPU (docs/benchmarks.md, issue 11).
# Each insert runs only where ``ready`` holds: always for ``_PLACE``; for the API's placement
# (apps/order/known.py ``PLACE_IF_KNOWN``) only when the read models, read by the same statement, agree.
# The saga's reservation deadline is the database's clock (statement_timestamp() + the step's timeout), the
# one the sweeper compares it with (apps/order/sweeper.py), as the payment step's is (apps/order/saga_rows.py):
# written from the placing process's clock, a host 60 s behind halved every 120-s reservation and one 120 s
# behind cancelled each order at once (session 31, W; measured by the sweeper since, alert WriterClockSkewed).
def placement_ctes(ready: str) -> str:
    """The placement's data-modifying CTEs (``o``, ``i``, ``h``, ``s``, ``k``, ``v``, ``e``, ``a``; ``i``
    returns the items' ids, ``s`` the saga's deadline), each inserting only where the SQL condition ``ready``
    holds."""
    return f"""
    o AS (
        INSERT INTO orders (id, order_number, customer_id, status, currency, subtotal, tax_amount,
                            shipping_amount, discount_amount, total_amount, payment_method, payment_status,
                            shipping_address, billing_address, notes, metadata, created_at, updated_at,
                            source_service)
        SELECT :id, :order_number, :customer_id, :status, :currency, :subtotal, :tax_amount, :shipping_amount,
               :discount_amount, :total_amount, :payment_method, :payment_status,
               CAST(:shipping_address AS jsonb), CAST(:billing_address AS jsonb), :notes,
               CAST(:metadata AS jsonb), :created_at, :created_at, :source_service
        WHERE {ready}
    ), i AS (
        INSERT INTO order_items (order_id, product_id, product_sku, product_name, quantity, unit_price,
                                 total_price, discount_amount, tax_amount, metadata)
        SELECT :id, t.product_id, t.sku, t.name, t.quantity, t.unit_price, t.total_price, 0, 0, '{{}}'::jsonb
        FROM unnest(CAST(:product_ids AS uuid[]), CAST(:skus AS varchar[]), CAST(:names AS varchar[]),
                    CAST(:quantities AS int[]), CAST(:unit_prices AS numeric[]), CAST(:total_prices AS numeric[]))
             WITH ORDINALITY AS t(product_id, sku, name, quantity, unit_price, total_price, ord)
        WHERE {ready}
        ORDER BY t.ord
        RETURNING id
    ), h AS (
        INSERT INTO order_status_history (order_id, status_to, changed_by, reason, metadata)
        SELECT :id, :status, :changed_by, :reason, '{{}}'::jsonb
        WHERE {ready}
    ), s AS (
        INSERT INTO order_sagas (order_id, checkout_id, step, deadline_at, payment_method_type, payment_token,
                                 payment_attempts, created_at, updated_at)
        SELECT :id, :checkout_id, :step, statement_timestamp() + CAST(:step_timeout AS interval),
               :payment_method_type, :payment_token, 0, :created_at, :created_at
        WHERE {ready}
        RETURNING deadline_at
    ), k AS (
        INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id)
        SELECT :customer_id, CAST(:idempotency_key AS varchar), :request_hash, :id
        WHERE :idempotency_key IS NOT NULL AND {ready}
    ), v AS (
        INSERT INTO outbox_aggregate_version AS v (aggregate_id, aggregate_type, version)
        SELECT :id, :aggregate_type, 1
        WHERE {ready}
        ON CONFLICT (aggregate_id) DO UPDATE SET version = v.version + 1
        RETURNING version
    ), e AS (
        INSERT INTO event_store (id, aggregate_id, aggregate_type, event_type, event_data, event_version,
                                 schema_version, min_reader_version, correlation_id)
        SELECT :event_id, :id, :aggregate_type, :event_type, CAST(:event_data AS jsonb), v.version,
               :schema_version, :min_reader_version, CAST(:correlation_id AS uuid)
        FROM v
    ), a AS (
        INSERT INTO data_access_log (id, user_id, table_name, operation, record_id, customer_id, accessed_at)
        SELECT CAST(:log_id AS uuid), :log_user_id, :log_table_name, :log_operation, :log_record_id,
               :log_customer_id, :log_accessed_at
        WHERE CAST(:log_id AS uuid) IS NOT NULL AND {ready}
    )"""


# The saga's deadline as written (the database's clock), for the caller's answer: the placement's rows carry it.
PLACED_DEADLINE = "(SELECT deadline_at FROM s) AS deadline_at"
_PLACE = DriverStatement(text(f"WITH {placement_ctes('true')}\n    SELECT id, {PLACED_DEADLINE} FROM i ORDER BY id"))
# The data_access_log row's columns (apps/common/access_log.py change_row), as _PLACE's parameters.
_LOG_COLUMNS = ("id", "user_id", "table_name", "operation", "record_id", "customer_id", "accessed_at")


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """An Idempotency-Key written with the order: the key and the request's fingerprint."""

    key: str
    request_hash: str


async def add_pending_order(
    session: AsyncSession,
    order: Order | PlacedOrder,
    lines: Sequence[PricedLine],
    saga: OrderSaga | PlacedSaga,
    *,
    changed_by: str,
    reason: str,
    idempotency: IdempotencyRecord | None = None,
    access_log: Mapping[str, Any] | None = None,
) -> list[PlacedItem]:
    """A new order as its saga starts, written in one statement: the order row, its items, the history row,
    the saga waiting on the reservation, the key, order.created and the change's ``data_access_log`` row
    (``access_log``, from apps/common/access_log.py change_row). The objects stay transient (the session
    does not track them): they answer the caller. A ``PlacedSaga`` waits on the reservation already. The
    saga's ``deadline_at`` becomes the one written (the database's clock)."""
    if isinstance(saga, OrderSaga):
        enter(saga, RESERVATION, order.created_at)
    params = placement_params(
        order, lines, saga, changed_by=changed_by, reason=reason, idempotency=idempotency, access_log=access_log
    )
    ids, saga.deadline_at = await write_placement(session, params)
    return placed_items(order, lines, ids)


async def write_placement(session: AsyncSession, params: Mapping[str, Any]) -> tuple[list[int], dt.datetime]:
    """``_PLACE`` with ``placement_params``' parameters: what it wrote (``written``)."""
    ids, deadline_at = written(await _PLACE.fetch(session, params))
    assert deadline_at is not None  # _PLACE writes whatever holds, and an order has lines
    return ids, deadline_at


def written(rows: Sequence[Mapping[str, Any]]) -> tuple[list[int], dt.datetime | None]:
    """Of a placement's rows (each an item's ``id`` with ``PLACED_DEADLINE``): the items' ids in the lines'
    order and the saga's deadline as written; no rows, nothing was written (None)."""
    return [row["id"] for row in rows], rows[0]["deadline_at"] if rows else None


def placement_params(
    order: Order | PlacedOrder,
    lines: Sequence[PricedLine],
    saga: OrderSaga | PlacedSaga,
    *,
    changed_by: str,
    reason: str,
    idempotency: IdempotencyRecord | None,
    access_log: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The parameters of ``placement_ctes`` for this order, its lines, its saga row, order.created, the key
    and the ``data_access_log`` row (all None when ``access_log`` is)."""
    event_lines = [
        OrderLine(
            product_id=p.product_id, sku=p.sku, quantity=p.quantity, unit_price=p.unit_price, total_price=p.total_price
        )
        for p in lines
    ]
    created = from_row(OrderCreated, order, order_id=order.id, items=event_lines)
    return {
        **{name: getattr(order, name) for name in _ORDER_COLUMNS},
        "shipping_address": _json(order.shipping_address),
        "billing_address": _json(order.billing_address),
        "metadata": _json(order.metadata_ or {}),
        "product_ids": [p.product_id for p in lines],
        "skus": [p.sku for p in lines],
        "names": [p.name for p in lines],
        "quantities": [p.quantity for p in lines],
        "unit_prices": [p.unit_price for p in lines],
        "total_prices": [p.total_price for p in lines],
        "changed_by": changed_by,
        "reason": reason,
        **{name: getattr(saga, name) for name in _SAGA_COLUMNS},
        "step_timeout": step_timeout(saga.step),
        "idempotency_key": idempotency.key if idempotency else None,
        "request_hash": idempotency.request_hash if idempotency else None,
        "event_id": new_event_id(),
        "aggregate_type": created.aggregate_type,
        "event_type": created.event_type,
        "event_data": encode_payload(created).decode(),
        "schema_version": created.schema_version,
        "min_reader_version": created.min_reader_version,
        "correlation_id": correlation_id.get(),  # the request's (X-Request-ID)
        **{f"log_{name}": access_log[name] if access_log else None for name in _LOG_COLUMNS},
    }


def placed_items(order: Order | PlacedOrder, lines: Sequence[PricedLine], ids: Sequence[int]) -> list[PlacedItem]:
    """The lines as written, under the ids ``i`` returned (in the lines' order)."""
    return [
        PlacedItem(item_id, order.id, p.product_id, p.sku, p.name, p.quantity, p.unit_price, p.total_price)
        for item_id, p in zip(ids, lines, strict=True)
    ]


_ORDER_COLUMNS = (
    "id",
    "order_number",
    "customer_id",
    "status",
    "currency",
    "subtotal",
    "tax_amount",
    "shipping_amount",
    "discount_amount",
    "total_amount",
    "payment_method",
    "payment_status",
    "notes",
    "created_at",
    "source_service",
)
_SAGA_COLUMNS = ("checkout_id", "step", "payment_method_type", "payment_token")


def _json(value: object) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


def move(
    session: AsyncSession, order: Order, target: str, reason: str | None, changed_by: str, role: str | None = None
) -> OrderStatusHistory:
    """Record the change in the history and on the order, at one time (``order.updated_at``, the row's
    ``created_at``: the order's ``status_changed_at``); the history row. ``role``: the API caller's (customer,
    staff, admin), in the row's metadata (rules.status_reason reads it)."""
    now = dt.datetime.now(dt.UTC)
    history = OrderStatusHistory(
        order_id=order.id,
        status_from=order.status,
        status_to=target,
        changed_by=changed_by,
        reason=reason,
        metadata_={} if role is None else {"role": role},
        created_at=now,
    )
    session.add(history)
    order.status = target
    order.updated_at = now
    return history


async def confirm(session: AsyncSession, order: Order, items: list[OrderItem], saga: OrderSaga, reason: str) -> None:
    """pending -> confirmed by the saga; from here projections count the order."""
    check_transition(order.status, CONFIRMED, by_saga=True)
    move(session, order, CONFIRMED, reason, SAGA)
    now = order.updated_at
    enter(saga, DONE, now)
    await add_event(
        session,
        order.id,
        from_row(OrderConfirmed, order, order_id=order.id, items=[line(i) for i in items], confirmed_at=now),
    )


async def cancel(
    session: AsyncSession,
    order: Order,
    items: list[OrderItem],
    saga: OrderSaga | None,
    reason: str | None,
    changed_by: str,
    role: str | None = None,
) -> None:
    """Cancel (order.cancelled makes the warehouse release what it holds) and undo the payment if asked for;
    ``role``: the API caller's, None for the saga."""
    check_transition(order.status, CANCELLED)
    was_confirmed = order.status != PENDING
    move(session, order, CANCELLED, reason, changed_by, role)
    now = order.updated_at
    order.cancelled_at = now
    await add_event(
        session,
        order.id,
        from_row(
            OrderCancelled,
            order,
            order_id=order.id,
            items=[line(i) for i in items],
            reason=reason,
            cancelled_at=now,
            was_confirmed=was_confirmed,
        ),
    )
    if saga is None:
        return
    saga.reason = reason
    enter(saga, DONE, now)
    await request_payment_cancel(session, order, saga, reason or "cancelled", now)


async def request_payment_cancel(
    session: AsyncSession, order: Order, saga: OrderSaga, reason: str, now: dt.datetime
) -> None:
    """Once per order, and only if money was ever asked for: the payment undoes whatever it holds."""
    if saga.payment_requested_at is None or saga.payment_cancel_requested_at is not None:
        return
    saga.payment_cancel_requested_at = now
    await add_event(session, order.id, OrderPaymentCancelRequested(order_id=order.id, reason=reason, requested_at=now))


def note_payment_failure(session: AsyncSession, order: Order, payment_status: str, reason: str, event_id: str) -> None:
    """The order's money did not move as asked (its status stays): payment_status shows it and a history
    row (from and to the same status) says why, naming the payment event it came from."""
    order.payment_status = payment_status
    order.updated_at = dt.datetime.now(dt.UTC)
    session.add(
        OrderStatusHistory(
            order_id=order.id,
            status_from=order.status,
            status_to=order.status,
            changed_by=SAGA,
            reason=f"{payment_status}: {reason}",
            metadata_={"payment_status": payment_status, "event_id": event_id},
        )
    )


async def advance(session: AsyncSession, order: Order, target: str, reason: str | None, role: str) -> None:
    """A change by hand along the flow (not a cancellation): history row, order.status_changed."""
    check_transition(order.status, target)
    history = move(session, order, target, reason, SERVICE, role)
    now = order.updated_at
    if target == DELIVERED:
        order.completed_at = now
    # The event says what the history row records (order, from, to, why), with the customer and the time.
    changed = from_row(OrderStatusChanged, history, customer_id=order.customer_id, changed_at=now)
    await add_event(session, order.id, changed)
    if target == SHIPPED and order.payment_status == "authorized":
        # Shipping takes the money: the whole authorization.
        await add_event(session, order.id, OrderPaymentCaptureRequested(order_id=order.id, requested_at=now))
