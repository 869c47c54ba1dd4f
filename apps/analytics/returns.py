"""Refunds in the sales reports: return.refunded adds, on the refund's UTC day, a return and its refunded
amount to daily_sales, and per product the units returned and their refund to product_sales.

Revenue stays what was sold (gross, on the order's day); refunds are their own columns on the day the
money went back, and the API shows ``net_revenue`` = revenue - refunds (docs/decisions.md, Returns).
Each return.refunded is applied once (the group's inbox); the arithmetic is the pure ``fold`` below.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from sqlalchemy import text

from apps.analytics.projections import utc_day
from apps.common.projections import add_deltas
from apps.returns.events import ReturnRefunded

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from outbox.consumer import ConsumerGroup, EventContext

__all__ = ["RefundDeltas", "fold_refunds", "register"]


def _zero() -> Decimal:
    return Decimal("0.00")


@dataclass
class DayRefunds:
    returns: int = 0
    refunds: Decimal = field(default_factory=_zero)


@dataclass
class ProductRefunds:
    units_returned: int = 0
    refunded: Decimal = field(default_factory=_zero)


@dataclass
class RefundDeltas:
    days: dict[tuple[dt.date, str], DayRefunds] = field(default_factory=dict)
    products: dict[tuple[uuid.UUID, str], ProductRefunds] = field(default_factory=dict)


def fold_refunds(events: Iterable[ReturnRefunded]) -> RefundDeltas:
    """Sum refunds per (day, currency) and per (product, currency)."""
    deltas = RefundDeltas()
    for ev in events:
        currency = ev.currency.upper()
        day = deltas.days.setdefault((utc_day(ev.refunded_at), currency), DayRefunds())
        day.returns += 1
        day.refunds += ev.amount
        for line in ev.items:
            product = deltas.products.setdefault((line.product_id, currency), ProductRefunds())
            product.units_returned += line.quantity
            product.refunded += line.refund_amount
    return deltas


_ADD_DAYS: Final = text(
    """
    INSERT INTO daily_sales AS s (day, currency, returns, refunds)
    SELECT * FROM unnest(CAST(:day AS date[]), CAST(:currency AS varchar[]), CAST(:returns AS int[]),
                         CAST(:refunds AS numeric[]))
    ON CONFLICT (day, currency) DO UPDATE SET
        returns = s.returns + excluded.returns, refunds = s.refunds + excluded.refunds, updated_at = now()
    """
)
_ADD_PRODUCTS: Final = text(
    """
    INSERT INTO product_sales AS s (product_id, currency, units_returned, refunded)
    SELECT * FROM unnest(CAST(:product_id AS uuid[]), CAST(:currency AS varchar[]),
                         CAST(:units_returned AS bigint[]), CAST(:refunded AS numeric[]))
    ON CONFLICT (product_id, currency) DO UPDATE SET
        units_returned = s.units_returned + excluded.units_returned,
        refunded = s.refunded + excluded.refunded,
        updated_at = now()
    """
)


async def apply_refunds(session: AsyncSession, items: Sequence[tuple[ReturnRefunded, EventContext]]) -> None:
    deltas = fold_refunds(event for event, _ in items)
    await add_deltas(session, _ADD_DAYS, ["day", "currency"], deltas.days)
    await add_deltas(session, _ADD_PRODUCTS, ["product_id", "currency"], deltas.products)


def register(group: ConsumerGroup) -> None:
    """Add return.refunded to the analytics consumer group."""
    group.batch_handler("return.refunded")(apply_refunds)
