"""The returns service makes its remote calls before it locks a row (session 29).

A return asked for with a description asked the customer service whether the buyer was erased with the
order's snapshot locked (ec1a133), and staff's settle_with read the payment's ledger with the return row
locked: a slow customer or payment service held those locks, and the returns consumer's projection and
progress writers waited on them, for up to the 2 s timeout. Now each command asks first, then locks and
decides. The returns app runs in-process under uvicorn (the code in the tree), against the real services
and database; its calls to the customer or payment service pass a proxy that can hold their answers, so
the test can try the row locks while the call is in flight (tests/support/held.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from apps.common.data_keys import PATH as DATA_KEYS
from apps.common.settings import forget_settings
from apps.returns.app import create_app
from tests.support.db import connect
from tests.support.held import HeldService, held_service, in_process
from tests.support.http import api_client, auth_headers, create_customer
from tests.support.returns import delivered_order, line_id, stocked

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture
async def held(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, HeldService, HeldService]]:
    """The in-process returns app's base URL, and the proxies to the customer and payment services."""
    monkeypatch.setenv("SERVICE_NAME", "returns")  # its calls carry the returns service's token and scopes
    monkeypatch.setenv("RETURNS_DEPENDENCY_TIMEOUT_S", "30")  # a busy machine never turns a hold into a 503
    forget_settings()
    async with held_service("customer", DATA_KEYS) as customers, held_service("payment", "/api/payments") as payments:
        monkeypatch.setenv("CUSTOMER_URL", customers.url)
        monkeypatch.setenv("PAYMENT_URL", payments.url)
        async with in_process(create_app) as url:
            yield url, customers, payments


async def _delivered(product: dict[str, Any], customer: str | None) -> dict[str, Any]:
    async with api_client(timeout=30) as http:
        return await delivered_order(http, [(product, 2)], customer_id=customer)


# How long the row may take to lock. The held call is held until the test lets it go, after this check, so
# a command holding the row across its call fails the check whatever this is; what it waits out is the
# returns consumer's own short transactions on the row (it projects the order's shipped and delivered
# events as they arrive: NOWAIT failed on one of those in a fresh-clone CI, session 31).
LOCK_WITHIN = "3s"


async def _lockable(table: str, key: str, value: object) -> None:
    """The row locks within LOCK_WITHIN: nobody holds it across the held call."""
    conn = await connect("returns")
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_WITHIN}'")
            await conn.execute(f"SELECT 1 FROM {table} WHERE {key} = $1 FOR UPDATE", value)
    finally:
        await conn.close()


async def test_a_return_with_a_description_asks_about_an_erasure_before_locking_the_order(
    held: tuple[str, HeldService, HeldService],
) -> None:
    """While the customer service holds its answer, the order's snapshot locks (before: the lock timed out,
    the return held it); then the return is made with its description (a live customer)."""
    url, customers, _ = held
    product = await stocked("5.00", 10)
    customer = (await create_customer())["id"]
    delivered = await _delivered(product, customer)
    line = {"order_item_id": line_id(delivered, product), "quantity": 1, "reason": "defective"}
    body = {"order_id": delivered["id"], "items": [line], "description": "the handle came off"}
    async with httpx.AsyncClient(base_url=url, headers=auth_headers("customer", customer_id=customer)) as own:
        customers.hold()
        asking = asyncio.create_task(own.post("/api/returns", json=body, timeout=60))
        await asyncio.wait_for(customers.answered.wait(), 10)
        try:
            await _lockable("order_snapshots", "order_id", uuid.UUID(delivered["id"]))
        finally:
            customers.let_go()
        made = await asyncio.wait_for(asking, 30)
    assert made.status_code == 201, made.text
    assert made.json()["description"] == "the handle came off"


async def test_settle_with_reads_the_ledger_before_locking_the_return(
    held: tuple[str, HeldService, HeldService],
) -> None:
    """Approving a refund_only return naming a refund by hand: while the payment service holds the ledger,
    the return row locks (before: the lock timed out); the unknown refund is then refused (422 naming
    settle_with[0]) and the return stays requested."""
    url, _, payments = held
    product = await stocked("5.00", 10)
    delivered = await _delivered(product, None)
    line = {"order_item_id": line_id(delivered, product), "quantity": 1, "reason": "defective"}
    async with httpx.AsyncClient(base_url=url, headers=auth_headers("staff"), timeout=60) as staff:
        asked = await staff.post(
            "/api/returns", json={"order_id": delivered["id"], "items": [line], "return_type": "refund_only"}
        )
        assert asked.status_code == 201, asked.text
        return_id = asked.json()["id"]
        payments.hold()
        approving = asyncio.create_task(
            staff.post(f"/api/returns/{return_id}/approve", json={"settle_with": [str(uuid.uuid4())]})
        )
        await asyncio.wait_for(payments.answered.wait(), 10)
        try:
            await _lockable("return_requests", "id", uuid.UUID(return_id))
        finally:
            payments.let_go()
        refused = await asyncio.wait_for(approving, 30)
        assert refused.status_code == 422, refused.text
        assert [e["key"] for e in refused.json()["extra"]] == ["settle_with[0]"]
        assert (await staff.get(f"/api/returns/{return_id}")).json()["status"] == "requested"
