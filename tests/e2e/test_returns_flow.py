"""Returns end to end through the real stack: a delivered, captured order is partly returned, received,
refunded by the payment service (its ledger and the provider sandbox's), restocked by the warehouse, and
completed; a refund_only return is refunded on approval, across a SIGKILL of the payment and returns
consumers; copies of return.received refund and restock once.

Every step is a real process (checkout, order saga, warehouse, payment consumer and worker, sandbox, the
returns API and consumer), and every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import ROUND_DOWN, Decimal
from functools import partial
from typing import Any

import httpx
import pytest

from tests.support import consumers
from tests.support.http import api_client, service_url
from tests.support.orders import eventually, in_currency
from tests.support.returns import (
    act,
    applied,
    delivered_order,
    line_id,
    payments,
    request_return,
    resend,
    return_reaches,
    sandbox_refunds,
    stocked,
)

pytestmark = pytest.mark.usefixtures("stack")

CRASHED = ("payment-consumer", "returns-consumer")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(timeout=30) as client:
        yield client


def share(amount: str, part: Decimal, whole: str) -> Decimal:
    return (Decimal(amount) * part / Decimal(whole)).quantize(Decimal("0.01"), rounding=ROUND_DOWN)


async def inventory(http: httpx.AsyncClient, product: dict[str, Any]) -> dict[str, Any]:
    response = await http.get(f"{service_url('warehouse')}/api/inventory/{product['id']}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_partial_return_is_refunded_once_restocked_and_completed_and_refund_only_on_approval(
    http: httpx.AsyncClient,
) -> None:
    kept, back, broken = await stocked("10.00", 5), await stocked("25.00", 2), await stocked("5.00", 2)
    placed = await delivered_order(http, [(kept, 3), (back, 1), (broken, 1)])
    order_id, subtotal, tax = placed["id"], placed["subtotal"], placed["tax_amount"]
    before = await inventory(http, kept)

    # Two of three units of one line (changed mind) and the broken one (defective): no shipping back.
    created = await request_return(
        http,
        {
            "order_id": order_id,
            "items": [
                {"order_item_id": line_id(placed, kept), "quantity": 2, "reason": "changed_mind"},
                {"order_item_id": line_id(placed, broken), "quantity": 1, "reason": "defective"},
            ],
            "description": "two too many, one broken",
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "requested" and body["return_number"].startswith("RET-")
    assert body["refund_shipping"] is False and body["refund_tax"] is True and body["expires_at"]
    expected = Decimal("25.00") + share(tax, Decimal("20.00"), subtotal) + share(tax, Decimal("5.00"), subtotal)
    assert Decimal(body["total_refund_amount"]) == expected
    items = {item["order_item_id"]: item for item in body["items"]}
    return_id = body["id"]

    assert (await act(http, return_id, "approve", {"approved_by": "agent@example.com"})).status_code == 200
    received = await act(
        http,
        return_id,
        "receive",
        {
            "items": [
                {"return_item_id": items[line_id(placed, kept)]["id"], "quantity_received": 2, "condition": "new"},
                {
                    "return_item_id": items[line_id(placed, broken)]["id"],
                    "quantity_received": 1,
                    "condition": "damaged",
                },
            ],
            "received_by": "dock-3",
        },
    )
    assert received.status_code == 200, received.text
    assert received.json()["status"] == "received"

    done = await return_reaches(http, return_id, "completed")
    assert done["refunded_at"] and done["completed_at"] and done["processed_by"] == "dock-3"
    by_line = {item["order_item_id"]: item for item in done["items"]}
    restocked, damaged = by_line[line_id(placed, kept)], by_line[line_id(placed, broken)]
    assert restocked["restocked"] is True and restocked["restocked_at"] and restocked["warehouse_id"]
    assert damaged["restocked"] is False and damaged["condition_received"] == "damaged"
    # Stock: the sellable units are back on hand, the damaged one is not.
    after = await inventory(http, kept)
    assert after["on_hand"] == before["on_hand"] + 2 and after["available"] == before["available"] + 2
    # Payment: one refund operation, the return's, for exactly the computed amount; the sandbox agrees.
    [payment] = await payments(http, order_id)
    [refund] = [op for op in payment["operations"] if op["kind"] == "refund"]
    assert refund["id"] == done["refund_id"] and refund["outcome"] == "succeeded"
    assert Decimal(refund["amount"]) == expected == Decimal(payment["refunded_amount"])
    assert payment["status"] == "partially_refunded"
    assert [r["amount"] for r in await sandbox_refunds(http, order_id)] == [int(expected * 100)]

    # The same return.received again, and a copy under a new id: applied, but nothing refunds or restocks twice.
    [copy] = await resend(return_id, "return.received")
    for service, group in (("payment", "payment"), ("warehouse", "warehouse-reservations")):
        await eventually(partial(applied, service, group, copy), within=60, what=f"{group} got the copy")
    assert len(await sandbox_refunds(http, order_id)) == 1
    assert (await inventory(http, kept))["on_hand"] == after["on_hand"]
    [payment] = await payments(http, order_id)
    assert len([op for op in payment["operations"] if op["kind"] == "refund"]) == 1

    # refund_only (the wrong item, not worth shipping back): refunded on approval, with its shipping share.
    kept_only = await request_return(
        http,
        {
            "order_id": order_id,
            "items": [{"order_item_id": line_id(placed, back), "quantity": 1, "reason": "wrong_item"}],
            "return_type": "refund_only",
        },
    )
    assert kept_only.status_code == 201, kept_only.text
    assert kept_only.json()["refund_shipping"] is True
    only_id = kept_only.json()["id"]
    assert (await act(http, only_id, "approve", {})).status_code == 200
    # Mid-refund, the payment and returns consumers die (SIGKILL) and come back: still one refund each.
    await asyncio.gather(*(consumers.kill(name) for name in CRASHED))
    await asyncio.gather(*(consumers.start(name) for name in CRASHED))
    completed = await return_reaches(http, only_id, "completed")
    second = (
        Decimal("25.00")
        + share(tax, Decimal("25.00"), subtotal)
        + share(placed["shipping_amount"], Decimal("25.00"), subtotal)
    )
    assert Decimal(completed["total_refund_amount"]) == second
    [payment] = await payments(http, order_id)
    assert Decimal(payment["refunded_amount"]) == expected + second <= Decimal(payment["captured_amount"])
    assert sorted(r["amount"] for r in await sandbox_refunds(http, order_id)) == sorted(
        [int(expected * 100), int(second * 100)]
    )

    # Projections: the customer's spend is net of both refunds; analytics counts the returned units.
    refunds = expected + second

    async def stats_net() -> bool:
        response = await http.get(f"{service_url('customer')}/api/customers/{placed['customer_id']}/stats")
        got = in_currency(response.json(), placed["currency"])
        return (got["returns_count"], Decimal(got["refunded_amount"]), Decimal(got["total_spent"])) == (
            2,
            refunds,
            Decimal(placed["total_amount"]) - refunds,
        )

    async def units_returned() -> bool:
        response = await http.get(f"{service_url('analytics')}/api/analytics/products/{kept['id']}")
        rows = response.json()
        return [(r["units"], r["units_returned"], Decimal(r["refunded"])) for r in rows] == [
            (3, 2, Decimal(restocked["refund_amount"]))
        ]

    await eventually(stats_net, within=60, what="customer stats net of refunds")
    await eventually(units_returned, within=60, what="analytics units returned")
