"""A return of an order placed through POST /api/orders (no payment taken) through the real stack: the
returns service knows from its copy of the order that nothing was paid, so the return refunds 0.00 with
its reason, asks the payment service for nothing, is restocked by the warehouse like any return and
completes; a refund_only return of it completes on approval. No event of either is dead-lettered.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest

from apps.returns.rules import NOT_PAID
from tests.support.db import fetch
from tests.support.http import api_client, create_customer, service_url
from tests.support.orders import eventually
from tests.support.returns import (
    act,
    line_id,
    move,
    order,
    order_reaches,
    payments,
    request_return,
    return_reaches,
    stocked,
)

pytestmark = pytest.mark.usefixtures("stack")


async def on_hand(http: httpx.AsyncClient, product: dict[str, Any]) -> int:
    response = await http.get(f"{service_url('warehouse')}/api/inventory/{product['id']}")
    assert response.status_code == 200, response.text
    return int(response.json()["on_hand"])


async def delivered_unpaid_order(http: httpx.AsyncClient, lines: list[tuple[dict[str, Any], int]]) -> dict[str, Any]:
    """Placed by POST /api/orders (stock reserved, no payment), then processed, shipped and delivered."""
    customer = await create_customer(http)
    items = [{"product_id": product["id"], "quantity": quantity} for product, quantity in lines]
    placed = await http.post(f"{service_url('order')}/api/orders", json={"customer_id": customer["id"], "items": items})
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["id"]
    await order_reaches(http, order_id, "confirmed", "pending")
    for status in ("processing", "shipped", "delivered"):
        await move(http, order_id, status)
    delivered = await order(http, order_id)
    assert delivered is not None and (delivered["status"], delivered["payment_status"]) == ("delivered", "pending")
    return delivered


async def outcomes(service: str, group: str, *aggregates: str) -> list[tuple[str, str]]:
    """The group's inbox rows for these aggregates' events (returns, the order): (event type, outcome)."""
    rows = await fetch(
        service,
        "SELECT event_type, outcome FROM inbox WHERE consumer_group = $1 AND aggregate_id = ANY($2::uuid[])",
        group,
        [uuid.UUID(a) for a in aggregates],
    )
    return sorted((row["event_type"], row["outcome"]) for row in rows)


async def test_a_return_of_an_unpaid_order_refunds_nothing_is_restocked_and_completes_without_a_dead_letter() -> None:
    async with api_client(timeout=30) as http:
        await return_an_unpaid_order(http)


async def return_an_unpaid_order(http: httpx.AsyncClient) -> None:
    back, kept = await stocked("12.00", 4), await stocked("7.00", 2)
    placed = await delivered_unpaid_order(http, [(back, 3), (kept, 1)])
    order_id = placed["id"]
    before = await on_hand(http, back)

    created = await request_return(
        http,
        {
            "order_id": order_id,
            "items": [{"order_item_id": line_id(placed, back), "quantity": 2, "reason": "changed_mind"}],
        },
    )
    assert created.status_code == 201, created.text
    # Said up front: nothing will be refunded, and why.
    assert (created.json()["total_refund_amount"], created.json()["no_refund_reason"]) == ("0.00", NOT_PAID)
    return_id, [item] = created.json()["id"], created.json()["items"]
    assert (await act(http, return_id, "approve", {})).status_code == 200
    received = await act(
        http,
        return_id,
        "receive",
        {"items": [{"return_item_id": item["id"], "quantity_received": 2, "condition": "new"}]},
    )
    assert received.status_code == 200, received.text

    done = await return_reaches(http, return_id, "completed")
    assert done["no_refund_reason"] == NOT_PAID and Decimal(done["total_refund_amount"]) == 0
    assert done["refund_id"] is None and done["refunded_at"] is None and done["completed_at"]
    [restocked] = done["items"]
    assert restocked["restocked"] is True and restocked["warehouse_id"] and Decimal(restocked["refund_amount"]) == 0
    assert await on_hand(http, back) == before + 2

    # refund_only (kept by the customer): nothing to refund and nothing ships back, so done on approval.
    only = await request_return(
        http,
        {
            "order_id": order_id,
            "items": [{"order_item_id": line_id(placed, kept), "quantity": 1, "reason": "wrong_item"}],
            "return_type": "refund_only",
        },
    )
    assert only.status_code == 201, only.text
    approved = await act(http, only.json()["id"], "approve", {})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["no_refund_reason"]) == ("completed", NOT_PAID)
    # Its unit stays returned: kept by the customer, it came back to nobody (quantity_received 0), and a
    # second return of it is refused like any unit already returned.
    again = await request_return(
        http,
        {
            "order_id": order_id,
            "items": [{"order_item_id": line_id(placed, kept), "quantity": 1, "reason": "wrong_item"}],
            "return_type": "refund_only",
        },
    )
    assert again.status_code == 409, again.text

    # The payment service applied both returns' events and wrote nothing; nothing was dead-lettered.
    paid_for = (return_id, only.json()["id"])

    async def payment_applied() -> bool:
        seen = await outcomes("payment", "payment", *paid_for)
        return seen.count(("return.approved", "applied")) == 2 and ("return.received", "applied") in seen

    await eventually(payment_applied, within=60, what="the payment group applied the returns' events")
    assert await payments(http, order_id) == []
    assert ("return.received", "applied") in await outcomes("warehouse", "warehouse-reservations", return_id)
    assert ("inventory.restocked", "applied") in await outcomes("returns", "returns", order_id, return_id)
    for service, group in (("payment", "payment"), ("warehouse", "warehouse-reservations"), ("returns", "returns")):
        seen = await outcomes(service, group, order_id, *paid_for)
        assert all(outcome == "applied" for _, outcome in seen), (group, seen)
    events = await fetch(
        "returns",
        "SELECT event_type, schema_version FROM event_store WHERE aggregate_id = $1 ORDER BY event_version",
        uuid.UUID(return_id),
    )
    assert [(e["event_type"], e["schema_version"]) for e in events][-2:] == [
        ("return.received", 3),  # the newest version: v2 brought no_refund_reason
        ("return.completed", 1),
    ]
