"""Redis SIGKILLed under the running services, and started again: nothing is refused or lost meanwhile, and
everything Redis serves comes back without restarting any service.

Redis holds the write limits' shared counts (apps/common/rate_limit.py: fail open) and the checkout's cart
views and guest sessions (apps/checkout/cache.py: PostgreSQL is the truth); an order's Idempotency-Key is a
PostgreSQL row. The stack's Redis keeps nothing on disk, so it comes back empty. Each caller here is a
customer of its own (a fresh id in its token), so no other caller of these services is limited by it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from infra import proc, stack
from tests.support.db import fetch
from tests.support.http import api_client, create_customer, create_product, service_url

pytestmark = pytest.mark.usefixtures("stack")

ADDRESS = {"address_line1": "1 Main St", "city": "Springfield", "country": "US"}
REGISTER = "/api/customers"
INVALID = {"email": "not-an-email"}  # refused by validation (400) after the limit has counted it
LIMIT_BACK_WITHIN_S = 5.0  # a worker that saw Redis fail asks again every REDIS_COOLDOWN_S (1 s)


async def place(customer: dict[str, Any], product: dict[str, Any], key: str) -> httpx.Response:
    body = {"customer_id": customer["id"], "items": [{"product_id": product["id"], "quantity": 1}]}
    async with api_client("customer", customer_id=customer["id"], base_url=service_url("order"), timeout=10) as h:
        return await h.post("/api/orders", json={**body, "shipping_address": ADDRESS}, headers={"Idempotency-Key": key})


async def writes_past_the_limit(limit: int, extra: int = 10) -> tuple[int, int]:
    """A fresh customer's ``limit + extra`` writes to the customer API: (let through, refused); anything but a
    400 or a 429 fails the test. A write let through while the limit fails open carries no RateLimit-*
    headers, so the limit is learnt beforehand (:func:`write_limit`)."""
    passed, refused = 0, 0
    async with api_client("customer", customer_id=uuid.uuid4(), base_url=service_url("customer"), timeout=10) as h:
        for _ in range(limit + extra):
            answer = await h.post(REGISTER, json=INVALID)
            assert answer.status_code in (400, 429), answer.text
            passed, refused = passed + (answer.status_code == 400), refused + (answer.status_code == 429)
    return passed, refused


async def write_limit() -> int:
    async with api_client("customer", customer_id=uuid.uuid4(), base_url=service_url("customer"), timeout=10) as h:
        answer = await h.post(REGISTER, json=INVALID)
    assert answer.status_code == 400, answer.text
    return int(answer.headers["RateLimit-Limit"])


async def guest_cart_round(product: dict[str, Any]) -> dict[str, Any]:
    """A guest cart made, filled and read twice on the running checkout service; its last view."""
    async with httpx.AsyncClient(base_url=service_url("checkout"), timeout=10) as h:
        made = await h.post("/api/carts")
        assert made.status_code == 201, made.text
        cart, headers = made.json(), {"X-Guest-Token": made.json()["guest_token"]}
        added = await h.post(
            f"/api/carts/{cart['id']}/items", json={"product_id": product["id"], "quantity": 2}, headers=headers
        )
        assert added.status_code == 200, added.text
        views = [await h.get(f"/api/carts/{cart['id']}", headers=headers) for _ in range(2)]
        assert all(v.status_code == 200 for v in views), views[-1].text
        assert (await h.get(f"/api/carts/{cart['id']}")).status_code == 403, "the guest token is still checked"
        return dict(views[-1].json())


async def test_redis_killed_refuses_nothing_loses_nothing_and_comes_back_without_restarts() -> None:
    customer, product = await create_customer(), await create_product("4.00")
    key_before, key_during = f"redis-kill-{uuid.uuid4()}", f"redis-kill-{uuid.uuid4()}"
    first = await place(customer, product, key_before)
    assert first.status_code == 201, first.text
    limit = await write_limit()

    await asyncio.to_thread(proc.kill, "redis")
    try:
        # The limit fails open: a caller past it is let through (its 400), never a 429 or a 5xx.
        assert await writes_past_the_limit(limit) == (limit + 10, 0)
        retried = await place(customer, product, key_before)
        assert retried.status_code == 201 and retried.json()["id"] == first.json()["id"], retried.text
        assert retried.headers.get("Idempotent-Replayed") == "true"
        during = await place(customer, product, key_during)
        assert during.status_code == 201, during.text
        view = await guest_cart_round(product)
        assert view["subtotal"] == "8.00"
        async with httpx.AsyncClient(timeout=10) as h:
            ready = (await h.get(f"{service_url('checkout')}/ready")).json()
        assert ready["status"] == "degraded" and ready["redis"] != "ok", ready
    finally:
        await asyncio.to_thread(stack.start_component, "redis")
    started = time.monotonic()

    # Each key still names its one order (the keys are PostgreSQL's, not Redis's).
    for key, order in ((key_before, first), (key_during, during)):
        again = await place(customer, product, key)
        assert again.status_code == 201 and again.json()["id"] == order.json()["id"], again.text
    rows = await fetch("order", "SELECT count(*) FROM orders WHERE customer_id = $1", customer["id"])
    assert rows[0][0] == 2

    # The limit holds again once each worker's next call reaches Redis (no service restarted).
    while not (await writes_past_the_limit(limit))[1]:
        assert time.monotonic() - started < LIMIT_BACK_WITHIN_S, f"no 429 {LIMIT_BACK_WITHIN_S} s after Redis's start"
        await asyncio.sleep(0.2)
    assert (await guest_cart_round(product))["subtotal"] == "8.00"
    async with httpx.AsyncClient(timeout=10) as h:
        ready = (await h.get(f"{service_url('checkout')}/ready")).json()
    assert ready["status"] == "ready" and ready["redis"] == "ok", ready
