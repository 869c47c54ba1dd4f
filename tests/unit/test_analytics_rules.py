"""Unit tests for analytics' pure parts: the sales fold (projections.py) and the report window (rules.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from apps.analytics.projections import DayDelta, ProductDelta, SalesDelta, fold, utc_day
from apps.analytics.rules import MAX_WINDOW_DAYS, parse_day, report_window
from apps.common.errors import InvalidField
from apps.order.events import OrderCancelled, OrderCreated, OrderLine
from outbox.errors import RejectedEvent

pytestmark = pytest.mark.unit

UTC = dt.UTC
DAY = dt.date(2001, 3, 14)
NOON = dt.datetime(2001, 3, 14, 12, 0, tzinfo=UTC)
SHIRT = uuid.UUID("00000000-0000-0000-0000-0000000000a1")
MUG = uuid.UUID("00000000-0000-0000-0000-0000000000b2")


def line(product_id: uuid.UUID, quantity: int, unit_price: str) -> OrderLine:
    unit = Decimal(unit_price)
    return OrderLine(product_id=product_id, sku="SKU", quantity=quantity, unit_price=unit, total_price=unit * quantity)


def created(*lines: OrderLine, at: dt.datetime = NOON, currency: str = "USD", total: str | None = None) -> OrderCreated:
    amount = Decimal(total) if total is not None else sum((item.total_price for item in lines), Decimal("0.00"))
    return OrderCreated(
        order_id=uuid.uuid4(),
        order_number="ORD-T",
        customer_id="c-1",
        status="confirmed",
        currency=currency,
        total_amount=amount,
        items=list(lines),
        created_at=at,
    )


def cancelled(order: OrderCreated, at: dt.datetime) -> OrderCancelled:
    return OrderCancelled(
        order_id=order.order_id,
        customer_id=order.customer_id,
        currency=order.currency,
        total_amount=order.total_amount,
        items=order.items,
        cancelled_at=at,
    )


def merged(*deltas: SalesDelta) -> SalesDelta:
    """Sum of deltas, as successive upserts add them to the tables."""
    total = SalesDelta()
    for delta in deltas:
        for key, day in delta.days.items():
            into = total.days.setdefault(key, DayDelta())
            into.orders += day.orders
            into.revenue += day.revenue
            into.cancellations += day.cancellations
        for pkey, product in delta.products.items():
            into_product = total.products.setdefault(pkey, ProductDelta())
            into_product.units += product.units
            into_product.revenue += product.revenue
    return total


# --- order.created --------------------------------------------------------------------------------


def test_created_order_counts_once_with_its_total_on_its_creation_day() -> None:
    order = created(line(SHIRT, 2, "12.50"), line(MUG, 1, "5.25"), total="35.00")  # shipping on top of lines

    delta = fold([order])

    assert delta.days == {(DAY, "USD"): DayDelta(orders=1, revenue=Decimal("35.00"), cancellations=0)}


def test_created_order_adds_units_and_line_totals_per_product() -> None:
    delta = fold([created(line(SHIRT, 2, "12.50"), line(MUG, 1, "5.25"), line(SHIRT, 1, "10.00"))])

    assert delta.products == {
        (SHIRT, "USD"): ProductDelta(units=3, revenue=Decimal("35.00")),
        (MUG, "USD"): ProductDelta(units=1, revenue=Decimal("5.25")),
    }


@pytest.mark.parametrize(
    ("moment", "day"),
    [
        (dt.datetime(2001, 3, 14, 0, 0, tzinfo=UTC), DAY),
        (dt.datetime(2001, 3, 14, 23, 59, 59, 999999, tzinfo=UTC), DAY),
        # 22:30 in New York (UTC-5) is already the next day in UTC.
        (dt.datetime(2001, 3, 13, 22, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))), DAY),
        # 01:00 in Tokyo (UTC+9) is still the previous day in UTC.
        (dt.datetime(2001, 3, 15, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=9))), DAY),
        # No offset: already UTC, never the machine's local time.
        (dt.datetime(2001, 3, 14, 23, 0), DAY),
    ],
)
def test_the_day_of_an_event_is_its_utc_calendar_day(moment: dt.datetime, day: dt.date) -> None:
    assert utc_day(moment) == day
    assert set(fold([created(line(SHIRT, 1, "1.00"), at=moment)]).days) == {(day, "USD")}


# --- order.cancelled ------------------------------------------------------------------------------


def test_cancellation_counts_on_its_own_day_and_subtracts_the_total_there() -> None:
    order = created(line(SHIRT, 2, "12.50"), total="27.90")
    later = dt.datetime(2001, 4, 2, 9, 0, tzinfo=UTC)

    delta = fold([order, cancelled(order, later)])

    assert delta.days == {
        (DAY, "USD"): DayDelta(orders=1, revenue=Decimal("27.90"), cancellations=0),  # placed day untouched
        (dt.date(2001, 4, 2), "USD"): DayDelta(orders=0, revenue=Decimal("-27.90"), cancellations=1),
    }


def test_cancellation_on_the_creation_day_nets_that_days_revenue_to_zero_but_keeps_the_order() -> None:
    order = created(line(SHIRT, 1, "9.99"))

    delta = fold([order, cancelled(order, NOON + dt.timedelta(hours=1))])

    assert delta.days == {(DAY, "USD"): DayDelta(orders=1, revenue=Decimal("0.00"), cancellations=1)}


def test_cancellation_subtracts_units_and_line_totals_per_product() -> None:
    keep = created(line(SHIRT, 1, "12.50"))
    drop = created(line(SHIRT, 2, "12.50"), line(MUG, 3, "4.00"))

    delta = fold([keep, drop, cancelled(drop, NOON + dt.timedelta(days=1))])

    assert delta.products == {
        (SHIRT, "USD"): ProductDelta(units=1, revenue=Decimal("12.50")),
        (MUG, "USD"): ProductDelta(units=0, revenue=Decimal("0.00")),
    }


def test_cancellation_of_an_order_never_seen_still_subtracts() -> None:
    # Placed before the replay window: the net figures for the days and products we know stay truthful.
    order = created(line(SHIRT, 1, "8.00"))

    delta = fold([cancelled(order, NOON)])

    assert delta.days == {(DAY, "USD"): DayDelta(orders=0, revenue=Decimal("-8.00"), cancellations=1)}
    assert delta.products == {(SHIRT, "USD"): ProductDelta(units=-1, revenue=Decimal("-8.00"))}


# --- currencies, money, batches -------------------------------------------------------------------


def test_currencies_are_kept_apart_never_added_up() -> None:
    delta = fold([created(line(SHIRT, 1, "10.00"), currency="USD"), created(line(SHIRT, 2, "9.00"), currency="EUR")])

    assert delta.days == {
        (DAY, "USD"): DayDelta(orders=1, revenue=Decimal("10.00")),
        (DAY, "EUR"): DayDelta(orders=1, revenue=Decimal("18.00")),
    }
    assert delta.products == {
        (SHIRT, "USD"): ProductDelta(units=1, revenue=Decimal("10.00")),
        (SHIRT, "EUR"): ProductDelta(units=2, revenue=Decimal("18.00")),
    }


def test_money_is_summed_exactly_as_decimal() -> None:
    # 0.10 + 0.20 is 0.30000000000000004 in floats; ten of them must be exactly 3.00.
    delta = fold([created(line(MUG, 1, "0.10")) for _ in range(10)] + [created(line(MUG, 1, "0.20"))] * 10)

    assert delta.days[(DAY, "USD")].revenue == Decimal("3.00")
    assert delta.products[(MUG, "USD")] == ProductDelta(units=20, revenue=Decimal("3.00"))
    assert all(isinstance(d.revenue, Decimal) for d in delta.days.values())
    assert all(isinstance(p.revenue, Decimal) for p in delta.products.values())


def test_folding_a_batch_equals_summing_the_folds_of_any_split_of_it() -> None:
    # What lets each batch be added with one upsert, and a replay with other batch sizes converge.
    first = created(line(SHIRT, 2, "12.50"), line(MUG, 1, "5.25"))
    second = created(line(SHIRT, 1, "12.50"), currency="EUR", at=NOON + dt.timedelta(days=1))
    third = created(line(MUG, 4, "5.00"), at=NOON - dt.timedelta(days=3))
    events: list[OrderCreated | OrderCancelled] = [
        first,
        second,
        cancelled(first, NOON + dt.timedelta(days=2)),
        third,
        cancelled(third, NOON),
    ]

    whole = fold(events)

    for cut in range(len(events) + 1):
        assert merged(fold(events[:cut]), fold(events[cut:])) == whole
    assert merged(*(fold([ev]) for ev in events)) == whole


def test_an_empty_batch_changes_nothing() -> None:
    assert fold([]) == SalesDelta()


@pytest.mark.parametrize("currency", ["usd", "US", "USDX", "", "U$D"])
def test_an_order_with_a_malformed_currency_is_rejected_for_the_dead_letter_topic(currency: str) -> None:
    with pytest.raises(RejectedEvent, match="currency"):
        fold([created(line(SHIRT, 1, "1.00"), currency=currency)])


# --- the report window ----------------------------------------------------------------------------

TODAY = dt.date(2026, 11, 25)


def test_window_defaults_to_the_last_30_days_including_today() -> None:
    assert report_window(None, None, today=TODAY) == (dt.date(2026, 10, 27), TODAY)


def test_window_with_only_to_is_the_30_days_ending_there() -> None:
    assert report_window(None, "2001-03-14", today=TODAY) == (dt.date(2001, 2, 13), DAY)


def test_window_with_only_from_runs_to_today() -> None:
    assert report_window("2026-11-01", None, today=TODAY) == (dt.date(2026, 11, 1), TODAY)


def test_window_is_inclusive_and_may_be_a_single_day() -> None:
    assert report_window("2001-03-14", "2001-03-14", today=TODAY) == (DAY, DAY)


def test_window_from_after_to_is_an_empty_range() -> None:
    first, last = report_window("2001-03-15", "2001-03-14", today=TODAY)
    assert first > last  # BETWEEN finds no day: an empty report, as for any pair of days without sales


def test_window_from_in_the_future_without_to_is_an_empty_range() -> None:
    first, last = report_window("2026-11-26", None, today=TODAY)
    assert (first, last) == (dt.date(2026, 11, 26), TODAY)
    assert first > last


def test_window_of_at_most_a_year_is_kept_and_longer_is_cut_to_a_year_from_from() -> None:
    first = dt.date(2001, 1, 1)
    last = first + dt.timedelta(days=MAX_WINDOW_DAYS - 1)
    assert report_window(first.isoformat(), last.isoformat(), today=TODAY) == (first, last)
    assert report_window(first.isoformat(), "2009-06-30", today=TODAY) == (first, last)
    assert report_window(first.isoformat(), None, today=TODAY) == (first, last)


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        # Regression: the default start (29 days before `to`) overflowed before year 1 and answered 500.
        (None, "0001-01-01", (dt.date.min, dt.date.min)),
        (None, "0001-01-15", (dt.date.min, dt.date(1, 1, 15))),
        ("9999-12-01", None, (dt.date(9999, 12, 1), TODAY)),
        ("9999-12-01", "9999-12-31", (dt.date(9999, 12, 1), dt.date.max)),
        ("0001-01-01", "9999-12-31", (dt.date.min, dt.date(1, 12, 31) + dt.timedelta(days=1))),
    ],
)
def test_window_arithmetic_stops_at_the_ends_of_the_calendar(
    first: str | None, last: str | None, expected: tuple[dt.date, dt.date]
) -> None:
    assert report_window(first, last, today=TODAY) == expected


@pytest.mark.parametrize("value", ["", "yesterday", "2001-3-14", "20010314", "2001-02-30", "2001-13-01", "2001-W11-3"])
@pytest.mark.parametrize("field", ["from", "to"])
def test_a_date_that_is_not_a_yyyy_mm_dd_calendar_day_is_refused_naming_its_field(field: str, value: str) -> None:
    with pytest.raises(InvalidField) as refused:
        parse_day(field, value)
    assert (refused.value.field, refused.value.source) == (field, "query")
    assert field in str(refused.value)
