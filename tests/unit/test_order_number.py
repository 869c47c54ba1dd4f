"""The order number (apps/order/rules.py order_number): its shape, and that it sorts by the time it was given."""

from __future__ import annotations

import datetime as dt
import re
import uuid

from uuid_utils.compat import uuid7

from apps.order.rules import order_number

SHAPE = re.compile(r"ORD-\d{8}-[0-9A-F]{15}")


def test_the_day_then_the_millisecond_of_the_day_then_the_ids_random_tail() -> None:
    order_id = uuid.UUID("01a21d23-07d4-74a9-b2d0-87c381947f61")
    placed_at = dt.datetime(2026, 11, 27, 12, 34, 56, 789_999, tzinfo=dt.UTC)
    ms = ((12 * 60 + 34) * 60 + 56) * 1000 + 789
    assert order_number(order_id, placed_at) == f"ORD-20261127-{ms:07X}81947F61"
    assert SHAPE.fullmatch(order_number(order_id, placed_at))
    # The day and its millisecond are UTC's, whatever zone the time comes in.
    elsewhere = placed_at.astimezone(dt.timezone(dt.timedelta(hours=-8)))
    assert order_number(order_id, elsewhere) == order_number(order_id, placed_at)


def test_the_first_and_last_millisecond_of_a_day_keep_the_width() -> None:
    order_id = uuid7()
    first = order_number(order_id, dt.datetime(2026, 11, 27, tzinfo=dt.UTC))
    last = order_number(order_id, dt.datetime(2026, 11, 27, 23, 59, 59, 999_999, tzinfo=dt.UTC))
    assert first[13:20] == "0000000" and last[13:20] == f"{86_399_999:07X}"
    assert SHAPE.fullmatch(first) and SHAPE.fullmatch(last)


def test_numbers_given_later_sort_after_within_a_day() -> None:
    """Each lands at the end of the day's range of uq_orders_order_number, not on a random leaf of it."""
    start = dt.datetime(2026, 11, 27, 9, tzinfo=dt.UTC)
    numbers = [order_number(uuid7(), start + dt.timedelta(milliseconds=n * 7)) for n in range(2_000)]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == len(numbers)
