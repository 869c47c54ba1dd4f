"""A customer's browser reading a few of its own records at once is not refused (review, session 33, W33-3).

The read budget (apps/common/rate_limit.py ``ReadBudget``) also caps a customer's reads in flight in one
process (``READ_CONCURRENCY``), because a read's cost is charged only once it is answered. A browser opens up
to six connections per host (HTTP/1.1; over HTTP/2 it sends every request of a page at once), so a page that
loads six of the customer's orders side by side sends six reads together: an honest client, far inside the
budget's units. The order app from the tree is served by uvicorn in this process (real concurrent requests;
Litestar's test client handles one at a time), with its default budget; the orders are the customer's own.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from apps.order.app import create_app as order_app
from tests.support.held import in_process
from tests.support.http import auth_headers, create_customer, create_product, service_url

pytestmark = pytest.mark.usefixtures("stack")

BROWSER_CONNECTIONS = 6  # a browser's connections per host over HTTP/1.1


async def test_six_reads_of_a_customers_own_orders_at_once_are_all_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RATE_LIMIT_READS", raising=False)  # the default budget
    customer = (await create_customer())["id"]
    product = (await create_product("1.00"))["id"]
    body = {"customer_id": customer, "items": [{"product_id": product, "quantity": 1}]}
    async with httpx.AsyncClient(base_url=service_url("order"), timeout=10) as stack_api:
        placed = [
            await stack_api.post("/api/orders", json=body, headers=auth_headers("admin"))
            for _ in range(BROWSER_CONNECTIONS)
        ]
    assert all(p.status_code == 201 for p in placed), [p.text for p in placed]

    me = auth_headers("customer", customer_id=customer)
    async with in_process(order_app) as url:
        browser = [httpx.AsyncClient(base_url=url, timeout=10) for _ in range(BROWSER_CONNECTIONS)]
        try:
            for connection in browser:  # the connections are open before the page asks, as a browser's are
                assert (await connection.get("/health")).status_code == 200
            answers = await asyncio.gather(
                *(c.get(f"/api/orders/{p.json()['id']}", headers=me) for c, p in zip(browser, placed, strict=True))
            )
        finally:
            for connection in browser:
                await connection.aclose()
    refused = [a.json() for a in answers if a.status_code != 200]
    assert not refused, f"a customer's {BROWSER_CONNECTIONS} reads of their own orders at once: {refused}"
