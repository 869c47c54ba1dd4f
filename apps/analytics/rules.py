"""Pure rules of the sales projections: how order events change them, and which days a report covers. No I/O.

daily_sales, one row per (day, currency):

- order.created counts on its creation day, ``created_at`` taken in UTC: ``orders`` + 1 and ``revenue`` +
  the order's ``total_amount``.
- order.cancelled counts on its cancellation day (``cancelled_at`` in UTC): ``cancellations`` + 1 and
  ``revenue`` - the order's ``total_amount``. Revenue is therefore net revenue as of each day; the order
  stays counted in ``orders`` on the day it was placed, and earlier days are never rewritten.

product_sales, one row per (product_id, currency):

- order.created adds each line's ``quantity`` to ``units`` and its ``total_price`` to ``revenue``;
  order.cancelled subtracts them. A product on several lines of one order counts every line.

Amounts are never converted between currencies: every row belongs to one currency (the order's).
Money is ``Decimal`` from the event payload to the NUMERIC column, never a float. Daily revenue is the
order total (what the customer pays), product revenue the sum of line totals; the two need not agree.

Nothing is clamped at zero: a cancellation whose order was never seen here (placed before the replay
window) still subtracts, which is the truthful "net" for the days and products we know about.

``fold`` is additive: folding a batch equals summing the folds of any split of it, which is what lets the
consumer add each batch's deltas with one upsert and lets a replay with other batch sizes converge on the
same rows.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from apps.common.errors import InvalidField
from apps.order.events import OrderCancelled, OrderCreated, OrderLine
from outbox.errors import RejectedEvent

__all__ = [
    "CURRENCY_PATTERN",
    "DEFAULT_WINDOW_DAYS",
    "MAX_WINDOW_DAYS",
    "DayDelta",
    "ProductDelta",
    "SalesDelta",
    "clamp_window",
    "fold",
    "parse_day",
    "report_window",
    "utc_day",
]

CURRENCY_PATTERN: Final = r"^[A-Z]{3}$"
_CURRENCY_RE: Final = re.compile(CURRENCY_PATTERN)

# GET /api/analytics/sales/daily without dates: the last 30 days, today (UTC) included.
DEFAULT_WINDOW_DAYS: Final = 30
# A longer range is refused rather than answered with an unbounded list (a client pages by year).
MAX_WINDOW_DAYS: Final = 366

_ISO_DATE_RE: Final = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

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


def _currency(ev: OrderCreated | OrderCancelled) -> str:
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


def fold(events: Iterable[OrderCreated | OrderCancelled]) -> SalesDelta:
    """Sum order events into per-day and per-product deltas (the rules are in the module docstring)."""
    sales = SalesDelta()
    for ev in events:
        currency = _currency(ev)
        if isinstance(ev, OrderCreated):
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


def parse_day(field: str, value: str) -> dt.date:
    """An ISO calendar date (YYYY-MM-DD) given as query parameter ``field``.

    Parsed here rather than by Litestar so that an error names the parameter as the client wrote it:
    ``from`` is a Python keyword, and Litestar would report the handler argument ``from_``.
    """
    if _ISO_DATE_RE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass  # the right shape but not a day of the calendar, e.g. 2001-02-30
    raise InvalidField(field, "must be a calendar date in ISO format, YYYY-MM-DD", source="query")


def report_window(first: str | None, last: str | None, *, today: dt.date) -> tuple[dt.date, dt.date]:
    """The inclusive day range of a daily report from the raw ``from`` and ``to`` query values.

    ``to`` defaults to today (UTC); ``from`` to 29 days before ``to``, so the default is 30 days. Every
    pair of calendar days is a range: one that starts after it ends is empty, and one longer than
    ``MAX_WINDOW_DAYS`` is cut to its first ``MAX_WINDOW_DAYS`` days (the client asks again from the day
    after). Date arithmetic stops at the calendar's ends (0001-01-01, 9999-12-31) instead of overflowing.
    """
    end = today if last is None else parse_day("to", last)
    start = _days_before(end, DEFAULT_WINDOW_DAYS - 1) if first is None else parse_day("from", first)
    return clamp_window(start, end)


def clamp_window(first: dt.date, last: dt.date) -> tuple[dt.date, dt.date]:
    """At most ``MAX_WINDOW_DAYS`` days from ``first``; ``first`` after ``last`` stays an empty range."""
    return first, min(last, _days_after(first, MAX_WINDOW_DAYS - 1))


def _days_before(day: dt.date, days: int) -> dt.date:
    return day - dt.timedelta(days=min(days, (day - dt.date.min).days))


def _days_after(day: dt.date, days: int) -> dt.date:
    return day + dt.timedelta(days=min(days, (dt.date.max - day).days))
