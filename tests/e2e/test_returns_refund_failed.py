"""A return whose refund the provider refuses, through the real stack: the order is paid with the sandbox's
tok_refundFail card (authorized and captured like any other; its refunds are refused with a 402
``expired_or_canceled_card``), delivered, returned and received; the payment worker's refund fails, the
returns consumer moves the return to refund_failed, and the returns API says why (``refund_error``), in
the return and in the list, and keeps it there: the restock that follows does not complete it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from apps.returns.rules import REFUND_FAILED
from tests.support import returns
from tests.support.http import api_client, service_url
from tests.support.orders import eventually

pytestmark = pytest.mark.usefixtures("stack")

# The sandbox's answer to a refund of a tok_refundFail authorization (apps/payment_sandbox/provider.py).
REFUSED = "expired_or_canceled_card"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(timeout=30) as client:
        yield client


async def restocked(http: httpx.AsyncClient, return_id: str) -> bool:
    return all(item["restocked"] for item in (await returns.get_return(http, return_id))["items"])


async def test_a_refused_refund_leaves_the_return_refund_failed_with_the_reason_in_the_api(
    http: httpx.AsyncClient,
) -> None:
    product = await returns.stocked("30.00", 2)
    placed = await returns.delivered_order(http, [(product, 2)], token="tok_refundFail")
    asked = [{"order_item_id": returns.line_id(placed, product), "quantity": 1, "reason": "defective"}]
    created = await returns.request_return(http, {"order_id": placed["id"], "items": asked})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    assert body["refund_error"] is None
    return_id = body["id"]
    assert (await returns.act(http, return_id, "approve", {})).status_code == 200
    [item] = body["items"]
    came = [{"return_item_id": item["id"], "quantity_received": 1, "condition": "new"}]
    received = await returns.act(http, return_id, "receive", {"items": came})
    assert received.status_code == 200, received.text
    assert received.json()["refund_error"] is None

    failed = await returns.return_reaches(http, return_id, REFUND_FAILED)
    assert failed["refund_error"] == REFUSED
    assert failed["refunded_at"] is None and failed["completed_at"] is None
    # The payment ledger agrees: the return's refund operation failed with the provider's code; no money moved.
    [payment] = await returns.payments(http, placed["id"])
    [refund] = [op for op in payment["operations"] if op["kind"] == "refund"]
    assert refund["id"] == failed["refund_id"] and refund["outcome"] == "declined"
    assert await returns.sandbox_refunds(http, placed["id"]) == []

    # The warehouse still restocks the sellable unit, and that does not complete a return whose refund failed.
    await eventually(lambda: restocked(http, return_id), within=120, what=f"return {return_id} restocked")
    after = await returns.get_return(http, return_id)
    assert (after["status"], after["refund_error"]) == (REFUND_FAILED, REFUSED)

    # The list shows it too (what an operator scanning an order's returns sees).
    listed = await http.get(f"{service_url('returns')}/api/returns", params={"order_id": placed["id"]})
    assert listed.status_code == 200, listed.text
    assert [(r["id"], r["status"], r["refund_error"]) for r in listed.json()["items"]] == [
        (return_id, REFUND_FAILED, REFUSED)
    ]
