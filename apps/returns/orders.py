"""What the returns service knows of an order: the ``order_snapshots`` projection and its API fallback.

The order's events (consumer group ``returns``) say who ordered, in what currency, the order's status and
when it was delivered; the delivery time is in no API answer, so the events are its only source. The
lines with their order_items ids and the tax/shipping/discount split are in no event, so the first return
of an order reads them once from GET /api/orders/{id} (immutable once placed) and keeps them. An order
whose events have not arrived yet (consumer lag) is taken from that same answer: delivered at its last
update. Statuses only move forward here, so a late event never undoes what the API said. Snapshots start at
the order's first status after confirmation (order.status_changed) or its cancellation: a pending or
confirmed one would never spare the API call (``_needs_api``), so order.created and order.confirmed are
not consumed (apps/returns/consumers.py).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from apps.common.errors import UnknownReference
from apps.common.models import utc_now
from apps.returns.models import OrderSnapshot
from apps.returns.rules import OrderLine, OrderTerms, order_paid
from outbox.statements import Statement

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.returns.clients import OrderClient, OrderView

__all__ = [
    "OrderFact",
    "fold",
    "lines_of",
    "lock_order",
    "prepare_order",
    "project_orders",
    "terms_of",
]

# The order's status flow, in order; cancelled ends it from anywhere.
_RANK: Final = {"pending": 0, "confirmed": 1, "processing": 2, "shipped": 3, "delivered": 4, "cancelled": 5}
DELIVERED: Final = "delivered"


def _later(current: str | None, new: str) -> bool:
    return current is None or _RANK.get(new, -1) >= _RANK.get(current, -1)


@dataclass(frozen=True, slots=True)
class OrderFact:
    """What one order event says about an order (in partition order)."""

    order_id: uuid.UUID
    status: str
    customer_id: str | None = None
    currency: str | None = None
    changed_at: dt.datetime | None = None


def fold(facts: Sequence[OrderFact]) -> list[OrderFact]:
    """One fact per order: its furthest status (the later one on a tie), delivered_at only with delivered."""
    folded: dict[uuid.UUID, OrderFact] = {}
    for fact in facts:
        seen = folded.get(fact.order_id)
        if seen is None or _later(seen.status, fact.status):
            keep = fact.changed_at if fact.status == DELIVERED else None
            folded[fact.order_id] = OrderFact(
                fact.order_id,
                fact.status,
                fact.customer_id or (seen.customer_id if seen else None),
                fact.currency or (seen.currency if seen else None),
                keep,
            )
    return list(folded.values())


_RANKED = "ARRAY['pending', 'confirmed', 'processing', 'shipped', 'delivered', 'cancelled']"
# One statement per batch. The status only moves forward; delivered_at is the event's (an earlier guess
# from the API's updated_at is replaced); customer and currency are kept once known.
_PROJECT = Statement(
    text(
        f"""
    INSERT INTO order_snapshots AS s (order_id, status, customer_id, currency, delivered_at, status_source, updated_at)
    SELECT f.order_id, f.status, f.customer_id, f.currency, f.delivered_at, 'events', now()
    FROM unnest(CAST(:orders AS uuid[]), CAST(:statuses AS text[]), CAST(:customers AS text[]),
                CAST(:currencies AS text[]), CAST(:delivered AS timestamptz[]))
         AS f(order_id, status, customer_id, currency, delivered_at)
    ON CONFLICT (order_id) DO UPDATE SET
        status = CASE WHEN s.status IS NULL
                        OR array_position({_RANKED}, EXCLUDED.status) >= array_position({_RANKED}, s.status)
                      THEN EXCLUDED.status ELSE s.status END,
        status_source = CASE WHEN s.status IS NULL
                        OR array_position({_RANKED}, EXCLUDED.status) >= array_position({_RANKED}, s.status)
                      THEN 'events' ELSE s.status_source END,
        delivered_at = CASE WHEN EXCLUDED.delivered_at IS NOT NULL
                             AND (s.status IS DISTINCT FROM 'delivered' OR s.status_source = 'api')
                            THEN EXCLUDED.delivered_at ELSE s.delivered_at END,
        customer_id = coalesce(s.customer_id, EXCLUDED.customer_id),
        currency = coalesce(s.currency, EXCLUDED.currency),
        updated_at = now()
    """
    )
)


async def project_orders(session: AsyncSession, facts: Sequence[OrderFact]) -> None:
    """Apply a batch of order events to the projection (inside the consumer's transaction)."""
    rows = sorted(fold(facts), key=lambda fact: fact.order_id)  # lock order: no deadlock between batches
    if not rows:
        return
    await _PROJECT.execute(
        session,
        {
            "orders": [r.order_id for r in rows],
            "statuses": [r.status for r in rows],
            # The order service's column is VARCHAR(36); anything longer is not a customer of ours.
            "customers": [r.customer_id if r.customer_id and len(r.customer_id) <= 36 else None for r in rows],
            "currencies": [r.currency[:3] if r.currency else None for r in rows],
            "delivered": [r.changed_at for r in rows],
        },
    )


def _lines(view: OrderView) -> list[dict[str, Any]]:
    return [
        {
            "order_item_id": line.id,
            "product_id": str(line.product_id),
            "sku": line.sku,
            "name": line.name,
            "quantity": line.quantity,
            "unit_price": str(line.unit_price),
        }
        for line in view.items
    ]


async def _fill_from_api(
    session: AsyncSession, client: OrderClient, order_id: uuid.UUID, owner: uuid.UUID | None = None
) -> None:
    view = await client.order(order_id, owner)
    if view is None:
        raise UnknownReference("order_id", "the order service does not know this order")
    amounts = {
        "customer_id": view.customer_id,
        "currency": view.currency,
        "subtotal": view.subtotal,
        "discount_amount": view.discount_amount,
        "tax_amount": view.tax_amount,
        "shipping_amount": view.shipping_amount,
        "lines": _lines(view),
        "paid": order_paid(view.status, view.payment_status),
    }
    delivered_at = view.updated_at if view.status == DELIVERED else None
    await session.execute(
        pg_insert(OrderSnapshot)
        .values(
            order_id=order_id,
            status=view.status,
            delivered_at=delivered_at,
            status_source="api",
            updated_at=utc_now(),
            **amounts,
        )
        .on_conflict_do_update(index_elements=[OrderSnapshot.order_id], set_={**amounts, "updated_at": utc_now()})
    )
    # The events are behind the order service (consumer lag) when its status is further on: its answer
    # stands in for them until they arrive (the delivered event then replaces this delivered_at, the
    # order's last update, by its own). In SQL: the sessions do not autoflush, a reload would undo it.
    await session.execute(_API_STATUS, {"order_id": order_id, "status": view.status, "delivered_at": delivered_at})


_API_STATUS = text(
    f"""
    UPDATE order_snapshots
    SET status = :status, delivered_at = CAST(:delivered_at AS timestamptz), status_source = 'api'
    WHERE order_id = :order_id
      AND (status IS NULL OR array_position({_RANKED}, CAST(:status AS text)) > array_position({_RANKED}, status))
    """
)


async def prepare_order(
    session: AsyncSession, client: OrderClient, order_id: uuid.UUID, owner: uuid.UUID | None = None
) -> str | None:
    """The order's customer id, its snapshot read from the order API first when the projection lacks it
    (its lines, whether it was paid) or does not say delivered (the events may be behind: a refusal is
    never based on a stale status), and written in a transaction of its own. Call it before the command
    writes or locks anything: it ends the session's transaction, and then asks with nothing open, so no
    row lock, transaction or pooled connection waits on the order service (``lock_order`` then only
    locks what it wrote).

    ``owner`` (a customer asking: apps/common/auth.py ``read_owner``) is in the snapshot's statement and
    in the order API's question: another customer's order is then asked about and refused exactly as an
    unknown id is. Read first and checked after, another's delivered order was answered from the
    projection ~20 ms before an unknown id's round trip to the order API (S, session 30), and another's
    undelivered one had its snapshot fetched and written for the asker."""
    query = _snapshot(order_id)
    row = await session.scalar(query if owner is None else query.where(OrderSnapshot.customer_id == str(owner)))
    customer_id, ask = (None if row is None else row.customer_id), _needs_api(row)
    await session.rollback()  # (expires ``row``: read above)
    if not ask:
        return customer_id
    await _fill_from_api(session, client, order_id, owner)
    customer_id = await session.scalar(select(OrderSnapshot.customer_id).where(OrderSnapshot.order_id == order_id))
    await session.commit()
    return customer_id


async def lock_order(session: AsyncSession, order_id: uuid.UUID) -> OrderSnapshot:
    """The order's snapshot, locked until the caller's commit (returns of one order are decided one at a
    time), as ``prepare_order`` left it earlier in the request: a command's locks come after its remote
    calls, and the projection's writers never wait on an HTTP call."""
    locked: OrderSnapshot | None = await session.scalar(_snapshot(order_id).with_for_update())
    if locked is None or locked.lines is None:  # prepare_order did not write it: the order API said 404
        raise UnknownReference("order_id", "the order service does not know this order")
    return locked


def _snapshot(order_id: uuid.UUID) -> Select[tuple[OrderSnapshot]]:
    return select(OrderSnapshot).where(OrderSnapshot.order_id == order_id).execution_options(populate_existing=True)


def _needs_api(row: OrderSnapshot | None) -> bool:
    return row is None or row.lines is None or row.paid is None or row.status != DELIVERED


def lines_of(row: OrderSnapshot) -> dict[int, OrderLine]:
    return {
        int(line["order_item_id"]): OrderLine(
            order_item_id=int(line["order_item_id"]),
            product_id=uuid.UUID(line["product_id"]),
            sku=line["sku"],
            name=line["name"],
            quantity=int(line["quantity"]),
            unit_price=Decimal(line["unit_price"]),
        )
        for line in row.lines or []
    }


def terms_of(row: OrderSnapshot) -> OrderTerms:
    zero = Decimal("0.00")
    return OrderTerms(
        currency=row.currency or "USD",
        subtotal=row.subtotal if row.subtotal is not None else zero,
        discount_amount=row.discount_amount or zero,
        tax_amount=row.tax_amount or zero,
        shipping_amount=row.shipping_amount or zero,
        paid=row.paid is not False,  # unknown (never read): asked of the payment service, as before
    )
