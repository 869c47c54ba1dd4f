"""Analytics through the real stack: order events in order_db's outbox -> Debezium -> Kafka -> the analytics
consumer group -> daily_sales / product_sales -> the HTTP reports (in-process, against analytics_db).

Isolation: every run uses days that no row has yet (far in the past, so no other test writes there),
currencies that no row has yet (ISO 4217's user-assigned codes first) and fresh product ids, so both the
projection rows and the reports filtered on them contain exactly this run's events.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import string
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from apps.analytics.app import create_app
from apps.order.events import OrderCancelled, OrderCreated, OrderLine
from tests.support.db import connect
from tests.support.http import authorized
from tests.support.orders import eventually, order_engine, write_events

pytestmark = pytest.mark.usefixtures("stack")

Client = AsyncTestClient[Litestar]

DAILY = "/api/analytics/sales/daily"
TOP = "/api/analytics/products/top"
UTC = dt.UTC

# Codes ISO 4217 leaves to users (AAA-AAZ, QMA-QZZ, ZZA-ZZZ): never a real currency's rows.
_USER_ASSIGNED = [
    *("AA" + c for c in string.ascii_uppercase),
    *("Q" + a + b for a in "MNOPQRSTUVWXYZ" for b in string.ascii_uppercase),
    *("ZZ" + c for c in string.ascii_uppercase),
]


@pytest.fixture(scope="module")
async def client(stack: None) -> AsyncIterator[Client]:
    async with authorized(AsyncTestClient(app=create_app())) as test_client:
        yield test_client


async def fresh_days() -> tuple[dt.date, dt.date]:
    """Two consecutive days on which daily_sales has no row in any currency."""
    first, last = dt.date(1901, 1, 1), dt.date(2001, 12, 30)
    conn = await connect("analytics")
    try:
        used = {r["day"] for r in await conn.fetch("SELECT DISTINCT day FROM daily_sales WHERE day <= $1", last)}
    finally:
        await conn.close()
    span = (last - first).days
    for _ in range(1000):
        day = first + dt.timedelta(days=random.randrange(span))
        if day not in used and day + dt.timedelta(days=1) not in used:
            return day, day + dt.timedelta(days=1)
    raise AssertionError("no free pair of days left in 1901-2001")


async def fresh_currencies(count: int) -> list[str]:
    """Currency codes no projection row has yet, in alphabetical order."""
    conn = await connect("analytics")
    try:
        used = {
            r["currency"]
            for r in await conn.fetch("SELECT currency FROM daily_sales UNION SELECT currency FROM product_sales")
        }
    finally:
        await conn.close()
    free = [code for code in _USER_ASSIGNED if code not in used]
    if len(free) < count:  # a very long-lived database: any other unused three letters will do
        every = ("".join(letters) for letters in itertools.product(string.ascii_uppercase, repeat=3))
        free = [code for code in every if code not in used]
    return sorted(random.sample(free, count))


def line(product_id: uuid.UUID, quantity: int, unit_price: str) -> OrderLine:
    unit = Decimal(unit_price)
    return OrderLine(
        product_id=product_id,
        sku=f"SKU-{product_id.hex[:8]}",
        quantity=quantity,
        unit_price=unit,
        total_price=unit * quantity,
    )


def order(currency: str, created_at: dt.datetime, total: str, *lines: OrderLine) -> OrderCreated:
    order_id = uuid.uuid4()
    return OrderCreated(
        order_id=order_id,
        order_number=f"ORD-{order_id.hex[:12].upper()}",
        customer_id=str(uuid.uuid4()),
        status="confirmed",
        currency=currency,
        total_amount=Decimal(total),
        items=list(lines),
        created_at=created_at,
    )


def cancel(created: OrderCreated, cancelled_at: dt.datetime) -> OrderCancelled:
    return OrderCancelled(
        order_id=created.order_id,
        customer_id=created.customer_id,
        currency=created.currency,
        total_amount=created.total_amount,
        items=created.items,
        reason="customer changed their mind",
        cancelled_at=cancelled_at,
    )


@dataclass(frozen=True)
class Sales:
    """One run's events and the rows they must produce (as the API renders them)."""

    placed: dt.date
    cancelled: dt.date
    main: str  # the currency of two orders, one of them cancelled
    other: str  # the currency of a third order, same day
    shirt: uuid.UUID
    mug: uuid.UUID
    daily: list[dict[str, Any]]  # sorted by day, currency
    products: dict[str, list[dict[str, Any]]]  # currency -> rows by revenue desc


@pytest.fixture(scope="module")
async def sales(stack: None) -> Sales:
    """Write three orders and one cancellation to order_db's outbox and wait until analytics applied them."""
    placed, cancelled_day = await fresh_days()
    main, other = await fresh_currencies(2)
    shirt, mug = uuid.uuid4(), uuid.uuid4()
    at = dt.datetime.combine(placed, dt.time(10, 0), tzinfo=UTC)
    # The total includes 4.00 shipping: days count order totals, products count line totals.
    first = order(main, at, "34.25", line(shirt, 2, "12.50"), line(mug, 1, "5.25"))
    # 22:30 the evening before in New York is 03:30 UTC on the placed day.
    new_york = dt.timezone(dt.timedelta(hours=-5))
    evening_before = dt.datetime.combine(placed - dt.timedelta(days=1), dt.time(22, 30), tzinfo=new_york)
    second = order(main, evening_before, "12.50", line(shirt, 1, "12.50"))
    third = order(other, at.replace(hour=23, minute=59, second=59), "44.00", line(shirt, 4, "11.00"))
    cancellation = cancel(second, dt.datetime.combine(cancelled_day, dt.time(8, 0), tzinfo=UTC))

    engine = order_engine()
    try:
        await write_events(engine, [first, second, third, cancellation])
    finally:
        await engine.dispose()

    expected = Sales(
        placed=placed,
        cancelled=cancelled_day,
        main=main,
        other=other,
        shirt=shirt,
        mug=mug,
        daily=[
            {"day": placed.isoformat(), "currency": main, "orders": 2, "revenue": "46.75", "cancellations": 0},
            {"day": placed.isoformat(), "currency": other, "orders": 1, "revenue": "44.00", "cancellations": 0},
            {"day": cancelled_day.isoformat(), "currency": main, "orders": 0, "revenue": "-12.50", "cancellations": 1},
        ],
        products={
            main: [
                {"product_id": str(shirt), "currency": main, "units": 2, "revenue": "25.00"},
                {"product_id": str(mug), "currency": main, "units": 1, "revenue": "5.25"},
            ],
            other: [{"product_id": str(shirt), "currency": other, "units": 4, "revenue": "44.00"}],
        },
    )
    await eventually(lambda: _applied(expected), within=90, what="order events applied to the sales projections")
    return expected


async def _daily_rows(placed: dt.date, cancelled: dt.date) -> list[dict[str, Any]]:
    conn = await connect("analytics")
    try:
        rows = await conn.fetch(
            "SELECT day, currency, orders, revenue, cancellations FROM daily_sales "
            "WHERE day BETWEEN $1 AND $2 ORDER BY day, currency",
            placed,
            cancelled,
        )
    finally:
        await conn.close()
    return [{**dict(r), "day": r["day"].isoformat(), "revenue": str(r["revenue"])} for r in rows]


async def _product_rows(product_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    conn = await connect("analytics")
    try:
        rows = await conn.fetch(
            "SELECT product_id, currency, units, revenue FROM product_sales WHERE product_id = ANY($1::uuid[])",
            product_ids,
        )
    finally:
        await conn.close()
    return [{**dict(r), "product_id": str(r["product_id"]), "revenue": str(r["revenue"])} for r in rows]


def _daily_api(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The API's rows: the projection's, with no returns refunded (net revenue = revenue)."""
    return [{**r, "returns": 0, "refunds": "0.00", "net_revenue": r["revenue"]} for r in rows]


def _products_api(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "units_returned": 0, "refunded": "0.00"} for r in rows]


def _by_key(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["product_id"], r["currency"]): r for r in rows}


async def _applied(expected: Sales) -> bool:
    # All four events: the cancellation is the last one written, and each row reflects every event of it.
    daily = await _daily_rows(expected.placed, expected.cancelled)
    products = await _product_rows([expected.shirt, expected.mug])
    every_product = [row for rows in expected.products.values() for row in rows]
    return daily == expected.daily and _by_key(products) == _by_key(every_product)


# --- the projections ------------------------------------------------------------------------------


async def test_orders_count_on_their_utc_creation_day_and_cancellations_on_theirs_with_net_revenue(
    sales: Sales,
) -> None:
    assert await _daily_rows(sales.placed, sales.cancelled) == sales.daily


async def test_products_add_units_and_line_totals_and_a_cancellation_takes_them_back(sales: Sales) -> None:
    rows = await _product_rows([sales.shirt, sales.mug])

    assert _by_key(rows) == _by_key([*sales.products[sales.main], *sales.products[sales.other]])


# --- GET /api/analytics/sales/daily ---------------------------------------------------------------


async def test_daily_report_shows_exactly_the_projected_days_per_currency(client: Client, sales: Sales) -> None:
    response = await client.get(DAILY, params={"from": sales.placed.isoformat(), "to": sales.cancelled.isoformat()})

    assert response.status_code == 200, response.text
    assert response.json() == _daily_api(sales.daily)


async def test_daily_report_range_is_inclusive_on_both_ends(client: Client, sales: Sales) -> None:
    day = sales.placed.isoformat()

    response = await client.get(DAILY, params={"from": day, "to": day})

    assert response.status_code == 200, response.text
    assert response.json() == _daily_api([row for row in sales.daily if row["day"] == day])


async def test_daily_report_filters_on_currency(client: Client, sales: Sales) -> None:
    params = {"from": sales.placed.isoformat(), "to": sales.cancelled.isoformat(), "currency": sales.other}

    response = await client.get(DAILY, params=params)

    assert response.status_code == 200, response.text
    assert response.json() == _daily_api([row for row in sales.daily if row["currency"] == sales.other])


async def test_daily_report_defaults_to_the_last_30_days(client: Client) -> None:
    today = dt.datetime.now(UTC).date()

    response = await client.get(DAILY)

    assert response.status_code == 200, response.text
    days = [dt.date.fromisoformat(row["day"]) for row in response.json()]
    assert all(today - dt.timedelta(days=29) <= day <= today for day in days)
    assert days == sorted(days)


# --- GET /api/analytics/products/top --------------------------------------------------------------


async def test_top_products_in_a_currency_are_exactly_its_products_by_revenue(client: Client, sales: Sales) -> None:
    for currency, expected in sales.products.items():
        response = await client.get(TOP, params={"currency": currency})

        assert response.status_code == 200, response.text
        assert response.json() == _products_api(expected)


async def test_top_products_stops_at_the_limit(client: Client, sales: Sales) -> None:
    response = await client.get(TOP, params={"currency": sales.main, "limit": 1})

    assert response.status_code == 200, response.text
    assert response.json() == _products_api(sales.products[sales.main][:1])


async def test_top_products_of_all_currencies_are_ordered_by_revenue_then_units(client: Client, sales: Sales) -> None:
    response = await client.get(TOP, params={"limit": 100})

    assert response.status_code == 200, response.text
    rows = response.json()
    assert 0 < len(rows) <= 100
    assert all(set(row) == {"product_id", "currency", "units", "revenue", "units_returned", "refunded"} for row in rows)
    ranks = [(Decimal(row["revenue"]), row["units"]) for row in rows]
    assert ranks == sorted(ranks, reverse=True)
    default = await client.get(TOP)
    assert default.json() == rows[:10]


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "first", "last"),
    [
        # Regression: the default `from` (29 days before `to`) overflowed before year 1 and answered 500.
        ({"to": "0001-01-01"}, "0001-01-01", "0001-01-01"),
        ({"from": "9999-12-31", "to": "9999-12-31"}, "9999-12-31", "9999-12-31"),
        ({"from": "2001-03-15", "to": "2001-03-14"}, None, None),  # starts after it ends: empty
        ({"from": "2001-01-01", "to": "2002-01-02"}, "2001-01-01", "2001-12-31"),  # 367 days: cut to 366
    ],
)
async def test_any_two_calendar_days_are_a_range_answered_with_200(
    client: Client, params: dict[str, str], first: str | None, last: str | None
) -> None:
    response = await client.get(DAILY, params=params)

    assert response.status_code == 200, response.text
    days = [row["day"] for row in response.json()]
    if first is None or last is None:
        assert days == []
    else:
        assert all(first <= day <= last for day in days)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        (DAILY, {"from": "14.03.2001"}, "from"),
        (DAILY, {"from": ""}, "from"),
        (DAILY, {"to": "2001-02-30"}, "to"),
        (DAILY, {"currency": "usd"}, "currency"),
        (TOP, {"limit": "0"}, "limit"),
        (TOP, {"limit": "101"}, "limit"),
        (TOP, {"limit": "ten"}, "limit"),
        (TOP, {"currency": "EURO"}, "currency"),
    ],
)
async def test_bad_query_parameters_are_a_400_naming_the_field(
    client: Client, path: str, params: dict[str, str], field: str
) -> None:
    response = await client.get(path, params=params)

    assert response.status_code == 400, response.text
    extra = response.json()["extra"]
    assert [(entry["key"], entry.get("source")) for entry in extra] == [(field, "query")]
