"""A customer's reads are budgeted (session 33, apps/common/rate_limit.py ``ReadBudget``): a listing costs a
unit, plus one per order it shows (the access log writes a row for each, kept two years) and per 32 KiB it
sends; past the budget the customer's next read is a 429 with ``Retry-After``, and staff reading the same
rows are not counted. Before, reads were unlimited: one customer's eight concurrent pages of 100 orders of
100 lines kept the order API busy 1.85 s of CPU in 2.1 s (S, session 32). A listing page of orders or of
returns ends before it passes MAX_PAGE_LINES lines (apps/common/pagination.py).

The order and returns apps run in-process (the code in the tree, a small budget set for them) against the
stack's PostgreSQL and Redis; each test has a customer of its own, so its budget is nobody else's."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from apps.common import pagination
from apps.order.app import create_app as order_app
from apps.returns.app import create_app as returns_app
from tests.support.db import connect
from tests.support.http import auth_headers, create_customer, create_product, set_stock

pytestmark = pytest.mark.usefixtures("stack")

Client = AsyncTestClient[Any]
UNITS, WINDOW_S = 60, 30
ORDERS = 10


@pytest.fixture
async def orders(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    monkeypatch.setenv("RATE_LIMIT_READS", f"{UNITS}/{WINDOW_S}s")
    async with AsyncTestClient(app=order_app()) as client:
        yield client


@pytest.fixture
async def returns(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Client]:
    monkeypatch.setenv("RATE_LIMIT_READS", f"{UNITS}/{WINDOW_S}s")
    async with AsyncTestClient(app=returns_app()) as client:
        yield client


async def test_a_customers_listing_costs_a_unit_per_order_shown_and_is_refused_past_the_budget(
    orders: Client,
) -> None:
    customer = (await create_customer())["id"]
    product = (await create_product("1.00"))["id"]
    await set_stock(product, 0)  # never reserved: the orders stay as placed
    admin, me = auth_headers("admin"), auth_headers("customer", customer_id=customer)
    body = {"customer_id": customer, "items": [{"product_id": product, "quantity": 1}]}
    for _ in range(ORDERS):
        placed = await orders.post("/api/orders", json=body, headers=admin)
        assert placed.status_code == 201, placed.text
    listing = f"/api/orders?customer_id={customer}&limit=100"

    first = await orders.get(listing, headers=me)
    assert first.status_code == 200 and len(first.json()["items"]) == ORDERS
    assert len(first.content) < 32 * 1024  # so its bytes add no unit: the count below is exact
    assert first.headers["RateLimit-Policy"] == f"{UNITS};w={WINDOW_S}"
    assert first.headers["RateLimit-Remaining"] == str(UNITS - 1)
    one = f"/api/orders/{first.json()['items'][0]['id']}"

    remaining = []
    for _ in range(UNITS):
        answer = await orders.get(listing, headers=me)
        if answer.status_code == 429:
            break
        assert answer.status_code == 200, answer.text
        remaining.append(int(answer.headers["RateLimit-Remaining"]))
    else:
        raise AssertionError(f"no 429 in {UNITS} listings of {ORDERS} orders: {remaining}")
    # 1 + 10 units a listing, each seen by the next once the background call to Redis has carried it
    # (50 ms): a few listings may be admitted on a count that lags, never more than the budget's worth.
    assert 3 <= len(remaining) <= UNITS // (1 + ORDERS) + 2, remaining
    assert remaining == sorted(remaining, reverse=True)
    retry_after = int(answer.headers["Retry-After"])
    assert 1 <= retry_after <= WINDOW_S
    assert answer.json() == {"status_code": 429, "detail": f"Too many reads; retry after {retry_after} s"}
    assert answer.headers["RateLimit-Remaining"] == "0"

    # One budget for all of the customer's reads; staff reading the same rows are not counted.
    assert (await orders.get(one, headers=me)).status_code == 429
    staff = await orders.get(listing, headers=auth_headers("staff"))
    assert staff.status_code == 200 and len(staff.json()["items"]) == ORDERS
    assert "RateLimit-Limit" not in staff.headers
    # Another customer is not held back, and the refused customer may still write (its own budget).
    other = auth_headers("customer", customer_id=(await create_customer())["id"])
    assert (await orders.get(f"/api/orders/{uuid.uuid4()}", headers=other)).status_code == 404
    cancel = await orders.post(f"{one}/cancel", headers=me)
    assert cancel.status_code in (200, 409), cancel.text  # (409: cancelled already, no stock was ever set)


async def test_every_read_documents_the_429(orders: Client) -> None:
    schema = (await orders.get("/schema/openapi.json")).json()
    for path in ("/api/orders", "/api/orders/{order_id}"):
        answer = schema["paths"][path]["get"]["responses"]["429"]
        assert answer["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ErrorBody"


async def test_a_listing_page_ends_before_it_passes_the_lines_bound(
    orders: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page holds at most MAX_PAGE_LINES lines (1000; 5 and 2 here): it ends before the order that would
    pass it, one order at least, and its next_cursor goes on from there, so every order is listed once."""
    customer = (await create_customer())["id"]
    products = [(await create_product("1.00"))["id"] for _ in range(3)]
    admin, me = auth_headers("admin"), auth_headers("customer", customer_id=customer)
    placed: list[str] = []
    for lines in (3, 2, 2, 1):  # oldest first: listed 1, 2, 2, 3 lines
        items = [{"product_id": p, "quantity": 1} for p in products[:lines]]
        answer = await orders.post("/api/orders", json={"customer_id": customer, "items": items}, headers=admin)
        assert answer.status_code == 201, answer.text
        placed.insert(0, answer.json()["id"])

    pages = _pager(orders, f"/api/orders?customer_id={customer}", me, monkeypatch)
    assert await pages(1000) == [placed]
    assert await pages(5) == [placed[:3], placed[3:]]  # 1 + 2 + 2; the 3-line order would pass 5
    assert await pages(2) == [[order] for order in placed]  # the 3-line order alone, past the bound


async def test_a_returns_listing_page_ends_before_it_passes_the_lines_bound_and_costs_a_unit_per_return(
    returns: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The orders' rule, on a customer's returns: each return's items are its lines. Before, a page of 100
    returns of 100 items (the most an order line count allows) was 10,000 items in one answer."""
    customer = (await create_customer())["id"]
    me = auth_headers("customer", customer_id=customer)
    listed = await _returns_of(customer, (3, 2, 2, 1))

    first = await returns.get(f"/api/returns?customer_id={customer}&limit=100", headers=me)
    assert first.status_code == 200, first.text
    assert [len(r["items"]) for r in first.json()["items"]] == [1, 2, 2, 3]
    # Charged once answered: the read's unit on admission, a unit per return shown after it.
    assert first.headers["RateLimit-Remaining"] == str(UNITS - 1)
    again = await returns.get(f"/api/returns?customer_id={customer}&limit=100", headers=me)
    assert again.headers["RateLimit-Remaining"] == str(UNITS - (1 + len(listed)) - 1)

    staff = await returns.get(f"/api/returns?customer_id={customer}&limit=100", headers=auth_headers("staff"))
    assert staff.status_code == 200 and [r["id"] for r in staff.json()["items"]] == listed
    assert "RateLimit-Limit" not in staff.headers

    pages = _pager(returns, f"/api/returns?customer_id={customer}", me, monkeypatch)
    assert await pages(1000) == [listed]
    assert await pages(5) == [listed[:3], listed[3:]]
    assert await pages(2) == [[one] for one in listed]


def _pager(
    client: Client, listing: str, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Callable[[int], Awaitable[list[list[str]]]]:
    """Every page of a listing (limit 100) under a lines bound, as the ids on each page."""

    async def pages(bound: int) -> list[list[str]]:
        monkeypatch.setattr(pagination, "MAX_PAGE_LINES", bound)
        found: list[list[str]] = []
        cursor = ""
        while True:
            answer = await client.get(f"{listing}&limit=100&cursor={cursor}", headers=headers)
            assert answer.status_code == 200, answer.text
            found.append([row["id"] for row in answer.json()["items"]])
            cursor = answer.json()["next_cursor"]
            if cursor is None:
                return found

    return pages


async def _returns_of(customer: str, lines: Sequence[int]) -> list[str]:
    """Rejected returns of ``customer``, oldest first, each with that many items, written straight to the
    returns database (the listing reads them as any other); their ids, newest first as listed."""
    conn = await connect("returns")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    ids: list[str] = []
    try:
        for n, count in enumerate(lines):
            return_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO return_requests (id, return_number, order_id, customer_id, status, reason, currency, "
                "created_at) VALUES ($1, $2, $3, $4, 'rejected', 'defective', 'USD', $5)",
                return_id,
                f"RET-{return_id.hex[:16].upper()}",
                uuid.uuid4(),
                customer,
                start + dt.timedelta(seconds=n),
            )
            await conn.executemany(
                "INSERT INTO return_items (return_request_id, order_item_id, product_id, product_sku, product_name, "
                "quantity_returned, unit_price, refund_amount) VALUES ($1, $2, $3, 'SKU-T', 'T', 1, 1, 1)",
                [(return_id, line, uuid.uuid4()) for line in range(1, count + 1)],
            )
            ids.insert(0, str(return_id))
    finally:
        await conn.close()
    return ids
