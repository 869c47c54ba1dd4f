"""The sales projections' pure fold: how order events change daily_sales and product_sales. No I/O.

daily_sales, one row per (day, currency):

- An order counts once it is confirmed: order.confirmed (order.created only for orders born confirmed,
  before the saga), on the order's creation day, ``created_at`` taken in UTC: ``orders`` + 1 and
  ``revenue`` + the order's ``total_amount``. An order the saga cancelled while pending (out of stock,
  payment declined, timeout) never counted and is skipped (order.cancelled with ``was_confirmed`` false).
- order.cancelled of a confirmed order counts on its cancellation day (``cancelled_at`` in UTC):
  ``cancellations`` + 1 and ``revenue`` - the order's ``total_amount``. Revenue is therefore net revenue
  as of each day; the order stays counted in ``orders`` on the day it was placed, and earlier days are
  never rewritten.

product_sales, one row per (product_id, currency):

- a counted order adds each line's ``quantity`` to ``units`` and its ``total_price`` to ``revenue``;
  its cancellation subtracts them. A product on several lines of one order counts every line.

Amounts are never converted between currencies: every row belongs to one currency (the order's).
Money is ``Decimal`` from the event payload to the NUMERIC column, never a float. Daily revenue is the
order total (what the customer pays), product revenue the sum of line totals; the two need not agree.

Nothing is clamped at zero: a cancellation whose order was never seen here (placed before the replay
window) still subtracts, which is the truthful "net" for the days and products we know about.

consumers.py adds the folded deltas to both tables, one upsert per table and batch. ``fold`` is additive:
folding a batch equals summing the folds of any split of it, which is what lets the consumer add each
batch's deltas with one upsert and lets a replay with other batch sizes converge on the same rows.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from apps.analytics.rules import CURRENCY_PATTERN
from apps.order.events import OrderCancelledV1, OrderConfirmed, OrderCreated, OrderLine
from outbox.errors import RejectedEvent

__all__ = ["DayDelta", "OrderEvent", "ProductDelta", "SalesDelta", "fold", "not_a_sale", "utc_day"]

OrderEvent = OrderCreated | OrderConfirmed | OrderCancelledV1

_CURRENCY_RE: Final = re.compile(CURRENCY_PATTERN)

_ZERO: Final = Decimal("0.00")


def _zero() -> Decimal:
    return _ZERO


@dataclass
class DayDelta:
    """What a batch adds to one (day, currency) row of daily_sales."""

    orders: int = 0
    revenue: Decimal = field(default_factory=_zero)
    cancellations: int = 0


@dataclass
class ProductDelta:
    """What a batch adds to one (product, currency) row of product_sales."""

    units: int = 0
    revenue: Decimal = field(default_factory=_zero)


@dataclass
class SalesDelta:
    """A batch's effect on both projections, keyed like their primary keys."""

    days: dict[tuple[dt.date, str], DayDelta] = field(default_factory=dict)
    products: dict[tuple[uuid.UUID, str], ProductDelta] = field(default_factory=dict)


def utc_day(moment: dt.datetime) -> dt.date:
    """The UTC calendar day of ``moment``; a timestamp without an offset is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.date()
    return moment.astimezone(dt.UTC).date()


def _currency(ev: OrderEvent) -> str:
    # The projections key on the currency: a malformed one would be a row nobody can query, and the
    # database would refuse it anyway. Rejecting sends just this event to the dead-letter topic.
    if not _CURRENCY_RE.fullmatch(ev.currency):
        raise RejectedEvent(f"order {ev.order_id}: currency {ev.currency!r} is not an ISO 4217 code")
    return ev.currency


def _add_lines(
    products: dict[tuple[uuid.UUID, str], ProductDelta], lines: Iterable[OrderLine], currency: str, sign: int
) -> None:
    for line in lines:
        delta = products.setdefault((line.product_id, currency), ProductDelta())
        delta.units += sign * line.quantity
        delta.revenue += sign * line.total_price


def not_a_sale(ev: OrderEvent) -> bool:
    """An order.created of an order not confirmed yet, or the cancellation of one never confirmed: the fold
    changes nothing for either (the consumer skips them before its inbox, ConsumerGroup's ``skip``)."""
    return (isinstance(ev, OrderCreated) and ev.status != "confirmed") or (
        isinstance(ev, OrderCancelledV1) and not ev.had_been_confirmed()
    )


def fold(events: Iterable[OrderEvent]) -> SalesDelta:
    """Sum order events into per-day and per-product deltas (the rules are in the module docstring)."""
    sales = SalesDelta()
    for ev in events:
        if not_a_sale(ev):
            continue
        currency = _currency(ev)
        if not isinstance(ev, OrderCancelledV1):
            day = sales.days.setdefault((utc_day(ev.created_at), currency), DayDelta())
            day.orders += 1
            day.revenue += ev.total_amount
            _add_lines(sales.products, ev.items, currency, +1)
        else:
            day = sales.days.setdefault((utc_day(ev.cancelled_at), currency), DayDelta())
            day.cancellations += 1
            day.revenue -= ev.total_amount
            _add_lines(sales.products, ev.items, currency, -1)
    return sales
