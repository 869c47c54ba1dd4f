"""What the returns service knows of an order: the ``order_snapshots`` projection and its API fallback.

The order's events (consumer group ``returns``) say who ordered, in what currency, the order's status and
when it was delivered; the delivery time is in no API answer, so the events are its only source. The
lines with their order_items ids and the tax/shipping/discount split are in no event, so the first return
of an order reads them once from GET /api/orders/{id} (immutable once placed) and keeps them. An order
whose events have not arrived yet (consumer lag) is taken from that same answer: delivered at its last
update. Statuses only move forward here, so a late event never undoes what the API said.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from apps.common.errors import UnknownReference
from apps.common.models import utc_now
from apps.returns.models import OrderSnapshot
from apps.returns.rules import OrderLine, OrderTerms

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from apps.returns.clients import OrderClient, OrderView

__all__ = ["lines_of", "lock_order", "project_order", "terms_of"]

# The order's status flow, in order; cancelled ends it from anywhere.
_RANK: Final = {"pending": 0, "confirmed": 1, "processing": 2, "shipped": 3, "delivered": 4, "cancelled": 5}
DELIVERED: Final = "delivered"


def _later(current: str | None, new: str) -> bool:
    return current is None or _RANK.get(new, -1) >= _RANK.get(current, -1)


async def project_order(
    session: AsyncSession,
    order_id: uuid.UUID,
    *,
    status: str | None = None,
    customer_id: str | None = None,
    currency: str | None = None,
    changed_at: dt.datetime | None = None,
) -> None:
    """Apply one order event to the projection (inside the consumer's transaction)."""
    await session.execute(
        pg_insert(OrderSnapshot)
        .values(order_id=order_id, status_source="events", updated_at=utc_now())
        .on_conflict_do_nothing(index_elements=[OrderSnapshot.order_id])
    )
    row = await session.scalar(select(OrderSnapshot).where(OrderSnapshot.order_id == order_id).with_for_update())
    assert row is not None
    row.customer_id = customer_id or row.customer_id
    row.currency = currency or row.currency
    if status is not None and _later(row.status, status):
        if status == DELIVERED and (row.status != DELIVERED or row.status_source == "api"):
            row.delivered_at = changed_at
        row.status = status
        row.status_source = "events"
    row.updated_at = utc_now()


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


async def _fill_from_api(session: AsyncSession, client: OrderClient, order_id: uuid.UUID) -> None:
    view = await client.order(order_id)
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
    row = await session.scalar(select(OrderSnapshot).where(OrderSnapshot.order_id == order_id).with_for_update())
    assert row is not None
    if row.status is None or (row.status_source == "api" and _later(row.status, view.status)):
        # Events have not told this order's status yet: the API's answer stands in for them.
        row.status, row.delivered_at = view.status, delivered_at


async def lock_order(session: AsyncSession, client: OrderClient, order_id: uuid.UUID) -> OrderSnapshot:
    """The order, locked until the caller's commit (returns of one order are decided one at a time);
    its lines are read from the order API the first time, or when the projection has no status yet."""
    statement = (
        select(OrderSnapshot)
        .where(OrderSnapshot.order_id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    row = await session.scalar(statement)
    if row is None or row.lines is None or row.status is None:
        await _fill_from_api(session, client, order_id)
        row = await session.scalar(statement)
    assert row is not None and row.lines is not None
    return row


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
    )
